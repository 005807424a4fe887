package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/burrow-vpn/burrow/internal/access"
	"github.com/burrow-vpn/burrow/internal/camo"
	"github.com/burrow-vpn/burrow/internal/client"
	"github.com/burrow-vpn/burrow/internal/links"
)

func runConnect(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("connect", stderr)
	socks := fs.String("socks", "127.0.0.1:1080", "SOCKS5 proxy listen address ('' to turn off)")
	httpAddr := fs.String("http", "127.0.0.1:8080", "HTTP proxy listen address ('' to turn off)")
	debug := fs.Bool("debug", false, "log debug messages")
	pos, err := parseArgs(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return errors.New("connect: want one vless:// LINK, or a file holding one")
	}
	link, err := links.LoadVLESS(pos[0])
	if err != nil {
		return err
	}
	log := newLogger(stderr, *debug)
	c, err := client.New(ctx, client.Config{Link: link, SOCKS: *socks, HTTP: *httpAddr, Logger: log})
	if err != nil {
		return err
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
