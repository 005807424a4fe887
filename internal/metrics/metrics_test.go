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
)

func TestWriteParse(t *testing.T) {
	s := &Snapshot{Active: 3, Authenticated: 10, Fallback: 4, Rejected: 1, EgressRefused: 2, BytesUp: 1234, BytesDown: 98765,
		Users: []User{{Name: "alice", Up: 5, Down: 6, Connections: 1}, {Name: `we"ird\ name`, Up: 7}}}
	var b strings.Builder
	if err := Write(&b, s); err != nil {
		t.Fatal(err)
	}
	got, err := Parse(strings.NewReader(b.String()))
	if err != nil {
		t.Fatalf("Parse: %v\n%s", err, b.String())
	}
	want := map[string]float64{
		"burrow_connections_active":                               3,
		`burrow_bytes_total{direction="up"}`:                      1234,
		`burrow_bytes_total{direction="down"}`:                    98765,
		`burrow_handshakes_total{result="authenticated"}`:         10,
		`burrow_handshakes_total{result="cover"}`:                 4,
		"burrow_requests_rejected_total":                          1,
		"burrow_egress_refused_total":                             2,
		`burrow_user_bytes{user="alice",direction="up"}`:          5,
		`burrow_user_bytes{user="alice",direction="down"}`:        6,
		`burrow_user_connections_active{user="alice"}`:            1,
		`burrow_user_bytes{user="we\"ird\\ name",direction="up"}`: 7,
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("series %s = %v, want %v", k, got[k], v)
		}
	}
	for _, line := range strings.Split(b.String(), "\n") {
		if strings.HasPrefix(line, "# TYPE ") && !strings.HasSuffix(line, " gauge") && !strings.HasSuffix(line, " counter") {
			t.Errorf("bad TYPE line %q", line)
		}
	}
}

func TestNoPerUserByDefault(t *testing.T) {
	var b strings.Builder
	Write(&b, &Snapshot{Active: 1})
	if strings.Contains(b.String(), "user") && strings.Contains(b.String(), "burrow_user_") {
		t.Errorf("output without Users has per-user series:\n%s", b.String())
	}
}

func TestHandler(t *testing.T) {
	var fail atomic.Bool
	srv := httptest.NewServer(Handler(func(context.Context) (*Snapshot, error) {
		if fail.Load() {
			return nil, errors.New("down")
		}
		return &Snapshot{BytesDown: 42}, nil
	}))
	defer srv.Close()
	resp, err := http.Get(srv.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.Header.Get("Content-Type") != ContentType || !strings.Contains(string(body), `burrow_bytes_total{direction="down"} 42`) {
		t.Errorf("GET /metrics = %s %q:\n%s", resp.Status, resp.Header.Get("Content-Type"), body)
	}
	for _, p := range []string{"/", "/metrics/x", "/debug/pprof"} {
		if resp, err := http.Get(srv.URL + p); err != nil || resp.StatusCode != 404 {
			t.Errorf("GET %s = %v, %v; want 404", p, resp.Status, err)
		}
	}
	fail.Store(true)
	if resp, err := http.Get(srv.URL + "/metrics"); err != nil || resp.StatusCode != 500 {
		t.Errorf("GET /metrics with a failing source = %v, %v; want 500", resp.Status, err)
	}
}

func TestParseErrors(t *testing.T) {
	for _, in := range []string{"novalue", "x{a=\"b\"} notanumber", "1bad 3", "a 1 2", "a 1\na 2", `x{a="unterminated} 1`} {
		if _, err := Parse(strings.NewReader(in)); err == nil {
			t.Errorf("Parse(%q) succeeded, want an error", in)
		}
	}
}

func FuzzParse(f *testing.F) {
	var b strings.Builder
	Write(&b, &Snapshot{Active: 1, Users: []User{{Name: "a b"}}})
	f.Add(b.String())
	f.Fuzz(func(t *testing.T, s string) {
		Parse(strings.NewReader(s))
	})
}

func TestTelemetrySeries(t *testing.T) {
	s := &Snapshot{Telemetry: &Telemetry{Rejected: 2, Counts: []TelemetryCount{
		{Transport: "tcp", Metric: "reports", Count: 12},
		{Transport: "tcp", Metric: "conns_ok", Count: 340},
		{Transport: "tcp", Metric: "conns_failed", Count: 9},
		{Transport: "tcp", Metric: "freeze", Bucket: 16, Count: 4},
		{Transport: "tcp", Metric: "budget", Bucket: 8, Count: 2},
		{Transport: "xhttp", Metric: "cap", Bucket: 2, Count: 1},
		{Transport: "tcp", Metric: "reset", Count: 3},
		{Transport: "tcp", Metric: "fallback", Count: 5},
	}}}
	var b strings.Builder
	if err := Write(&b, s); err != nil {
		t.Fatal(err)
	}
	got, err := Parse(strings.NewReader(b.String()))
	if err != nil {
		t.Fatalf("Parse: %v\n%s", err, b.String())
	}
	want := map[string]float64{
		`burrow_telemetry_reports_total{transport="tcp"}`:                     12,
		`burrow_telemetry_rejected_total`:                                     2,
		`burrow_telemetry_connections_total{transport="tcp",result="ok"}`:     340,
		`burrow_telemetry_connections_total{transport="tcp",result="failed"}`: 9,
		`burrow_telemetry_freezes_total{transport="tcp",budget_bucket="16K"}`: 4,
		`burrow_telemetry_budgets_total{transport="tcp",budget_bucket="8K"}`:  2,
		`burrow_telemetry_caps_total{transport="xhttp",cap="2"}`:              1,
		`burrow_telemetry_resets_total{transport="tcp"}`:                      3,
		`burrow_telemetry_fallbacks_total{transport="tcp"}`:                   5,
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("series %s = %v, want %v\n%s", k, got[k], v, b.String())
		}
	}
	if n := strings.Count(b.String(), "# TYPE burrow_telemetry_connections_total"); n != 1 {
		t.Errorf("connections family declared %d times, want 1", n)
	}
	var none strings.Builder
	Write(&none, &Snapshot{})
	if strings.Contains(none.String(), "burrow_telemetry_") {
		t.Error("a snapshot without Telemetry has telemetry series")
	}
}
