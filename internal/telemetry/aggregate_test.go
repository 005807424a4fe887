package telemetry

import (
	"context"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/burrow-vpn/burrow/internal/access"
)

func openStore(t *testing.T) *access.SQLiteStore {
	t.Helper()
	st, err := access.OpenSQLite(filepath.Join(t.TempDir(), "burrow.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

// TestAggregator: reports add up per UTC day in memory and reach the store
// on Flush (adding to what is there); one sender is counted at most once a
// minute; old days are pruned.
func TestAggregator(t *testing.T) {
	ctx := context.Background()
	st := openStore(t)
	now := time.Date(2026, 12, 7, 23, 59, 0, 0, time.UTC)
	a := NewAggregator(st, nil)
	a.now = func() time.Time { return now }
	alice, bob := new(int), new(int)

	old := now.AddDate(0, 0, -KeepDays-1).Format(time.DateOnly)
	if err := st.AddTelemetry(ctx, []access.TelemetryCount{{Day: old, Transport: "tcp", Metric: "reports", Count: 7}}); err != nil {
		t.Fatal(err)
	}
	rep := &Report{Entries: []Entry{{TCP, Freeze, 4, 2}, {XHTTP, ConnOK, 0, 3}}}
	if !a.Add(alice, rep) || !a.Add(bob, rep) {
		t.Fatal("first reports of two senders not counted")
	}
	now = now.Add(30 * time.Second)
	if a.Add(alice, rep) {
		t.Error("a second report of one sender within a minute was counted")
	}
	if err := a.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	now = now.Add(time.Minute) // the next UTC day
	if !a.Add(alice, &Report{Entries: []Entry{{TCP, Reset, 0, 1}}}) {
		t.Error("a report a minute later was not counted")
	}
	a.Reject()
	if err := a.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	rows, err := st.TelemetrySince(ctx, "2000-01-01")
	if err != nil {
		t.Fatal(err)
	}
	want := []access.TelemetryCount{
		{Day: "2026-12-08", Transport: "tcp", Metric: "reports", Count: 1},
		{Day: "2026-12-08", Transport: "tcp", Metric: "reset", Count: 1},
		{Day: "2026-12-07", Transport: "tcp", Metric: "freeze", Bucket: 16, Count: 4},
		{Day: "2026-12-07", Transport: "tcp", Metric: "reports", Count: 2},
		{Day: "2026-12-07", Transport: "xhttp", Metric: "conns_ok", Count: 6},
		{Day: "2026-12-07", Transport: "xhttp", Metric: "reports", Count: 2},
	}
	if !slices.Equal(rows, want) {
		t.Errorf("rows = %+v\nwant %+v (and the day older than %d days pruned)", rows, want, KeepDays)
	}
	tot := a.Totals()
	if tot.Rejected != 1 || tot.Limited != 1 {
		t.Errorf("rejected, limited = %d, %d; want 1, 1", tot.Rejected, tot.Limited)
	}
	wantTotals := []access.TelemetryCount{
		{Transport: "tcp", Metric: "freeze", Bucket: 16, Count: 4},
		{Transport: "tcp", Metric: "reports", Count: 3},
		{Transport: "tcp", Metric: "reset", Count: 1},
		{Transport: "xhttp", Metric: "conns_ok", Count: 6},
		{Transport: "xhttp", Metric: "reports", Count: 2},
	}
	if !slices.Equal(tot.Counts, wantTotals) {
		t.Errorf("totals = %+v\nwant %+v", tot.Counts, wantTotals)
	}
	if len(a.last) != 1 {
		t.Errorf("%d senders remembered after a flush, want 1 (only the last minute's)", len(a.last))
	}
}

// TestAggregatorFlushFailureKeepsCounts: counts that could not be written
// stay for the next flush.
func TestAggregatorFlushFailureKeepsCounts(t *testing.T) {
	ctx := context.Background()
	st := openStore(t)
	a := NewAggregator(st, nil)
	a.Add(1, &Report{Entries: []Entry{{TCP, ConnOK, 0, 5}}})
	st.Close()
	if err := a.Flush(ctx); err == nil {
		t.Fatal("Flush to a closed store succeeded")
	}
	st2 := openStore(t)
	a.st = st2
	if err := a.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	rows, err := st2.TelemetrySince(ctx, "2000-01-01")
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != 2 || rows[0].Metric != "conns_ok" || rows[0].Count != 5 {
		t.Errorf("rows after a failed then a good flush = %+v, want conns_ok 5 and reports 1", rows)
	}
}

// TestPrefer: which link a subscription lists first, from given aggregates.
func TestPrefer(t *testing.T) {
	row := func(transport, metric string, n int64) access.TelemetryCount {
		return access.TelemetryCount{Day: "2026-12-07", Transport: transport, Metric: metric, Count: n}
	}
	for _, tc := range []struct {
		name string
		rows []access.TelemetryCount
		want string
	}{
		{"no reports", nil, "tcp"},
		{"tcp works", []access.TelemetryCount{row("tcp", "conns_ok", 500), row("tcp", "reports", 20)}, "tcp"},
		{"tcp handshakes reset", []access.TelemetryCount{row("tcp", "conns_ok", 10), row("tcp", "conns_failed", 5), row("tcp", "reset", 5)}, "xhttp"},
		{"tcp freezes", []access.TelemetryCount{row("tcp", "conns_ok", 20), row("tcp", "freeze", 4), row("tcp", "fallback", 2)}, "xhttp"},
		{"two troubles are too few", []access.TelemetryCount{row("tcp", "conns_ok", 2), row("tcp", "reset", 2)}, "tcp"},
		{"rare troubles among many connections", []access.TelemetryCount{row("tcp", "conns_ok", 1000), row("tcp", "freeze", 5)}, "tcp"},
		{"xhttp troubled as much", []access.TelemetryCount{row("tcp", "conns_ok", 10), row("tcp", "reset", 4), row("xhttp", "reset", 4)}, "tcp"},
		{"xhttp freezes less", []access.TelemetryCount{row("tcp", "conns_ok", 10), row("tcp", "freeze", 6), row("xhttp", "freeze", 2)}, "xhttp"},
	} {
		if got := Prefer(tc.rows); got != tc.want {
			t.Errorf("%s: Prefer(%v) = %q, want %q", tc.name, tc.rows, got, tc.want)
		}
	}
}

func TestSummarize(t *testing.T) {
	rows := []access.TelemetryCount{
		{Day: "2026-12-06", Transport: "tcp", Metric: "reports", Count: 1},
		{Day: "2026-12-07", Transport: "xhttp", Metric: "cap", Bucket: 2, Count: 1},
		{Day: "2026-12-07", Transport: "tcp", Metric: "freeze", Bucket: 16, Count: 3},
		{Day: "2026-12-07", Transport: "tcp", Metric: "freeze", Bucket: 8, Count: 1},
		{Day: "2026-12-07", Transport: "tcp", Metric: "conns_ok", Count: 9},
	}
	got := Summarize(rows)
	if len(got) != 3 || got[0].Day != "2026-12-07" || got[0].Transport != "tcp" || got[1].Transport != "xhttp" || got[2].Day != "2026-12-06" {
		t.Fatalf("Summarize order = %+v, want 12-07 tcp, 12-07 xhttp, 12-06 tcp", got)
	}
	if got[0].ConnsOK != 9 || FormatBuckets(got[0].Freezes, true) != "8K:1 16K:3" || FormatBuckets(got[1].Caps, false) != "2:1" {
		t.Errorf("Summarize = %+v", got)
	}
	if s := FormatBuckets(nil, true); s != "-" {
		t.Errorf("FormatBuckets(nil) = %q, want -", s)
	}
}
