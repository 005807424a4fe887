package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/burrow-vpn/burrow/internal/access"
	"github.com/burrow-vpn/burrow/internal/camo"
	"github.com/burrow-vpn/burrow/internal/control"
	"github.com/burrow-vpn/burrow/internal/relay"
	"github.com/burrow-vpn/burrow/internal/relaylink"
	"github.com/burrow-vpn/burrow/internal/server"
)

const relayUsage = `usage: burrow relay init --data DIR --listen HOST:PORT --public-addr HOST --exit TOKEN [--exit TOKEN ...] [--cover HOST:PORT --sni NAME]
       burrow relay init --join TOKEN --data DIR --listen HOST:PORT [--public-addr HOST] [--cover HOST:PORT --sni NAME]
       burrow relay run --data DIR [--metrics HOST:PORT]
       burrow relay install [--data DIR] [--print]      run it as a systemd service (unit burrow-relay)
       burrow relay uninstall                           remove the service (keeps the data)
       burrow relay upgrade BINARY                      replace the binary, restart the service

A relay carries clients' connections to exits without being able to read
them. Tokens come from 'burrow server relay-token NAME' on each exit, or,
for a relay of a fleet, one join token from 'burrow control node-token NAME
--role relay': its exits then come from the control plane ('burrow control
path add RELAY EXIT').
Run 'burrow relay SUBCOMMAND -h' for its flags.
`

func runRelay(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, relayUsage)
		return exitError{2}
	}
	if isHelpFlag(args[0]) {
		fmt.Fprint(stderr, relayUsage)
		return nil
	}
	switch args[0] {
	case "init":
		return relayInit(args[1:], stdout, stderr)
	case "run":
		return relayRun(ctx, args[1:], stderr)
	case "install":
		return relayInstall(args[1:], stdout, stderr)
	case "uninstall":
		return relayUninstall(args[1:], stdout, stderr)
	case "upgrade":
		return relayUpgrade(ctx, args[1:], stdout, stderr)
	}
	fmt.Fprint(stderr, relayUsage)
	return fmt.Errorf("relay: unknown subcommand %.40q (want init, run, install, uninstall or upgrade)", args[0])
}

// multiFlag collects a repeated flag.
type multiFlag []string

func (m *multiFlag) String() string     { return strings.Join(*m, ",") }
func (m *multiFlag) Set(v string) error { *m = append(*m, v); return nil }

