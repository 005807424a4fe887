package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/burrow-vpn/burrow/internal/access"
	"github.com/burrow-vpn/burrow/internal/camo"
	"github.com/burrow-vpn/burrow/internal/control"
	"github.com/burrow-vpn/burrow/internal/panel"
	"github.com/burrow-vpn/burrow/internal/server"
	"github.com/burrow-vpn/burrow/internal/telemetry"
)

func serverInit(args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("server init", stderr)
	data := fs.String("data", server.DefaultDataDir(), "data directory to create (config, keys, user store)")
	listen := fs.String("listen", ":443", "TCP address to accept clients and probes on")
	cover := fs.String("cover", "", "HOST:PORT of the real HTTPS site shown to everyone without a key (required)")
	sni := fs.String("sni", "", "server name(s) clients send, comma-separated; default: the cover's host name")
	publicAddr := fs.String("public-addr", "", "host or IP that invite links point at; default: detected from this machine's interfaces")
	allowPrivate := fs.Bool("allow-private-egress", false, "let clients reach loopback and private networks through this server (labs and tests only)")
	fp := fs.String("fingerprint", "chrome", "browser fingerprint put into links: chrome, firefox, safari, ios, android, edge, 360, qq, random, or another fp name Xray-core's links use")
	skipCheck := fs.Bool("skip-cover-check", false, "do not check now that the cover site speaks TLS 1.3 with X25519")
	join := fs.String("join", "", "join a fleet as an exit with the token `burrow control node-token NAME --role exit` printed: users then come from the control plane")
	pos, err := parseArgs(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return fmt.Errorf("server init: unexpected argument %q", pos[0])
	}
	if *cover == "" {
		return errors.New("server init: --cover HOST:PORT is required: the real HTTPS site that probers will see (e.g. --cover www.example.com:443; `burrow server find-cover` finds one next to this server)")
	}
	names := splitList(*sni)
	if len(names) == 0 {
		host, _, err := net.SplitHostPort(*cover)
		if err != nil || net.ParseIP(host) != nil {
			return errors.New("server init: --sni NAME is required when --cover is an IP address: the host name the cover site answers for")
		}
		names = []string{host}
	}
	if *publicAddr == "" {
		a, err := detectPublicAddr()
		if err != nil {
			return fmt.Errorf("server init: %w", err)
		}
		*publicAddr = a
	}
	if err := refuseExisting(*data); err != nil {
		return err
	}
	var tok *control.Token
	if *join != "" {
		if tok, err = control.ParseToken(*join); err != nil {
			return fmt.Errorf("server init: --join: %w", err)
		}
		if tok.Role != control.RoleExit {
			return fmt.Errorf("server init: --join: the token is for a %s; make one with --role exit", tok.Role)
		}
	}

	priv, pub, err := camo.GenerateKey()
	if err != nil {
		return fmt.Errorf("server init: generate key: %w", err)
	}
	sid := make([]byte, 8)
	rand.Read(sid)
	cfg := &server.Config{
		Listen:             *listen,
		Cover:              *cover,
		ServerNames:        names,
		PublicAddr:         *publicAddr,
		PrivateKey:         server.EncodeKey(priv),
		PublicKey:          server.EncodeKey(pub),
		ShortIDs:           []string{hex.EncodeToString(sid)},
		AllowPrivateEgress: *allowPrivate,
		Fingerprint:        *fp,
		Join:               *join,
	}
	cfg.Defaults()
	if err := cfg.Validate(); err != nil {
		return fmt.Errorf("server init: %w", err)
	}
	if !*skipCheck {
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		err := camo.CheckCover(ctx, nil, cfg.Cover, cfg.ServerNames[0])
		cancel()
		if err != nil {
			return fmt.Errorf("server init: %w\n(pass --skip-cover-check to set up anyway)", err)
		}
	}

	created, err := createDataDir(*data)
	if err != nil {
		return err
	}
	owner, err := func() (*access.User, error) {
		if err := server.WriteConfig(*data, cfg); err != nil {
			return nil, fmt.Errorf("write config: %w", err)
		}
		st, err := access.OpenSQLite(filepath.Join(*data, server.StoreFile))
		if err != nil {
			return nil, err
		}
		defer st.Close()
		if tok != nil {
			return nil, nil // the control plane has the users
		}
		return st.CreateUser(context.Background(), access.NewUser{Name: "owner", Note: "created by server init"})
	}()
	if err != nil {
		// Leave nothing half-made behind.
		if created {
			os.RemoveAll(*data)
		} else {
			os.Remove(filepath.Join(*data, server.ConfigFile))
			os.Remove(filepath.Join(*data, server.StoreFile))
		}
		return fmt.Errorf("server init: %w", err)
	}
	fmt.Fprintf(stderr, "Created %s (listen %s, cover %s, sni %s).\n", *data, cfg.Listen, cfg.Cover, strings.Join(cfg.ServerNames, ","))
	fmt.Fprintf(stderr, "Start the server with: burrow server run --data %s\n", *data)
	if tok != nil {
		fmt.Fprintf(stderr, "It joins the fleet of the control plane at %s as exit %q; its users and their links come from there (burrow user show NAME --data CONTROLDIR).\n", tok.Addr, tok.Name)
		return nil
	}
	fmt.Fprintf(stderr, "Link for user %q (import it into v2rayNG, Hiddify, Streisand, Happ, or `burrow connect`):\n", owner.Name)
	return printLink(stdout, cfg, owner, "")
}

