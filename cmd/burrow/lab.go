package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
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
	parallel := fs.Int("parallel", 8, "cells run at once (with --sweep: points at once, default 1)")
	list := fs.Bool("list", false, "list scenarios and systems and exit")
	netns := fs.Bool("netns", false, "put client, censor and servers in their own network namespaces, linked by veths (root)")
	setAside := fs.Bool("known-failing", false, "report the Burrow cells known to fail (issue 14) apart instead of failing on them")
	sweep := fs.Bool("sweep", false, "instead of the table: carry --sweep-mib through each Burrow system behind a freeze at each --sweep-budgets KiB and a cap of each --sweep-caps connections")
	sweepBudgets := fs.String("sweep-budgets", "4,8,16,32,64", "freezes of --sweep, in KiB")
	sweepCaps := fs.String("sweep-caps", "2,3,4,8", "connection caps of --sweep")
	sweepMiB := fs.Int64("sweep-mib", 32, "MiB carried at each point of --sweep")
	coverChain := fs.Bool("cover-chain", false, "the cover serves a large site's certificate chain (a ~6 KB handshake) instead of one small certificate (~1.8 KB)")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: burrow lab [--json] [--scenario NAME[,NAME]] [--system NAME[,NAME]] [--parallel N] [--list] [--netns] [--known-failing] [--cover-chain]")
		fmt.Fprintln(stderr, "       burrow lab --sweep [--system NAME[,NAME]] [--sweep-budgets KIB,...] [--sweep-caps N,...] [--sweep-mib N] [--parallel N] [--cover-chain] [--json]")
		fs.PrintDefaults()
	}
	if pos, err := parseArgs(fs, args); err != nil {
		return err
	} else if len(pos) > 0 {
		return fmt.Errorf("lab: unexpected argument %q", pos[0])
	}
	systems := append(append(tunnels.All(), censorlab.Baselines()...), censorlab.Controls()...)
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
	if *sweep {
		points := 1 // the figures are times: points at once compete for the CPU
		fs.Visit(func(f *flag.Flag) {
			if f.Name == "parallel" {
				points = *parallel
			}
		})
		return runSweep(ctx, systems, *sweepBudgets, *sweepCaps, *sweepMiB, points, *coverChain, *asJSON, stdout)
	}
	cfg := censorlab.Config{Systems: systems, Scenarios: splitList(*scenario), Parallel: *parallel, CoverChain: *coverChain}
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

// runSweep is `burrow lab --sweep`: the Burrow systems among systems carry
// mib MiB behind each freeze budget × connection cap (issue 14).
func runSweep(ctx context.Context, systems []censorlab.System, budgets, caps string, mib int64, parallel int, coverChain, asJSON bool, stdout io.Writer) error {
	systems = slices.DeleteFunc(slices.Clone(systems), func(s censorlab.System) bool { return s.Baseline || s.Control })
	var points []censorlab.SweepPoint
	for _, b := range splitList(budgets) {
		kib, err := strconv.ParseInt(b, 10, 64)
		if err != nil || kib < 1 {
			return fmt.Errorf("lab: --sweep-budgets: %q is not a size in KiB", b)
		}
		for _, c := range splitList(caps) {
			n, err := strconv.Atoi(c)
			if err != nil || n < 1 {
				return fmt.Errorf("lab: --sweep-caps: %q is not a connection count", c)
			}
			points = append(points, censorlab.SweepPoint{Budget: kib << 10, MaxConns: n})
		}
	}
	if mib < 1 {
		return fmt.Errorf("lab: --sweep-mib %d: want at least 1", mib)
	}
	enc := json.NewEncoder(stdout)
	each := func(r censorlab.SweepResult) {
		if asJSON {
			enc.Encode(r)
		} else {
			censorlab.PrintSweep(stdout, []censorlab.SweepResult{r})
		}
	}
	results, err := censorlab.Sweep(ctx, censorlab.SweepConfig{Systems: systems, Points: points, Bytes: mib << 20, CoverChain: coverChain, Parallel: parallel}, each)
	if err != nil {
		return err
	}
	for _, r := range results {
		if !r.OK {
			return exitError{1}
		}
	}
	return nil
}