func relayInit(args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("relay init", stderr)
	data := fs.String("data", "", "data directory to create for the relay (required)")
	listen := fs.String("listen", ":443", "TCP address clients connect to")
	publicAddr := fs.String("public-addr", "", "host or IP clients reach this relay at (required)")
	cover := fs.String("cover", "", "HOST:PORT of the relay's own cover site (default: the exits' cover)")
	sni := fs.String("sni", "", "server name of --cover, which links through this relay carry")
	budget := fs.Int64("budget", 0, "bytes a pooled connection to an exit carries downstream before it is rotated (0: learned from the leg's freezes; negative: no rotation)")
	skipCheck := fs.Bool("skip-cover-check", false, "do not check now that --cover speaks TLS 1.3 with X25519")
	var exits multiFlag
	fs.Var(&exits, "exit", "relay token from 'burrow server relay-token NAME' on an exit (repeat for several exits)")
	join := fs.String("join", "", "join a fleet as a relay with the token `burrow control node-token NAME --role relay` printed: exits then come from the control plane")
	pos, err := parseArgs(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return fmt.Errorf("relay init: unexpected argument %q", pos[0])
	}
	if *data == "" {
		return errors.New("relay init: --data DIR is required")
	}
	var tok *control.Token
	if *join != "" {
		if len(exits) > 0 {
			return errors.New("relay init: --join and --exit: a relay of a fleet learns its exits from the control plane")
		}
		if tok, err = control.ParseToken(*join); err != nil {
			return fmt.Errorf("relay init: --join: %w", err)
		}
		if tok.Role != control.RoleRelay {
			return fmt.Errorf("relay init: --join: the token is for a %s; make one with --role relay", tok.Role)
		}
		if *publicAddr == "" {
			*publicAddr = listenHost(*listen)
		}
	}
	if *publicAddr == "" {
		return errors.New("relay init: --public-addr HOST is required: the address clients connect to (links through the relay carry it)")
	}
	cfg := &relay.Config{Listen: *listen, PublicAddr: *publicAddr, Exits: exits, Join: *join, Cover: *cover, SNI: *sni, Budget: *budget}
	cfg.Defaults()
	if err := cfg.Validate(); err != nil {
		return fmt.Errorf("relay init: %w", err)
	}
	if cfg.Cover != "" && !*skipCheck {
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		err := camo.CheckCover(ctx, nil, cfg.Cover, cfg.SNI)
		cancel()
		if err != nil {
			return fmt.Errorf("relay init: %w\n(pass --skip-cover-check to set up anyway)", err)
		}
	}
	p := filepath.Join(*data, relay.ConfigFile)
	if _, err := os.Stat(p); err == nil {
		return fmt.Errorf("relay init: %s already exists; nothing was changed (edit its \"exits\" and send the running relay SIGHUP, or choose a new --data DIR)", p)
	}
	if err := os.MkdirAll(*data, 0o700); err != nil {
		return fmt.Errorf("relay init: %w", err)
	}
	if err := relay.WriteConfig(*data, cfg); err != nil {
		return fmt.Errorf("relay init: %w", err)
	}
	fmt.Fprintf(stderr, "Start the relay with: burrow relay run --data %s\n", *data)
	if tok != nil {
		fmt.Fprintf(stderr, "Created %s (listen %s): relay %q of the fleet at %s.\n", p, cfg.Listen, tok.Name, tok.Addr)
		fmt.Fprintf(stderr, "On the control plane, let it front exits with: burrow control path add %s EXIT; user links: burrow user show NAME --data CONTROLDIR\n", tok.Name)
		return nil
	}
	toks, _ := cfg.Tokens()
	fmt.Fprintf(stderr, "Created %s (listen %s, %d exit(s)).\n", p, cfg.Listen, len(toks))
	fmt.Fprintf(stderr, "On the exit, a user's link through this relay: burrow user show NAME --via %s\n", net.JoinHostPort(cfg.PublicAddr, portOf(cfg.Listen)))
	return nil
}

// listenHost is the host of a listen address when it names one (not a
// wildcard): a fleet relay's default public address.
func listenHost(hostport string) string {
	h, _, err := net.SplitHostPort(hostport)
	if err != nil {
		return ""
	}
	if ip := net.ParseIP(h); h == "" || ip != nil && ip.IsUnspecified() {
		return ""
	}
	return h
}

func portOf(hostport string) string {
	_, p, _ := net.SplitHostPort(hostport)
	return p
}

// configReloadPoll is how often `relay run` looks at relay.json for changes.
const configReloadPoll = 2 * time.Second

func relayRun(ctx context.Context, args []string, stderr io.Writer) error {
	fs := newFlagSet("relay run", stderr)
	data := fs.String("data", "", "data directory made by 'burrow relay init' (required)")
	debug := fs.Bool("debug", false, "log debug messages")
	metricsAddr := fs.String("metrics", "", "serve Prometheus metrics at http://HOST:PORT/metrics (off by default)")
	pos, err := parseArgs(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return fmt.Errorf("relay run: unexpected argument %q", pos[0])
	}
	if *data == "" {
		return errors.New("relay run: --data DIR is required")
	}
	log := newLogger(stderr, *debug)
	cfg, err := relay.LoadConfig(*data)
	if err != nil {
		return fmt.Errorf("relay run: %w", err)
	}
	if _, err := server.RaiseFileLimit(); err != nil {
		log.Warn("open-file limit", "err", err)
	}
	var fleet *fleetRelay
	run := cfg
	running := new(*relay.Relay)
	if cfg.Join != "" {
		if fleet, err = newFleetRelay(*data, cfg, log, func() *relay.Relay { return *running }); err != nil {
			return fmt.Errorf("relay run: %w", err)
		}
		run = fleet.config()
	}
	r, err := relay.New(run, relay.Options{Logger: log})
	if err != nil {
		return fmt.Errorf("relay run: %w", err)
	}
	defer r.Close()
	*running = r
	return relayServe(ctx, *data, *metricsAddr, r, fleet, run, log)
}

