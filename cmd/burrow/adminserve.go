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
	"path/filepath"
	"time"

	"github.com/burrow-vpn/burrow/internal/access"
	"github.com/burrow-vpn/burrow/internal/admin"
	"github.com/burrow-vpn/burrow/internal/links"
	"github.com/burrow-vpn/burrow/internal/metrics"
	"github.com/burrow-vpn/burrow/internal/server"
	"github.com/burrow-vpn/burrow/internal/subscribe"
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
}

func (f *sideFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&f.adminSocket, "admin-socket", "", "unix socket of the admin API, mode 0600 (default DATA/admin.sock; \"off\" to disable)")
	fs.StringVar(&f.adminListen, "admin-listen", "", "also serve the admin API on this loopback 127.0.0.1:PORT; clients need the bearer token in DATA/"+AdminTokenFile)
	fs.StringVar(&f.metrics, "metrics", "", "serve Prometheus metrics at http://HOST:PORT/metrics (off by default)")
	fs.BoolVar(&f.metricsPerUser, "metrics-per-user", false, "include each user's bytes and connections, labelled by name, in the metrics")
	fs.StringVar(&f.subscribe, "subscribe", "", "serve each user's subscription on HOST:PORT (off by default; put it behind your own domain or reverse proxy)")
	fs.StringVar(&f.subBase, "subscribe-url-base", "", "public URL that reaches the --subscribe server, e.g. https://sub.example.com/s (default http://HOST:PORT)")
	fs.StringVar(&f.subTitle, "subscribe-title", "Burrow", "profile title client apps show for subscriptions (at most 25 characters)")
}

// start opens the listeners asked for and serves them until the returned
// stop is called. It fails, having opened nothing, on a bad flag.
func (f *sideFlags) start(data string, cfg *server.Config, st access.Store, reg *server.Registry, srv *server.Server, log *slog.Logger) (stop func(), err error) {
	local := &admin.Local{Store: st, Live: reg, Changed: reg.Poke, Version: version, Started: time.Now(),
		Counters: func() admin.Counters { return countersOf(srv.Stats()) }}
	var servers []*http.Server
	var cleanup []func()
	stop = func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		for _, hs := range servers {
			if hs.Shutdown(ctx) != nil {
				hs.Close()
			}
		}
		for _, c := range cleanup {
			c()
		}
	}
	defer func() {
		if err != nil {
			stop()
		}
	}()
	serve := func(ln net.Listener, h http.Handler) {
		hs := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second, ReadTimeout: 30 * time.Second,
			WriteTimeout: time.Minute, IdleTimeout: 2 * time.Minute, ErrorLog: log2discard()}
		servers = append(servers, hs)
		go hs.Serve(ln)
	}

	if err := f.validate(); err != nil {
		return nil, err
	}
	if f.subscribe != "" {
		tmpl, err := userLink(cfg, &access.User{})
		if err != nil {
			return nil, err
		}
		xtmpl, err := userXHTTPLink(cfg, &access.User{})
		if err != nil {
			return nil, err
		}
		h, err := subscribe.NewHandler(subscribe.Config{Users: st, Servers: []links.VLESS{*tmpl, *xtmpl}, Title: f.subTitle})
		if err != nil {
			return nil, fmt.Errorf("--subscribe-title: %w", err)
		}
		ln, err := net.Listen("tcp", f.subscribe)
		if err != nil {
			return nil, fmt.Errorf("--subscribe: %w", err)
		}
		base := f.subBase
		if base == "" {
			base = "http://" + ln.Addr().String()
		}
		local.SubscriptionURL = func(token string) string { return subscribe.URL(base, token) }
		serve(ln, h)
		log.Info("subscriptions served", "listen", ln.Addr().String(), "url_base", base)
	}
	if f.adminSocket != "off" {
		path := f.adminSocket
		if path == "" {
			path = filepath.Join(data, server.AdminSock)
		}
		ln, err := admin.ListenUnix(path)
		if err != nil {
			return nil, err
		}
		serve(ln, admin.Handler(local, ""))
	}
	if f.adminListen != "" {
		tok, err := admin.LoadOrCreateToken(filepath.Join(data, AdminTokenFile))
		if err != nil {
			return nil, err
		}
		ln, err := net.Listen("tcp", f.adminListen)
		if err != nil {
			return nil, fmt.Errorf("--admin-listen: %w", err)
		}
		serve(ln, admin.Handler(local, tok))
		log.Info("admin API on TCP", "listen", ln.Addr().String(), "token_file", filepath.Join(data, AdminTokenFile))
	}
	if f.metrics != "" {
		ln, err := net.Listen("tcp", f.metrics)
		if err != nil {
			return nil, fmt.Errorf("--metrics: %w", err)
		}
		perUser := f.metricsPerUser
		serve(ln, metrics.Handler(func(ctx context.Context) (*metrics.Snapshot, error) { return local.Snapshot(ctx, perUser) }))
		log.Info("metrics served", "url", "http://"+ln.Addr().String()+"/metrics", "per_user", perUser)
	}
	return stop, nil
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
	if f.metricsPerUser && f.metrics == "" {
		return errors.New("--metrics-per-user needs --metrics HOST:PORT")
	}
	return nil
}

func countersOf(s *server.Stats) admin.Counters {
	return admin.Counters{Active: s.Active.Load(), Authenticated: s.Authenticated.Load(), Fallback: s.Fallback.Load(),
		Rejected: s.Rejected.Load(), EgressRefused: s.Refused.Load(), BytesUp: s.BytesUp.Load(), BytesDown: s.BytesDown.Load()}
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
