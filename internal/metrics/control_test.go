package metrics

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func TestWriteControl(t *testing.T) {
	c := &Control{StoreUp: true, StoreLatency: 1500 * time.Microsecond, LogVersion: 120,
		SyncChanges: 50, SyncSnapshots: 2, PushesApplied: 7, PushesRetried: 1, Loans: 3, LoanBytes: 3 << 20,
		Nodes: []ControlNode{
			{Name: "exit-1", Role: "exit", Up: true, Applied: 118, LastSeen: 2 * time.Second},
			{Name: "relay-1", Role: "relay", Applied: 130, LastSeen: 5 * time.Minute},
			{Name: "new", Role: "exit", Applied: -1, LastSeen: -1},
		}}
	var b strings.Builder
	if err := WriteControl(&b, c); err != nil {
		t.Fatal(err)
	}
	got, err := Parse(strings.NewReader(b.String()))
	if err != nil {
		t.Fatalf("Parse: %v\n%s", err, b.String())
	}
	want := map[string]float64{
		"burrow_control_store_up":                                            1,
		"burrow_control_store_latency_seconds":                               0.0015,
		"burrow_control_log_version":                                         120,
		"burrow_control_nodes_up":                                            1,
		`burrow_control_node_up{node="exit-1",role="exit"}`:                  1,
		`burrow_control_node_up{node="relay-1",role="relay"}`:                0,
		`burrow_control_node_up{node="new",role="exit"}`:                     0,
		`burrow_control_node_lag{node="exit-1",role="exit"}`:                 2,
		`burrow_control_node_lag{node="relay-1",role="relay"}`:               0, // ahead of the log: a restored store
		`burrow_control_node_last_seen_seconds{node="exit-1",role="exit"}`:   2,
		`burrow_control_node_last_seen_seconds{node="relay-1",role="relay"}`: 300,
		`burrow_control_sync_requests_total{answer="changes"}`:               50,
		`burrow_control_sync_requests_total{answer="snapshot"}`:              2,
		`burrow_control_traffic_pushes_total{result="applied"}`:              7,
		`burrow_control_traffic_pushes_total{result="retried"}`:              1,
		"burrow_control_loans_total":                                         3,
		"burrow_control_loan_bytes_total":                                    3 << 20,
	}
	for k, v := range want {
		if g, ok := got[k]; !ok || g != v {
			t.Errorf("series %s = %v (present %v), want %v", k, g, ok, v)
		}
	}
	for _, k := range []string{`burrow_control_node_lag{node="new",role="exit"}`, `burrow_control_node_last_seen_seconds{node="new",role="exit"}`} {
		if _, ok := got[k]; ok {
			t.Errorf("series %s present for a node never heard from", k)
		}
	}

	// With the store down: no latency, version or lag, the rest still.
	c.StoreUp = false
	b.Reset()
	WriteControl(&b, c)
	got, err = Parse(strings.NewReader(b.String()))
	if err != nil {
		t.Fatal(err)
	}
	if got["burrow_control_store_up"] != 0 || got["burrow_control_nodes_up"] != 1 {
		t.Errorf("store down: store_up %v, nodes_up %v; want 0, 1", got["burrow_control_store_up"], got["burrow_control_nodes_up"])
	}
	for k := range got {
		if strings.HasPrefix(k, "burrow_control_node_lag") || strings.HasPrefix(k, "burrow_control_store_latency") || k == "burrow_control_log_version" {
			t.Errorf("store down: series %s present", k)
		}
	}
}

func TestControlHandler(t *testing.T) {
	var fail atomic.Bool
	srv := httptest.NewServer(ControlHandler(func(context.Context) (*Control, error) {
		if fail.Load() {
			return nil, errors.New("down")
		}
		return &Control{StoreUp: true, LogVersion: 9}, nil
	}))
	defer srv.Close()
	get := func(path string) (int, string) {
		resp, err := http.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, body := get("/metrics"); code != 200 || !strings.Contains(body, "burrow_control_log_version 9\n") {
		t.Errorf("GET /metrics = %d %q", code, body)
	}
	if code, _ := get("/other"); code != 404 {
		t.Errorf("GET /other = %d, want 404", code)
	}
	fail.Store(true)
	if code, _ := get("/metrics"); code != 500 {
		t.Errorf("GET /metrics with the snapshot failing = %d, want 500", code)
	}
}
