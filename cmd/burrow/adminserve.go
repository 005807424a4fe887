package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"github.com/burrow-vpn/burrow/internal/access"
	"github.com/burrow-vpn/burrow/internal/admin"
	"github.com/burrow-vpn/burrow/internal/links"
	"github.com/burrow-vpn/burrow/internal/metrics"
	"github.com/burrow-vpn/burrow/internal/panel"
	"github.com/burrow-vpn/burrow/internal/server"
	"github.com/burrow-vpn/burrow/internal/subscribe"
	"github.com/burrow-vpn/burrow/internal/telemetry"
)

// AdminTokenFile holds the bearer token of the TCP admin listener, in the data dir.
const AdminTokenFile = "admin.token"

// sideFlags are `server run`'s flags for the HTTP services beside the
// proxy: the admin API, metrics and subscriptions.
type sideFlags struct {
	adminSocket, adminListen string
	metrics                  string
	metricsPerUser           bool
	subscribe, subBase       string
	subTitle                 string
	panelFlags
	panelTunnel bool
	tunnel      *panel.TunnelListener // set by serverRun when panelTunnel
}

// panelFlags are the web panel's flags, for server run and control run.
type panelFlags struct {
	panel       string
	panelPublic bool
	panelHosts  string
}

func (f *panelFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&f.panel, "panel", "", "serve the web panel on HOST:PORT, loopback only (reach it through SSH or your own tunnel; admins: burrow admin add)")
	fs.BoolVar(&f.panelPublic, "panel-public", false, "let --panel bind a non-loopback address (the panel becomes a page anyone can probe: not advised)")
	fs.StringVar(&f.panelHosts, "panel-host", "", "host names the panel answers to besides IP addresses and localhost, comma-separated (behind your own reverse proxy); others get 421")
}

// validate checks the panel flags before anything starts.
func (f *panelFlags) validate() error {
	if f.panel != "" && !f.panelPublic {
		if err := loopbackOnly(f.panel); err != nil {
			return fmt.Errorf("--panel: %w (or, knowing the risk, add --panel-public)", err)
		}
	}
	if f.panelHosts != "" && f.panel == "" {
		return errors.New("--panel-host needs --panel HOST:PORT")
	}
	if f.panelPublic && f.panel == "" {
		return errors.New("--panel-public needs --panel HOST:PORT")
	}
	return nil
}

// listen opens --panel for h and notes its URL in data for `burrow admin
// add`. tunnel says whether --panel-tunnel is there to suggest.
func (f *panelFlags) listen(data string, h http.Handler, log *slog.Logger, tunnel bool) (sideService, error) {
	ln, err := listenSide("--panel", f.panel)
	if err != nil {
		return sideService{}, err
	}
	url := "http://" + ln.Addr().String()
	if err := os.WriteFile(filepath.Join(data, PanelURLFile), []byte(url+"\n"), 0o600); err != nil {
		log.Warn("could not note the panel's address for `burrow admin add`", "err", err)
	}
	if f.panelPublic {
		prefer := "prefer loopback reached through SSH"
		if tunnel {
			prefer += " or --panel-tunnel"
		}
		log.Warn("--panel-public: the web panel listens on a public address, where scanners can find and probe it; "+prefer, "listen", ln.Addr().String())
	}
	return sideService{ln, h, "web panel served", []any{"url", url}}, nil
}

func (f *sideFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&f.adminSocket, "admin-socket", "", "unix socket of the admin API, mode 0600 (default DATA/admin.sock; \"off\" to disable)")
	fs.StringVar(&f.adminListen, "admin-listen", "", "also serve the admin API on this loopback 127.0.0.1:PORT; clients need the bearer token in DATA/"+AdminTokenFile)
	fs.StringVar(&f.metrics, "metrics", "", "serve Prometheus metrics at http://HOST:PORT/metrics (off by default)")
	fs.BoolVar(&f.metricsPerUser, "metrics-per-user", false, "include each user's bytes and connections, labelled by name, in the metrics")
	fs.StringVar(&f.subscribe, "subscribe", "", "serve each user's subscription on HOST:PORT (off by default; put it behind your own domain or reverse proxy)")
	fs.StringVar(&f.subBase, "subscribe-url-base", "", "public URL that reaches the --subscribe server, e.g. https://sub.example.com/s (default http://HOST:PORT)")
	fs.StringVar(&f.subTitle, "subscribe-title", "Burrow", "profile title client apps show for subscriptions (at most 25 characters)")
	f.panelFlags.register(fs)
	fs.BoolVar(&f.panelTunnel, "panel-tunnel", false, "also serve the panel inside the tunnel at http://"+server.PanelHost+"/ to the links of users named like an owner or operator admin")
}