// refuseExisting refuses to initialise over an existing server.
func refuseExisting(dir string) error {
	for _, f := range []string{server.ConfigFile, server.StoreFile} {
		p := filepath.Join(dir, f)
		if _, err := os.Stat(p); err == nil {
			return fmt.Errorf("server init: %s already exists; this data dir holds a server already, nothing was changed (use `burrow server run --data %s`, or choose a new --data DIR)", p, dir)
		} else if !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("server init: %w", err)
		}
	}
	return nil
}

// createDataDir makes dir (mode 0700), reporting whether it did.
func createDataDir(dir string) (bool, error) {
	if fi, err := os.Stat(dir); err == nil {
		if !fi.IsDir() {
			return false, fmt.Errorf("server init: %s exists and is not a directory", dir)
		}
		return false, nil
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return false, fmt.Errorf("server init: create %s: %w", dir, err)
	}
	return true, nil
}

// detectPublicAddr picks this machine's public address from its interfaces.
// It sends no packets. Behind NAT there is none to find, and the operator
// must say.
func detectPublicAddr() (string, error) {
	addrs, err := net.InterfaceAddrs()
	if err == nil {
		var v6 string
		for _, a := range addrs {
			p, err := netip.ParsePrefix(a.String())
			if err != nil {
				continue
			}
			ip := p.Addr().Unmap()
			if !ip.IsGlobalUnicast() || ip.IsPrivate() || cgnat.Contains(ip) {
				continue
			}
			if ip.Is4() {
				return ip.String(), nil
			}
			if v6 == "" {
				v6 = ip.String()
			}
		}
		if v6 != "" {
			return v6, nil
		}
	}
	return "", errors.New("could not detect this server's public address (no public IP on its interfaces; it may be behind NAT): pass --public-addr HOST with the IP or name clients connect to")
}

var cgnat = netip.MustParsePrefix("100.64.0.0/10")

