package main

import (
	"context"
	"encoding/base64"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"path/filepath"
	"strings"
	"time"

	"github.com/burrow-vpn/burrow/internal/access"
	"github.com/burrow-vpn/burrow/internal/admin"
	"github.com/burrow-vpn/burrow/internal/camo"
	"github.com/burrow-vpn/burrow/internal/control"
	"github.com/burrow-vpn/burrow/internal/links"
	"github.com/burrow-vpn/burrow/internal/metrics"
	"github.com/burrow-vpn/burrow/internal/server"
	"github.com/burrow-vpn/burrow/internal/subscribe"
)

// controlRun is `burrow control run`: the camouflaged endpoint nodes follow.
func controlRun(ctx context.Context, args []string, stderr io.Writer) error {
	fs := newFlagSet("control run", stderr)
	data := fs.String("data", "", "control directory made by 'burrow control init' (required)")
	listen := fs.String("listen", "", "TCP address for the camouflaged control endpoint (default: the config's)")
	metricsAddr := fs.String("metrics", "", "serve Prometheus metrics at http://HOST:PORT/metrics (off by default)")
	debug := fs.Bool("debug", false, "log debug messages")
	sub := fs.String("subscribe", "", "serve each user's subscription (every exit and relay path, healthy nodes first) on HOST:PORT; off by default")
	subTitle := fs.String("subscribe-title", "Burrow", "profile title client apps show for subscriptions (at most 25 characters)")
	adminSock := fs.String("admin-socket", "", "the admin API (users, fleet-wide) on this unix socket; default CDIR/admin.sock, \"off\" for none")
	var pf panelFlags
	pf.register(fs)
	pos, err := parseArgs(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return fmt.Errorf("control run: unexpected argument %q", pos[0])
	}
	if err := pf.validate(); err != nil {
		return fmt.Errorf("control run: %w", err)
	}
	log := newLogger(stderr, *debug)
	cfg, st, err := openControl(ctx, *data)
	if err != nil {
		return fmt.Errorf("control run: %w", err)
	}
	defer st.Close()
	if *listen != "" {
		cfg.Listen = *listen
	}
	cctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	err = camo.CheckCover(cctx, nil, cfg.Cover, cfg.ServerNames[0])
	cancel()
	if err != nil {
		return fmt.Errorf("cover site check failed: %w\nFix the cover (or set another \"cover\" in %s) and start again", err,
			filepath.Join(*data, control.ConfigFile))
	}
	priv, err := base64.RawURLEncoding.DecodeString(cfg.PrivateKey) // checked by LoadConfig
	if err != nil {
		return fmt.Errorf("control run: private_key: %w", err)
	}
	plane, err := control.NewPlane(control.PlaneConfig{Store: st, Logger: log, Identity: cfg.Identity(),
		Camo: camo.ServerConfig{PrivateKey: priv, ServerNames: cfg.ServerNames, Cover: cfg.Cover}})
	if err != nil {
		return fmt.Errorf("control run: %w", err)
	}
	// One admin API for the socket and the panel: users fleet-wide, who is
	// online as the exits report it.
	local := &admin.Local{Store: st, Live: plane, Version: version, Started: time.Now()}
	var subSrv *http.Server
	if *sub != "" {
		h, err := subscribe.NewHandler(subscribe.Config{Users: st, Title: *subTitle,
			Links: func(ctx context.Context, u *access.User) ([]*links.VLESS, error) {
				return control.SubscriptionLinks(ctx, st, u, time.Now())
			}})
		if err != nil {
			return fmt.Errorf("control run: --subscribe-title: %w", err)
		}
		sln, err := listenSide("--subscribe", *sub)
		if err != nil {
			return fmt.Errorf("control run: %w", err)
		}
		subSrv = &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
		go subSrv.Serve(sln)
		defer subSrv.Close()
		log.Info("subscriptions", "listen", sln.Addr().String())
		base := "http://" + sln.Addr().String()
		local.SubscriptionURL = func(token string) string { return subscribe.URL(base, token) }
	}
	if pf.panel != "" {
		svc, err := pf.startFleetPanel(*data, st, local, log)
		if err != nil {
			return fmt.Errorf("control run: %w", err)
		}
		psrv := &http.Server{Handler: svc.h, ReadHeaderTimeout: 10 * time.Second, ReadTimeout: 30 * time.Second,
			WriteTimeout: time.Minute, IdleTimeout: 2 * time.Minute, ErrorLog: log2discard()}
		go psrv.Serve(svc.ln)
		defer psrv.Close()
		log.Info(svc.msg, svc.attrs...)
	}
	if *adminSock != "off" {
		path := *adminSock
		if path == "" {
			path = filepath.Join(*data, server.AdminSock)
		}
		aln, err := admin.ListenUnix(path)
		if err != nil {
			return fmt.Errorf("control run: --admin-socket: %w", err)
		}
		asrv := &http.Server{Handler: admin.Handler(local, ""), ReadHeaderTimeout: 10 * time.Second}
		go asrv.Serve(aln)
		defer func() { asrv.Close(); aln.Close() }()
		log.Info("admin API on unix socket", "path", path)
	}
	ln, err := listenSide("--listen", cfg.Listen)
	if err != nil {
		return fmt.Errorf("control run: %w", err)
	}
	if *metricsAddr != "" {
		stop, err := serveControlMetrics(*metricsAddr, plane, log)
		if err != nil {
			ln.Close()
			return fmt.Errorf("control run: %w", err)
		}
		defer stop()
	}
	log.Info("burrow control plane running", "listen", ln.Addr().String(), "cover", cfg.Cover,
		"sni", strings.Join(cfg.ServerNames, ","), "store", st.Backend())
	pctx, pcancel := context.WithCancel(ctx)
	defer pcancel()
	go resetPeriods(pctx, st, log)
	go pruneLog(pctx, st, log)
	err = plane.Serve(ctx, ln)
	log.Info("burrow control plane stopped")
	return err
}

