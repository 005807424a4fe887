package main

import (
	"context"
	"fmt"
	"io"
	"net/netip"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/burrow-vpn/burrow/internal/coverscan"
)

// serverFindCover is `burrow server find-cover`: scan the server's
// neighbours for a cover site whose name belongs to the server's network.
func serverFindCover(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("server find-cover", stderr)
	near := fs.String("near", "", "the server's public IPv4 address, whose block is scanned (required)")
	bits := fs.Int("bits", 24, "scan the /BITS block around --near (20 to 31)")
	port := fs.Int("port", 443, "the HTTPS port to try")
	parallel := fs.Int("parallel", 32, "addresses tried at once")
	timeout := fs.Duration("timeout", 3*time.Second, "how long each address may take")
	all := fs.Bool("all", false, "also list the sites that cannot serve as a cover, and why")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: burrow server find-cover --near ADDR [--bits 24] [--port 443] [--all]")
		fmt.Fprintln(stderr, "Finds HTTPS sites next to this server (the same block of addresses) that can serve as its")
		fmt.Fprintln(stderr, "cover: TLS 1.3 with X25519, HTTP/2, a valid certificate, and a name that resolves into the")
		fmt.Fprintln(stderr, "server's network, so a censor that matches SNI against the destination network sees nothing odd.")
		fs.PrintDefaults()
	}
	pos, err := parseArgs(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return fmt.Errorf("server find-cover: unexpected argument %q", pos[0])
	}
	if *bits < 20 || *bits > 31 {
		return fmt.Errorf("server find-cover: --bits %d: want 20 (4,096 addresses) to 31 (the server and one neighbour)", *bits)
	}
	if *parallel < 1 {
		return fmt.Errorf("server find-cover: --parallel %d: want at least 1", *parallel)
	}
	if *timeout <= 0 {
		return fmt.Errorf("server find-cover: --timeout %v: want a positive duration", *timeout)
	}
	if *port < 1 || *port > 65535 {
		return fmt.Errorf("server find-cover: --port %d: want 1 to 65535", *port)
	}
	if *near == "" {
		// The scan knocks on other people's servers: it starts only on an
		// address the operator names.
		hint := ""
		if a, err := detectPublicAddr(); err == nil && netip.MustParseAddr(a).Is4() {
			hint = fmt.Sprintf(" (this machine's looks like %s)", a)
		}
		return fmt.Errorf("server find-cover: --near ADDR is required: the server's public IPv4 address, whose block of neighbours is scanned%s", hint)
	}
	addr, err := netip.ParseAddr(*near)
	if err != nil || !addr.Unmap().Is4() {
		return fmt.Errorf("server find-cover: --near %q: want the server's IPv4 address", *near)
	}
	addr = addr.Unmap()
	block, _ := addr.Prefix(*bits)
	fmt.Fprintf(stdout, "Scanning %s port %d for cover sites (names resolving into that block) ...\n", block, *port)
	sites, err := coverscan.Scan(ctx, coverscan.Config{
		Block: block, Port: uint16(*port), Skip: []netip.Addr{addr},
		Parallel: *parallel, Timeout: *timeout,
	})
	if err != nil && ctx.Err() == nil {
		return fmt.Errorf("server find-cover: %w", err)
	}
	if ctx.Err() != nil {
		fmt.Fprintln(stdout, "Interrupted; what was found so far:")
	}
	var good int
	for _, s := range sites {
		if s.Suitable() {
			good++
		}
	}
	fmt.Fprintf(stdout, "%d HTTPS sites answered, %d can serve as a cover.\n", len(sites), good)
	if good > 0 || *all && len(sites) > 0 {
		fmt.Fprintln(stdout)
		tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "ADDRESS\tNAME\tHANDSHAKE\tVERDICT")
		for _, s := range sites {
			if !s.Suitable() && !*all {
				continue
			}
			verdict := "usable"
			if !s.Suitable() {
				verdict = s.Problem
			}
			hs := "?"
			if s.Handshake > 0 {
				hs = fmt.Sprintf("%d B", s.Handshake)
			}
			name := s.Name
			if name == "" {
				name = strings.Join(s.Names, ",")
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", s.Addr, name, hs, verdict)
		}
		tw.Flush()
	}
	if good == 0 {
		fmt.Fprint(stdout, "\nNo neighbour can serve as a cover. ")
		if *bits > 20 {
			fmt.Fprintf(stdout, "Widen the scan (--bits %d or 20), or pick", max(20, *bits-2))
		} else {
			fmt.Fprint(stdout, "Pick")
		}
		fmt.Fprintln(stdout, " a popular site of this provider")
		fmt.Fprintln(stdout, "or country by hand; `burrow check` tells how a censor sees it.")
		if !*all && len(sites) > 0 {
			fmt.Fprintln(stdout, "(--all lists the sites found and why each cannot serve.)")
		}
		return exitError{1}
	}
	best := sites[0]
	fmt.Fprintf(stdout, "\nThe smallest handshake leaves the most room under a freeze. To use the first:\n")
	fmt.Fprintf(stdout, "  burrow server init --cover %s --sni %s\n", best.Addr, best.Name)
	fmt.Fprintf(stdout, "or, on a server set up already, set \"cover\": %q and \"server_names\": [%q] in its\n", best.Addr.String(), best.Name)
	fmt.Fprintln(stdout, "config.json and restart it; links carry the SNI, so users need theirs again (subscriptions update).")
	return nil
}
