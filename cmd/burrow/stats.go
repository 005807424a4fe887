package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"path/filepath"
	"text/tabwriter"
	"time"

	"github.com/burrow-vpn/burrow/internal/access"
	"github.com/burrow-vpn/burrow/internal/server"
	"github.com/burrow-vpn/burrow/internal/telemetry"
)

// serverStats prints the block telemetry clients reported (internal/telemetry),
// per UTC day and transport, from the store. A running server writes what
// it counted every minute, so the last minute may be missing.
func serverStats(args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("server stats", stderr)
	data := fs.String("data", server.DefaultDataDir(), "server data directory")
	days := fs.Int("days", 7, fmt.Sprintf("how many days to show, today (UTC) included; at most %d (older ones are not kept)", telemetry.KeepDays))
	asJSON := fs.Bool("json", false, "print JSON instead of a table")
	pos, err := parseArgs(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return fmt.Errorf("server stats: unexpected argument %q", pos[0])
	}
	if *days < 1 || *days > telemetry.KeepDays {
		return fmt.Errorf("server stats: --days %d: want 1 to %d", *days, telemetry.KeepDays)
	}
	st, err := access.OpenSQLite(filepath.Join(*data, server.StoreFile))
	if err != nil {
		return fmt.Errorf("server stats: %w", err)
	}
	defer st.Close()
	since := time.Now().UTC().AddDate(0, 0, 1-*days).Format(time.DateOnly)
	rows, err := st.TelemetrySince(context.Background(), since)
	if err != nil {
		return fmt.Errorf("server stats: %w", err)
	}
	sums := telemetry.Summarize(rows)
	if *asJSON {
		if sums == nil {
			sums = []telemetry.DaySummary{}
		}
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(sums)
	}
	return writeStats(stdout, sums, *days, telemetry.Prefer(recent(rows)))
}

// recent is the rows of the days Prefer weighs.
func recent(rows []access.TelemetryCount) []access.TelemetryCount {
	since := time.Now().UTC().AddDate(0, 0, 1-telemetry.PreferDays).Format(time.DateOnly)
	var out []access.TelemetryCount
	for _, r := range rows {
		if r.Day >= since {
			out = append(out, r)
		}
	}
	return out
}

// writeStats prints sums as a table, and which link subscriptions list first.
func writeStats(w io.Writer, sums []telemetry.DaySummary, days int, first string) error {
	if len(sums) == 0 {
		fmt.Fprintf(w, "No telemetry reports in the last %d days (clients report when they use the server; `burrow connect --no-telemetry` turns it off).\n", days)
		return nil
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "DAY\tTRANSPORT\tREPORTS\tCONNS OK\tFAILED\tRESETS\tFALLBACKS\tFREEZES (KiB:n)\tBUDGETS (KiB:n)\tCAPS (cap:n)")
	for _, s := range sums {
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%d\t%d\t%d\t%s\t%s\t%s\n", s.Day, s.Transport, s.Reports, s.ConnsOK, s.ConnsFailed,
			s.Resets, s.Fallbacks, telemetry.FormatBuckets(s.Freezes, true), telemetry.FormatBuckets(s.Budgets, true),
			telemetry.FormatBuckets(s.Caps, false))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	_, err := fmt.Fprintf(w, "\nSubscriptions list the %s link first (from the last %d days).\n", first, telemetry.PreferDays)
	return err
}