// serveControlMetrics serves the plane's metrics on addr until stop.
func serveControlMetrics(addr string, plane *control.Plane, log *slog.Logger) (stop func(), err error) {
	ln, err := listenSide("--metrics", addr)
	if err != nil {
		return nil, err
	}
	h := metrics.ControlHandler(func(ctx context.Context) (*metrics.Control, error) {
		ctx, cancel := context.WithTimeout(ctx, 5*time.Second) // a store that hangs is reported down
		defer cancel()
		return plane.Metrics(ctx), nil
	})
	hs := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second, WriteTimeout: time.Minute, ErrorLog: log2discard()}
	go hs.Serve(ln)
	log.Info("metrics served", "url", "http://"+ln.Addr().String()+"/metrics")
	return func() { hs.Close() }, nil
}

// resetPeriods starts users' new weekly or monthly periods fleet-wide; each
// reset reaches the nodes through the change log.
func resetPeriods(ctx context.Context, st access.Store, log interface{ Warn(string, ...any) }) {
	t := time.NewTicker(time.Minute)
	defer t.Stop()
	for {
		if _, err := access.ResetDuePeriods(ctx, st, time.Now()); err != nil && ctx.Err() == nil {
			log.Warn("reset traffic periods", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// pruneLog deletes, every 10 minutes, the change log entries every live
// node has applied (control.PruneThrough).
func pruneLog(ctx context.Context, st *control.SQLStore, log interface{ Warn(string, ...any) }) {
	t := time.NewTicker(10 * time.Minute)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		nodes, err := st.ListNodes(ctx)
		if err == nil {
			if through := control.PruneThrough(nodes, time.Now()); through > 0 {
				_, err = st.PruneChanges(ctx, through)
			}
		}
		if err != nil && ctx.Err() == nil {
			log.Warn("prune the change log", "err", err)
		}
	}
}
