package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/burrow-vpn/burrow/internal/access"
	"github.com/burrow-vpn/burrow/internal/camo"
	"github.com/burrow-vpn/burrow/internal/client"
	"github.com/burrow-vpn/burrow/internal/links"
	"github.com/burrow-vpn/burrow/internal/route"
)

func runConnect(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("connect", stderr)
	socks := fs.String("socks", "127.0.0.1:1080", "SOCKS5 proxy listen address ('' to turn off)")
	httpAddr := fs.String("http", "127.0.0.1:8080", "HTTP proxy listen address ('' to turn off)")
	debug := fs.Bool("debug", false, "log debug messages")
	tunOn := fs.Bool("tun", false, "full-device mode: route all traffic of this machine through the tunnel (Linux, root)")
	killSwitch := fs.Bool("kill-switch", true, "with --tun: drop traffic rather than send it in the clear if burrow dies")
	tunName := fs.String("tun-name", "burrow0", "with --tun: TUN interface name")
	dnsAddr := fs.String("dns", "1.1.1.1:53", "with --tun: resolver all DNS queries are relayed to, through the tunnel")
	tunRestore := fs.Bool("tun-restore", false, "undo the routes and resolver settings a crashed --tun run left behind, then exit")
	noTelemetry := fs.Bool("no-telemetry", false, "do not report anonymous connection outcomes (freezes, resets, failures; never destinations or identity) to the server")
	noMux := fs.Bool("no-mux", false, "give every TCP stream a connection of its own, even when the link allows plain-text streams inside one (tcpmux=1)")
	rulesArg := fs.String("rules", "", "route rules: a rule file, or a preset ("+strings.Join(route.Presets(), ", ")+")")
	pos, err := parseArgs(fs, args)
	if err != nil {
		return err
	}
	if *tunRestore {
		if err := client.RestoreTUN(*tunName); err != nil {
			return fmt.Errorf("--tun-restore: %w", err)
		}
		fmt.Fprintf(stderr, "routes and resolver of %s restored\n", *tunName)
		return nil
	}
	if len(pos) != 1 {
		return errors.New("connect: want one vless:// LINK, or a file holding one")
	}
	link, err := links.LoadVLESS(pos[0])
	if err != nil {
		return err
	}
	log := newLogger(stderr, *debug)
	cfg := client.Config{Link: link, SOCKS: *socks, HTTP: *httpAddr, Logger: log, NoMux: *noMux, NoTelemetry: *noTelemetry}
	if *rulesArg != "" {
		if cfg.Rules, err = loadRules(*rulesArg); err != nil {
			return err
		}
	}
	if *tunOn {
		cfg.TUN = &client.TUNConfig{Name: *tunName, KillSwitch: *killSwitch, DNS: *dnsAddr}
	}
	c, err := client.New(ctx, cfg)
	if err != nil {
		return err
	}
	if *tunOn {
		fmt.Fprintf(stderr, "full-device mode on %s (kill switch %v); DNS relayed to %s through the tunnel\n", *tunName, *killSwitch, *dnsAddr)
	}
	if a := c.SOCKSAddr(); a != nil {
		fmt.Fprintf(stderr, "SOCKS5 proxy on %s\n", a)
	}
	if a := c.HTTPAddr(); a != nil {
		fmt.Fprintf(stderr, "HTTP proxy on %s\n", a)
	}
	// One handshake now, so a wrong key or an unreachable server is reported
	// at once; the proxies run regardless and retry on every new connection.
	pctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	if err := c.Tunnel.Probe(pctx); err != nil {
		if errors.Is(err, camo.ErrNotReality) {
			fmt.Fprintf(stderr, "warning: %v\n", err)
		} else {
			fmt.Fprintf(stderr, "warning: %v (will keep retrying)\n", err)
		}
	}
	cancel()

	done := make(chan struct{})
	if isTerminal(stderr) {
		go statusLine(ctx, stderr, c.Tunnel, done)
	} else {
		close(done)
	}
	err = c.Run(ctx)
	<-done
	return err
}

// loadRules reads --rules: a file if one exists at that path, else a
// shipped preset of that name.
func loadRules(arg string) (*route.Rules, error) {
	f, err := os.Open(arg)
	if err == nil {
		defer f.Close()
		rs, err := route.Parse(f)
		if err != nil {
			return nil, fmt.Errorf("--rules %s: %w", arg, err)
		}
		return rs, nil
	}
	if !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("--rules: %w", err)
	}
	rs, perr := route.Preset(arg)
	if perr != nil {
		return nil, fmt.Errorf("--rules %s: no such file, and %w", arg, perr)
	}
	return rs, nil
}

// statusLine redraws one line on the terminal: server, state, bytes.
func statusLine(ctx context.Context, w io.Writer, t *client.Tunnel, done chan<- struct{}) {
	defer close(done)
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		up, down := t.Bytes()
		line := fmt.Sprintf("burrow: %s  %s  ↑ %s  ↓ %s", t.Server(), t.State(), access.FormatSize(up), access.FormatSize(down))
		if err := t.LastError(); err != nil && t.State() != client.StateConnected {
			line += "  (" + err.Error() + ")"
		}
		if len(line) > 160 {
			line = line[:157] + "..."
		}
		fmt.Fprintf(w, "\r\033[K%s", line)
		select {
		case <-ctx.Done():
			fmt.Fprintln(w)
			return
		case <-tick.C:
		}
	}
}
