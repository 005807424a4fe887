package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/burrow-vpn/burrow/internal/censorlab"
	"github.com/burrow-vpn/burrow/internal/censorlab/tunnels"
)

// runLab is `burrow lab`: Burrow's transports and the baselines through the
// simulated censors, as a table (or JSON lines). Exit status 1 when the CI
// rule is broken: a Burrow cell not marked expected-fail was detected or lost
// a byte, an expected fail was caught by another rule or delivered less than
// its floor, a benign control was flagged, or a baseline was not caught
// where it must be.
func runLab(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("lab", stderr)
	asJSON := fs.Bool("json", false, "one JSON object per cell per line instead of the table")
	scenario := fs.String("scenario", "", "run only these scenarios (comma-separated); see --list")
	system := fs.String("system", "", "run only these systems (comma-separated)")
	parallel := fs.Int("parallel", 8, "cells run at once")
	list := fs.Bool("list", false, "list scenarios and systems and exit")
	netns := fs.Bool("netns", false, "put client, censor and servers in their own network namespaces, linked by veths (root)")
	setAside := fs.Bool("known-failing", false, "report the Burrow cells known to fail (issue 14) apart instead of failing on them")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: burrow lab [--json] [--scenario NAME[,NAME]] [--system NAME[,NAME]] [--parallel N] [--list] [--netns] [--known-failing]")
		fs.PrintDefaults()
	}
	if pos, err := parseArgs(fs, args); err != nil {
		return err
	} else if len(pos) > 0 {
		return fmt.Errorf("lab: unexpected argument %q", pos[0])
	}
	burrow := tunnels.All()
	if *netns {
		burrow = tunnels.Direct()
	}
	systems := append(append(burrow, censorlab.Baselines()...), censorlab.Controls()...)
	if *list {
		for _, sc := range censorlab.Scenarios() {
			fmt.Fprintf(stdout, "scenario  %-16s %s\n", sc.Name, sc.Doc)
		}
		for _, s := range systems {
			kind := "burrow"
			switch {
			case s.Baseline:
				kind = "baseline"
			case s.Control:
				kind = "benign control (browsing, no tunnel)"
			}
			fmt.Fprintf(stdout, "system    %-16s %s\n", s.Name, kind)
		}
		return nil
	}
	if *system != "" {
		want := splitList(*system)
		systems = slices.DeleteFunc(systems, func(s censorlab.System) bool { return !slices.Contains(want, s.Name) })
		if len(systems) != len(want) {
			return fmt.Errorf("lab: unknown system in %q; see burrow lab --list", *system)
		}
	}
	cfg := censorlab.Config{Systems: systems, Scenarios: splitList(*scenario), Parallel: *parallel}
	if *netns {
		path, cleanup, err := censorlab.NetnsPath(fmt.Sprintf("bl%d", os.Getpid()))
		if err != nil {
			return fmt.Errorf("lab: --netns: %w; without --netns the same lab runs on loopback, no root needed", err)
		}
		defer func() {
			if err := cleanup(); err != nil {
				fmt.Fprintln(stderr, "lab: removing the namespaces:", err)
			}
		}()
		cfg.Path = path
	}
	start := time.Now()
	enc := json.NewEncoder(stdout)
	var each func(censorlab.Result)
	if *asJSON {
		each = func(r censorlab.Result) { enc.Encode(r) }
	} else {
		fmt.Fprintf(stderr, "running the censor lab ...\n")
	}
	results, err := censorlab.Run(ctx, cfg, each)
	if err != nil {
		return err // already says "censorlab: ..."
	}
	if !*asJSON {
		censorlab.PrintTable(stdout, results)
		fmt.Fprintf(stdout, "\n%d cells in %.1fs\n", len(results), time.Since(start).Seconds())
	}
	if *setAside {
		var known []censorlab.Result
		results, known = tunnels.SetAsideKnown(results)
		for _, r := range known {
			fmt.Fprintf(stderr, "known failing (not an expected fail): %s/%s: %s\n", r.Scenario, r.System, tunnels.KnownFailing[r.Scenario+"/"+r.System])
		}
	}
	if err := censorlab.Check(results); err != nil {
		fmt.Fprintln(stderr, strings.TrimPrefix(err.Error(), "censorlab: "))
		return exitError{1}
	}
	return nil
}
