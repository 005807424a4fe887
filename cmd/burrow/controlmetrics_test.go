package main

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/burrow-vpn/burrow/internal/coversite"
	"github.com/burrow-vpn/burrow/internal/metrics"
)

// TestControlRunMetrics scrapes `burrow control run --metrics` with an exit
// joined and a user with a quota moving traffic through it: the store
// answers, the exit is up and has applied the whole log, and its syncs,
// traffic pushes and quota loans are counted.
func TestControlRunMetrics(t *testing.T) {
	l := &fleetLab{site: testSite(t)}
	_, l.sitep, _ = strings.Cut(l.site, ":")
	var err error
	if l.cover, err = coversite.Start("127.0.0.1:0", "cover.test"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.cover.Close() })
	l.ctlData, l.ctlAddr = filepath.Join(t.TempDir(), "control"), loopbackAddr(t)
	runCmd(t, "control", "init", "--data", l.ctlData, "--listen", l.ctlAddr, "--public-addr", "127.0.0.1",
		"--cover", l.cover.Addr, "--sni", "cover.test")
	maddr := loopbackAddr(t)
	ctl := start(t, "control", "run", "--data", l.ctlData, "--metrics", maddr)
	l.ctlLog = ctl.stderr
	for _, a := range []string{l.ctlAddr, maddr} {
		if err := waitListening(context.Background(), a); err != nil {
			t.Fatalf("control run: %v\n%s", err, ctl.stderr)
		}
	}
	e := l.addExit(t, "exit-m", "")
	runCmd(t, "user", "add", "anna", "--quota", "1GiB", "--data", l.ctlData)
	socks, _ := connectLink(t, l.link(t, "anna", e))
	l.waitFetch(t, socks, "anna")

	node := `{node="exit-m",role="exit"}`
	checks := []struct {
		series string
		ok     func(v float64) bool
		want   string
	}{
		{"burrow_control_store_up", func(v float64) bool { return v == 1 }, "1"},
		{"burrow_control_store_latency_seconds", func(v float64) bool { return v > 0 && v < 30 }, "above 0"},
		{"burrow_control_log_version", func(v float64) bool { return v >= 1 }, "at least 1"},
		{"burrow_control_nodes_up", func(v float64) bool { return v == 1 }, "1"},
		{"burrow_control_node_up" + node, func(v float64) bool { return v == 1 }, "1"},
		{"burrow_control_node_lag" + node, func(v float64) bool { return v == 0 }, "0"},
		{"burrow_control_node_last_seen_seconds" + node, func(v float64) bool { return v >= 0 && v < 60 }, "under a minute"},
		{`burrow_control_sync_requests_total{answer="snapshot"}`, func(v float64) bool { return v >= 1 }, "at least 1"},
		{`burrow_control_sync_requests_total{answer="changes"}`, func(v float64) bool { return v >= 1 }, "at least 1"},
		{`burrow_control_traffic_pushes_total{result="applied"}`, func(v float64) bool { return v >= 1 }, "at least 1"},
		{`burrow_control_traffic_pushes_total{result="retried"}`, func(v float64) bool { return v == 0 }, "0"},
		{"burrow_control_loans_total", func(v float64) bool { return v >= 1 }, "at least 1"},
		{"burrow_control_loan_bytes_total", func(v float64) bool { return v >= 1<<20 }, "at least 1 MiB"},
	}
	deadline := time.Now().Add(60 * time.Second)
	for {
		text := scrapeText(t, maddr)
		got, err := metrics.Parse(strings.NewReader(text))
		if err != nil {
			t.Fatalf("the control plane's metrics do not parse: %v\n%s", err, text)
		}
		var bad []string
		for _, c := range checks {
			if v, ok := got[c.series]; !ok || !c.ok(v) {
				bad = append(bad, fmt.Sprintf("%s = %v (present: %v), want %s", c.series, v, ok, c.want))
			}
		}
		if len(bad) == 0 {
			t.Logf("metrics:\n%s", text)
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after 60 s:\n%s\n\n%s", strings.Join(bad, "\n"), text)
		}
		time.Sleep(250 * time.Millisecond) // pushes come every 2 s; nothing to wait on
	}
}