// applyWait bounds how long an admin change waits for the registry to
// apply it before the call returns anyway.
const applyWait = 10 * time.Second

// start opens every listener asked for, then serves them until the returned
// stop is called. If one cannot be opened it closes those it opened and
// returns an error naming the flag, having served nothing.
func (f *sideFlags) start(data string, cfg *server.Config, st *access.SQLiteStore, reg *server.Registry, srv *server.Server,
	tele *telemetry.Aggregator, log *slog.Logger) (func(), error) {
	if err := f.validate(); err != nil {
		return nil, err
	}
	var store access.Store = st
	if cfg.Join != "" {
		store = fleetReplica{st} // the users are the control plane's
	}
	// A change made through the admin API (the CLI on the socket, the
	// panel) is in force when the call returns: the next connection sees
	// it. The registry's refresh, which several changes at once share, is
	// waited for, for at most applyWait.
	applied := func() {
		ctx, cancel := context.WithTimeout(context.Background(), applyWait)
		defer cancel()
		if err := reg.PokeWait(ctx); err != nil {
			log.Warn("a user change waits for the next refresh", "err", err)
		}
	}
	local := &admin.Local{Store: store, Live: reg, Changed: applied, Version: version, Started: time.Now(),
		Counters: func() admin.Counters { return countersOf(srv.Stats()) }, Telemetry: tele.Totals}
	var services []sideService
	ok := false
	defer func() {
		if !ok {
			for _, s := range services {
				s.ln.Close() // a unix listener removes its socket file
			}
		}
	}()

	if f.subscribe != "" {
		tmpl, err := userLink(cfg, &access.User{})
		if err != nil {
			return nil, err
		}
		xtmpl, err := userXHTTPLink(cfg, &access.User{})
		if err != nil {
			return nil, err
		}
		h, err := subscribe.NewHandler(subscribe.Config{Users: st, Servers: []links.VLESS{*tmpl, *xtmpl}, Title: f.subTitle, Telemetry: st})
		if err != nil {
			return nil, fmt.Errorf("--subscribe-title: %w", err)
		}
		ln, err := listenSide("--subscribe", f.subscribe)
		if err != nil {
			return nil, err
		}
		base := f.subBase
		if base == "" {
			base = "http://" + ln.Addr().String()
		}
		local.SubscriptionURL = func(token string) string { return subscribe.URL(base, token) }
		services = append(services, sideService{ln, h, "subscriptions served", []any{"listen", ln.Addr().String(), "url_base", base}})
	}
	if f.adminSocket != "off" {
		path := f.adminSocket
		if path == "" {
			path = filepath.Join(data, server.AdminSock)
		}
		ln, err := admin.ListenUnix(path)
		if err != nil {
			return nil, fmt.Errorf("--admin-socket: %w", err)
		}
		services = append(services, sideService{ln, admin.Handler(local, ""), "admin API on unix socket", []any{"path", path}})
	}
	if f.adminListen != "" {
		tok, err := admin.LoadOrCreateToken(filepath.Join(data, AdminTokenFile))
		if err != nil {
			return nil, err
		}
		ln, err := listenSide("--admin-listen", f.adminListen)
		if err != nil {
			return nil, err
		}
		services = append(services, sideService{ln, admin.Handler(local, tok), "admin API on TCP",
			[]any{"listen", ln.Addr().String(), "token_file", filepath.Join(data, AdminTokenFile)}})
	}
	if f.panel != "" || f.tunnel != nil {
		svcs, err := f.startPanel(data, cfg, st, local, log)
		if err != nil {
			return nil, err
		}
		services = append(services, svcs...)
	}
	if f.metrics != "" {
		ln, err := listenSide("--metrics", f.metrics)
		if err != nil {
			return nil, err
		}
		perUser := f.metricsPerUser
		h := metrics.Handler(func(ctx context.Context) (*metrics.Snapshot, error) { return local.Snapshot(ctx, perUser) })
		services = append(services, sideService{ln, h, "metrics served",
			[]any{"url", "http://" + ln.Addr().String() + "/metrics", "per_user", perUser}})
	}
	ok = true

	servers := make([]*http.Server, len(services))
	for i, s := range services {
		hs := &http.Server{Handler: s.h, ReadHeaderTimeout: 10 * time.Second, ReadTimeout: 30 * time.Second,
			WriteTimeout: time.Minute, IdleTimeout: 2 * time.Minute, ErrorLog: log2discard()}
		servers[i] = hs
		go hs.Serve(s.ln)
		log.Info(s.msg, s.attrs...)
	}
	return sync.OnceFunc(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		for i, hs := range servers {
			if hs.Shutdown(ctx) != nil {
				hs.Close()
			}
			// Serve may not have taken the listener yet; close it here too,
			// so a unix socket's file is gone when stop returns.
			services[i].ln.Close()
		}
	}), nil
}

