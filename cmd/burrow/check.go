package main

import (
	"context"
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/burrow-vpn/burrow/internal/censorlab"
)

// runCheck is `burrow check HOST:PORT --sni NAME [--cover HOST:PORT]`: a
// self-audit of a deployed server as the lab's active prober sees it. Exit
// status 1 when a censor would flag the server.
func runCheck(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("check", stderr)
	sni := fs.String("sni", "", "the SNI your clients send (required)")
	cover := fs.String("cover", "", "HOST:PORT of the real site the SNI belongs to (default SNI:443)")
	patience := fs.Duration("timeout", 3*time.Second, "how long each probe waits for an answer")
	verbose := fs.Bool("v", false, "print every probe's outcome")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: burrow check HOST:PORT --sni NAME [--cover HOST:PORT] [--timeout 3s] [-v]")
		fs.PrintDefaults()
	}
	pos, err := parseArgs(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 || *sni == "" {
		fs.Usage()
		return exitError{2}
	}
	fmt.Fprintf(stdout, "Auditing %s as a censor's prober would (SNI %s) ...\n\n", pos[0], *sni)
	r, err := censorlab.Audit(ctx, censorlab.AuditConfig{Server: pos[0], SNI: *sni, Cover: *cover, Patience: *patience})
	if err != nil {
		return fmt.Errorf("check: %w", err)
	}
	if *verbose {
		tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "PROBE\tSERVER\tCOVER\tSAME")
		for _, p := range r.Probes {
			same := "yes"
			if p.Differs != "" {
				same = "NO: " + p.Differs
			}
			fmt.Fprintf(tw, "%s\t%v\t%v\t%s\n", p.Probe, p.Server, p.Cover, same)
		}
		tw.Flush()
		fmt.Fprintln(stdout)
	}
	for _, f := range r.Findings {
		fmt.Fprintf(stdout, "[%s] %s\n", f.Severity, f.What)
		if f.Advice != "" {
			fmt.Fprintf(stdout, "       advice: %s\n", f.Advice)
		}
	}
	if r.Flagged() {
		fmt.Fprintln(stdout, "\nVerdict: a censor probing this server would flag it.")
		return exitError{1}
	}
	fmt.Fprintln(stdout, "\nVerdict: to a prober this server looks like its cover site.")
	return nil
}