// relayServe listens and serves with r until ctx ends; fleet, when not
// nil, follows the control plane meanwhile.
func relayServe(ctx context.Context, data, metricsAddr string, r *relay.Relay, fleet *fleetRelay, cfg *relay.Config, log *slog.Logger) error {
	ln, err := listenSide("listen", cfg.Listen)
	if err != nil {
		return fmt.Errorf("relay run: %w", err)
	}
	if metricsAddr != "" {
		mln, err := listenSide("--metrics", metricsAddr)
		if err != nil {
			ln.Close()
			return fmt.Errorf("relay run: %w", err)
		}
		ms := &http.Server{Handler: r.MetricsHandler(), ReadHeaderTimeout: 10 * time.Second}
		go ms.Serve(mln)
		defer ms.Close()
		log.Info("metrics served", "url", "http://"+mln.Addr().String()+"/metrics")
	}
	rctx, stopReload := context.WithCancel(ctx)
	reloadDone := make(chan struct{})
	apply := r.Reload
	if fleet != nil {
		fleet.r = r
		apply = fleet.setConfig
		fdone := fleet.start(rctx)
		defer func() { stopReload(); <-fdone }()
	}
	go func() { reloadLoop(rctx, data, apply, log); close(reloadDone) }()
	defer func() { stopReload(); <-reloadDone }()
	toks, _ := cfg.Tokens()
	log.Info("burrow relay running", "listen", ln.Addr().String(), "exits", len(toks))
	err = r.Serve(ctx, ln)
	log.Info("burrow relay stopped")
	return err
}

// reloadLoop re-reads relay.json on SIGHUP and when its modification time
// or size changes, and applies it; a bad file is logged and the running
// configuration kept.
func reloadLoop(ctx context.Context, dir string, apply func(*relay.Config) error, log interface {
	Info(string, ...any)
	Warn(string, ...any)
}) {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	p := filepath.Join(dir, relay.ConfigFile)
	stamp := func() string {
		fi, err := os.Stat(p)
		if err != nil {
			return ""
		}
		return fmt.Sprint(fi.ModTime().UnixNano(), fi.Size())
	}
	last := stamp()
	t := time.NewTicker(configReloadPoll)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-hup:
		case <-t.C:
			if s := stamp(); s == last {
				continue
			}
		}
		last = stamp()
		cfg, err := relay.LoadConfig(dir)
		if err == nil {
			err = apply(cfg)
		}
		if err != nil {
			log.Warn("relay config not reloaded; the running one is kept", "err", err)
			continue
		}
		log.Info("relay config reloaded")
	}
}

