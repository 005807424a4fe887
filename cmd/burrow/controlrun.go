package main

import (
	"context"
	"encoding/base64"
	"fmt"
	"io"
	"path/filepath"
	"strings"
	"time"

	"github.com/burrow-vpn/burrow/internal/access"
	"github.com/burrow-vpn/burrow/internal/camo"
	"github.com/burrow-vpn/burrow/internal/control"
)

// controlRun is `burrow control run`: the camouflaged endpoint nodes follow.
func controlRun(ctx context.Context, args []string, stderr io.Writer) error {
	fs := newFlagSet("control run", stderr)
	data := fs.String("data", "", "control directory made by 'burrow control init' (required)")
	listen := fs.String("listen", "", "TCP address for the camouflaged control endpoint (default: the config's)")
	debug := fs.Bool("debug", false, "log debug messages")
	pos, err := parseArgs(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return fmt.Errorf("control run: unexpected argument %q", pos[0])
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
	ln, err := listenSide("--listen", cfg.Listen)
	if err != nil {
		return fmt.Errorf("control run: %w", err)
	}
	log.Info("burrow control plane running", "listen", ln.Addr().String(), "cover", cfg.Cover,
		"sni", strings.Join(cfg.ServerNames, ","), "store", st.Backend())
	pctx, pcancel := context.WithCancel(ctx)
	defer pcancel()
	go resetPeriods(pctx, st, log)
	err = plane.Serve(ctx, ln)
	log.Info("burrow control plane stopped")
	return err
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