func serverRun(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("server run", stderr)
	data := fs.String("data", server.DefaultDataDir(), "data directory made by 'burrow server init'")
	debug := fs.Bool("debug", false, "log debug messages")
	logDest := fs.Bool("debug-log-destinations", false, "log user names together with destinations (privacy risk: for debugging only)")
	var side sideFlags
	side.register(fs)
	pos, err := parseArgs(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return fmt.Errorf("server run: unexpected argument %q", pos[0])
	}
	if err := side.validate(); err != nil {
		return fmt.Errorf("server run: %w", err)
	}
	log := newLogger(stderr, *debug)
	if *logDest {
		log.Warn("--debug-log-destinations is on: user names and destinations are logged together; turn it off when done")
	}
	cfg, err := server.LoadConfig(*data)
	if err != nil {
		return err
	}
	if err := refuseOnFleetNode(cfg, &side); err != nil {
		return fmt.Errorf("server run: %w", err)
	}
	if files, err := server.RaiseFileLimit(); err != nil {
		log.Warn("open-file limit", "err", err)
	} else if files > 0 {
		conns := server.MaxConnsFor(files)
		if conns < 10000 {
			log.Warn("the open-file limit caps the connections the server holds at once below 10,000; raise it (LimitNOFILE=1048576 in the systemd unit, or ulimit -Hn)", "open_files", files, "max_conns", conns)
		} else {
			log.Debug("open-file limit", "open_files", files, "max_conns", conns)
		}
	}
	cctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	err = camo.CheckCover(cctx, nil, cfg.Cover, cfg.ServerNames[0])
	cancel()
	if err != nil {
		return fmt.Errorf("cover site check failed: %w\nFix the cover (or set another \"cover\" in %s) and start again", err, filepath.Join(*data, server.ConfigFile))
	}

	st, err := access.OpenSQLite(filepath.Join(*data, server.StoreFile))
	if err != nil {
		return fmt.Errorf("open user store: %w", err)
	}
	defer st.Close()
	var users server.UserSource = st
	var node *fleetNode
	if cfg.Join != "" {
		if node, err = newFleetNode(cfg, st, log); err != nil {
			return fmt.Errorf("server run: %w", err)
		}
		users = node.users
	}
	reg := server.NewRegistry(users, log)
	if node != nil {
		reg.SetLeases(node.leases)
		node.reg = reg
	}
	if err := reg.Refresh(ctx); err != nil {
		return fmt.Errorf("load users: %w", err)
	}
	var relaySrc server.RelaySource = st
	if node != nil {
		relaySrc = node.relays
	}
	relays := server.NewRelays(relaySrc, log)
	if node != nil {
		node.table = relays
	}
	if err := relays.Refresh(ctx); err != nil {
		return fmt.Errorf("load relays: %w", err)
	}
	tele := telemetry.NewAggregator(st, log)
	opts := server.Options{LogDestinations: *logDest, Relays: relays, Telemetry: tele}
	if side.panelTunnel {
		side.tunnel = panel.NewTunnelListener(panel.AdminGate(st))
		opts.Panel = side.tunnel
	}
	srv, err := server.New(cfg, reg, log, opts)
	if err != nil {
		return err
	}
	ln, err := srv.Listen(ctx)
	if err != nil {
		return err
	}
	if node != nil {
		node.srv = srv
		node.start()
		// After the last traffic flush (below): what it counted still goes.
		defer node.stop()
	}
	stopSide, err := side.start(*data, cfg, st, reg, srv, tele, log)
	if err != nil {
		ln.Close()
		return fmt.Errorf("server run: %w", err)
	}
	defer stopSide()
	// On a stop request the side listeners close at once, as the main one
	// does, so a restart can bind them while this process drains.
	defer context.AfterFunc(ctx, stopSide)()
	log.Info("burrow server running", "listen", ln.Addr().String(), "cover", cfg.Cover, "sni", strings.Join(cfg.ServerNames, ","))

	regCtx, regCancel := context.WithCancel(context.Background())
	regDone := make(chan struct{})
	go func() { reg.Run(regCtx, time.Second, 5*time.Second); close(regDone) }()
	relaysDone := make(chan struct{})
	go func() { relays.Run(regCtx, time.Second); close(relaysDone) }()
	teleDone := make(chan struct{})
	go func() { tele.Run(regCtx, time.Minute); close(teleDone) }()

	err = srv.Serve(ctx, ln)
	regCancel()
	<-regDone // final traffic flush
	<-relaysDone
	<-teleDone // final telemetry flush
	log.Info("burrow server stopped")
	return err
}