// serverRelayToken is `burrow server relay-token NAME [--revoke]`.
func serverRelayToken(args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("server relay-token", stderr)
	data := fs.String("data", server.DefaultDataDir(), "server data directory")
	revoke := fs.Bool("revoke", false, "revoke the relay: the exit refuses it and cuts its links within a second (final)")
	pos, err := parseArgs(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return errors.New("server relay-token: want exactly one relay NAME")
	}
	cfg, err := server.LoadConfig(*data)
	if err != nil {
		return err
	}
	st, err := access.OpenSQLite(filepath.Join(*data, server.StoreFile))
	if err != nil {
		return fmt.Errorf("server relay-token: %w", err)
	}
	defer st.Close()
	ctx := context.Background()
	if *revoke {
		rl, err := st.RelayByName(ctx, pos[0])
		if err != nil {
			return fmt.Errorf("server relay-token: %w", err)
		}
		if err := st.RevokeRelay(ctx, rl.ID); err != nil {
			return fmt.Errorf("server relay-token: %w", err)
		}
		fmt.Fprintf(stdout, "Revoked relay %q: a running server refuses it and cuts its links within a second.\n", rl.Name)
		return nil
	}
	var taken [][8]byte
	for _, s := range cfg.ShortIDs {
		b, err := server.DecodeShortID(s)
		if err != nil {
			return err
		}
		var id [8]byte
		copy(id[:], b)
		taken = append(taken, id)
	}
	rl, err := st.CreateRelay(ctx, pos[0], taken)
	if err != nil {
		return fmt.Errorf("server relay-token: %w", err)
	}
	tok, err := relayTokenFor(cfg, rl)
	if err != nil {
		return fmt.Errorf("server relay-token: %w", err)
	}
	fmt.Fprintln(stdout, tok.String())
	fmt.Fprintf(stderr, "Give this token to the relay's operator only (burrow relay init --exit TOKEN); it lets a relay carry clients to this server, nothing more.\n")
	return nil
}

// relayTokenFor is the token of relay rl on the server cfg.
func relayTokenFor(cfg *server.Config, rl *access.Relay) (*relaylink.Token, error) {
	pub, err := server.DecodeKey(cfg.PublicKey)
	if err != nil || len(pub) != 32 {
		return nil, fmt.Errorf("public key in config: %v", err)
	}
	_, port, err := splitPort(cfg.Listen)
	if err != nil {
		return nil, err
	}
	t := &relaylink.Token{
		Name:        rl.Name,
		Addr:        net.JoinHostPort(cfg.PublicAddr, fmt.Sprint(port)),
		ShortID:     rl.ShortID,
		SNI:         cfg.ServerNames[0],
		Cover:       cfg.Cover,
		Fingerprint: cfg.Fingerprint,
		Secret:      rl.Secret,
	}
	copy(t.PublicKey[:], pub)
	return t, nil
}

// viaRelay returns cfg as links through the relay at hostport see it: the
// relay's address, and the server name of the relay's own cover when the
// relay has announced one to this exit.
func viaRelay(ctx context.Context, data string, cfg *server.Config, hostport string, stderr io.Writer) (*server.Config, error) {
	host, port, err := net.SplitHostPort(hostport)
	if err != nil || host == "" {
		return nil, fmt.Errorf("--via %.80q: want the relay's HOST:PORT", hostport)
	}
	if _, _, err := splitPort(hostport); err != nil {
		return nil, fmt.Errorf("--via: %w", err)
	}
	st, err := access.OpenSQLite(filepath.Join(data, server.StoreFile))
	if err != nil {
		return nil, err
	}
	defer st.Close()
	relays, err := st.ListRelays(ctx)
	if err != nil {
		return nil, err
	}
	c := *cfg
	c.PublicAddr, c.Listen = host, net.JoinHostPort("", port)
	for _, rl := range relays {
		if rl.Revoked || rl.AnnouncedAddr != hostport {
			continue
		}
		if rl.AnnouncedSNI != "" {
			c.ServerNames = []string{rl.AnnouncedSNI}
		}
		return &c, nil
	}
	if len(relays) == 0 {
		fmt.Fprintln(stderr, "note: this server has no relay yet (burrow server relay-token NAME); the link below works once one runs at", hostport)
	} else {
		fmt.Fprintf(stderr, "note: no relay at %s has connected to this server yet; the link uses this server's name %s, which is right unless the relay has its own --sni\n", hostport, cfg.ServerNames[0])
	}
	return &c, nil
}
