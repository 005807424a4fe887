package censorlab

import (
	"context"
	"runtime"
	"testing"
	"time"
)

// The baselines carry the whole workload where nothing catches them, are
// caught where they must be, and the lab leaves no goroutine behind.
func TestBaselinesAndNoLeaks(t *testing.T) {
	before := runtime.NumGoroutine()
	results, err := Run(context.Background(), Config{Systems: Baselines(), Scenarios: []string{"tls-in-tls", "prober"}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := Check(results); err != nil {
		t.Error(err)
	}
	for _, r := range results {
		switch {
		case r.Scenario == "tls-in-tls" && r.System == "go-tls-proxy":
			if !r.Detected || r.Rule != "tls-in-tls" {
				t.Errorf("%s/%s: detected %v by %q, want tls-in-tls", r.Scenario, r.System, r.Detected, r.Rule)
			}
		case r.Scenario == "tls-in-tls" || r.System == "wireguard-udp":
			if r.Detected || r.BytesDelivered != r.BytesExpected {
				t.Errorf("%s/%s: detected %v, %d of %d bytes (%s); want undetected and all bytes", r.Scenario, r.System, r.Detected, r.BytesDelivered, r.BytesExpected, r.Detail)
			}
		default: // the prober catches every TCP baseline, after the workload
			if !r.Detected || r.Rule != "prober" || !r.Blocked {
				t.Errorf("%s/%s: detected %v by %q, blocked %v; want blocked by the prober", r.Scenario, r.System, r.Detected, r.Rule, r.Blocked)
			}
		}
	}
	deadline := time.Now().Add(Budget(5 * time.Second)) // the lab's goroutines end as their conns close
	for runtime.NumGoroutine() > before+2 && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond) // polling interval
	}
	if n := runtime.NumGoroutine(); n > before+2 {
		buf := make([]byte, 1<<20)
		t.Errorf("%d goroutines after the lab, %d before:\n%s", n, before, buf[:runtime.Stack(buf, true)])
	}
}

func TestPickScenarios(t *testing.T) {
	if _, err := pickScenarios([]string{"nope"}); err == nil {
		t.Error(`pickScenarios("nope") succeeded, want an error naming the scenarios`)
	}
	got, err := pickScenarios(nil)
	if err != nil || len(got) != len(Scenarios()) {
		t.Errorf("pickScenarios(nil) = %d scenarios, %v; want all %d", len(got), err, len(Scenarios()))
	}
}

// The benign controls browse through every scenario untouched — every rule
// of the lab is usable by a censor — and move what they planned: three
// pages of ~40 subresources, a WebSocket, a download and a video stream.
func TestControlsPassEveryScenario(t *testing.T) {
	if testing.Short() {
		t.Skip("runs every scenario; not in -short")
	}
	results, err := Run(context.Background(), Config{Systems: Controls(), Parallel: 4}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if want := len(Controls()) * len(Scenarios()); len(results) != want {
		t.Fatalf("Run returned %d cells, want %d", len(results), want)
	}
	if err := Check(results); err != nil {
		t.Error(err)
	}
	for _, r := range results {
		if r.BytesExpected < 4<<20 || r.Conns == 0 {
			t.Errorf("%s/%s: expected %d bytes over %d connections, want at least 4 MiB over some", r.Scenario, r.System, r.BytesExpected, r.Conns)
		}
	}
}
