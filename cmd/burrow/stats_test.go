package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/burrow-vpn/burrow/internal/access"
	"github.com/burrow-vpn/burrow/internal/coversite"
	"github.com/burrow-vpn/burrow/internal/server"
	"github.com/burrow-vpn/burrow/internal/telemetry"
)

// TestServerStats: `burrow server stats` prints the stored telemetry per
// day and transport, as a table or JSON, within --days, and says which
// link subscriptions put first.
func TestServerStats(t *testing.T) {
	cover, err := coversite.Start("127.0.0.1:0", "cover.test")
	if err != nil {
		t.Fatal(err)
	}
	defer cover.Close()
	data := filepath.Join(t.TempDir(), "srv")
	err = run(context.Background(), []string{"server", "init", "--data", data, "--listen", "127.0.0.1:4433",
		"--cover", cover.Addr, "--sni", "cover.test", "--public-addr", "127.0.0.1"}, io.Discard, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	stats := func(args ...string) (string, error) {
		var out bytes.Buffer
		err := run(context.Background(), append(append([]string{"server", "stats"}, args...), "--data", data), &out, io.Discard)
		return out.String(), err
	}
	if out, err := stats(); err != nil || !strings.Contains(out, "No telemetry reports in the last 7 days") {
		t.Errorf("stats of an empty store = %q, %v; want it to say there are none", out, err)
	}

	day := func(ago int) string { return time.Now().UTC().AddDate(0, 0, -ago).Format(time.DateOnly) }
	st, err := access.OpenSQLite(filepath.Join(data, server.StoreFile))
	if err != nil {
		t.Fatal(err)
	}
	err = st.AddTelemetry(context.Background(), []access.TelemetryCount{
		{Day: day(0), Transport: "tcp", Metric: "reports", Count: 3},
		{Day: day(0), Transport: "tcp", Metric: "conns_ok", Count: 40},
		{Day: day(0), Transport: "tcp", Metric: "conns_failed", Count: 2},
		{Day: day(0), Transport: "tcp", Metric: "reset", Count: 5},
		{Day: day(0), Transport: "tcp", Metric: "fallback", Count: 1},
		{Day: day(0), Transport: "tcp", Metric: "freeze", Bucket: 16, Count: 2},
		{Day: day(0), Transport: "xhttp", Metric: "reports", Count: 1},
		{Day: day(0), Transport: "xhttp", Metric: "budget", Bucket: 8, Count: 1},
		{Day: day(0), Transport: "xhttp", Metric: "cap", Bucket: 2, Count: 1},
		{Day: day(10), Transport: "tcp", Metric: "reports", Count: 7},
	})
	st.Close()
	if err != nil {
		t.Fatal(err)
	}

	out, err := stats()
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(out, "\n")
	wantRows := [][]string{
		{"DAY", "TRANSPORT", "REPORTS", "CONNS", "OK", "FAILED", "RESETS", "FALLBACKS", "FREEZES", "(KiB:n)", "BUDGETS", "(KiB:n)", "CAPS", "(cap:n)"},
		{day(0), "tcp", "3", "40", "2", "5", "1", "16K:2", "-", "-"},
		{day(0), "xhttp", "1", "0", "0", "0", "0", "-", "8K:1", "2:1"},
	}
	if len(lines) < len(wantRows) {
		t.Fatalf("server stats:\n%s", out)
	}
	for i, want := range wantRows {
		if got := strings.Fields(lines[i]); strings.Join(got, " ") != strings.Join(want, " ") {
			t.Errorf("line %d = %q, want fields %q", i, lines[i], want)
		}
	}
	if strings.Contains(out, day(10)) {
		t.Errorf("a day 10 days ago shown with the default --days 7:\n%s", out)
	}
	if !strings.Contains(out, "Subscriptions list the xhttp link first") {
		t.Errorf("server stats does not say the xhttp link goes first after tcp resets:\n%s", out)
	}

	out, err = stats("--days", "11", "--json")
	if err != nil {
		t.Fatal(err)
	}
	var sums []telemetry.DaySummary
	if err := json.Unmarshal([]byte(out), &sums); err != nil {
		t.Fatalf("--json: %v\n%s", err, out)
	}
	if len(sums) != 3 || sums[0].Resets != 5 || sums[0].Freezes[16] != 2 || sums[1].Caps[2] != 1 || sums[2].Day != day(10) || sums[2].Reports != 7 {
		t.Errorf("--json = %+v", sums)
	}
	for _, bad := range []string{"0", "31", "x"} {
		if _, err := stats("--days", bad); err == nil {
			t.Errorf("server stats --days %s succeeded, want an error", bad)
		}
	}
}