// sideService is one opened side listener, served once all are open.
type sideService struct {
	ln    net.Listener
	h     http.Handler
	msg   string // logged when it starts serving
	attrs []any
}

// listenSide listens on addr for the side service of flag, with errors an
// operator can act on.
func listenSide(flag, addr string) (net.Listener, error) {
	ln, err := net.Listen("tcp", addr)
	switch {
	case err == nil:
		return ln, nil
	case errors.Is(err, syscall.EADDRINUSE):
		return nil, fmt.Errorf("%s %s: the port is already in use (by another program, or by a burrow server that is still stopping); stop it or choose another port", flag, addr)
	case errors.Is(err, syscall.EACCES):
		return nil, fmt.Errorf("%s %s: permission denied; ports below 1024 need root or CAP_NET_BIND_SERVICE", flag, addr)
	case errors.Is(err, syscall.EADDRNOTAVAIL):
		return nil, fmt.Errorf("%s %s: this machine has no such address", flag, addr)
	}
	return nil, fmt.Errorf("%s %s: %w", flag, addr, err)
}

// validate checks what can be checked before anything starts.
func (f *sideFlags) validate() error {
	if f.adminListen != "" {
		if err := loopbackOnly(f.adminListen); err != nil {
			return fmt.Errorf("--admin-listen: %w", err)
		}
	}
	if err := subscribe.ValidateTitle(f.subTitle); err != nil {
		return fmt.Errorf("--subscribe-title: %w", err)
	}
	if f.subBase != "" && f.subscribe == "" {
		return errors.New("--subscribe-url-base needs --subscribe HOST:PORT")
	}
	if err := f.panelFlags.validate(); err != nil {
		return err
	}
	if f.metricsPerUser && f.metrics == "" {
		return errors.New("--metrics-per-user needs --metrics HOST:PORT")
	}
	return nil
}

func countersOf(s *server.Stats) admin.Counters {
	return admin.Counters{Active: s.Active.Load(), Authenticated: s.Authenticated.Load(), Fallback: s.Fallback.Load(),
		Rejected: s.Rejected.Load(), EgressRefused: s.Refused.Load(), BytesUp: s.BytesUp.Load(), BytesDown: s.BytesDown.Load(),
		RelayLinks: s.RelayLinks.Load(), RelayStreams: s.RelayStreams.Load(), RelayRefused: s.RelayRefused.Load()}
}

// loopbackOnly refuses addresses other than loopback ones: the admin API
// hands out access keys, so reach it from elsewhere through SSH instead.
func loopbackOnly(hostport string) error {
	host, _, err := net.SplitHostPort(hostport)
	if err != nil {
		return fmt.Errorf("%q: want 127.0.0.1:PORT", hostport)
	}
	if host == "localhost" {
		return nil
	}
	if a, err := netip.ParseAddr(host); err == nil && a.IsLoopback() {
		return nil
	}
	return errors.New("only loopback addresses (127.0.0.1, ::1) are allowed: the admin API hands out access keys; reach it through an SSH tunnel")
}

// log2discard keeps net/http's own error log (TLS noise, bad requests from
// scanners) out of the server's log: it could carry client addresses.
func log2discard() *log.Logger {
	return log.New(io.Discard, "", 0)
}
