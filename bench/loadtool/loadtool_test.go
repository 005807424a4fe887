package main

import (
	"context"
	"math"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestParseStatCPU(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want float64
		ok   bool
	}{
		{"plain", "1234 (xray) S 1 1234 1234 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 9 0 100 0", 3.0, true},
		{"comm with spaces and parens", "77 (a b) c)) R 1 77 77 0 -1 0 0 0 0 0 7 3 0 0", 0.1, true},
		{"short", "1 (x) S 1 2 3", 0, false},
		{"no comm", "1 x S", 0, false},
		{"bad number", "1 (x) S 1 1 1 0 -1 0 0 0 0 0 zz 3 0 0", 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseStatCPU([]byte(tt.in), 100)
			if (err == nil) != tt.ok {
				t.Fatalf("parseStatCPU(%q) error = %v, want ok %v", tt.in, err, tt.ok)
			}
			if tt.ok && math.Abs(got-tt.want) > 1e-9 {
				t.Errorf("parseStatCPU(%q) = %v, want %v", tt.in, got, tt.want)
			}
		})
	}
}

func TestParseVmRSS(t *testing.T) {
	tests := []struct {
		in   string
		want int64
		ok   bool
	}{
		{"Name:\tx\nVmRSS:\t  2048 kB\nThreads: 3\n", 2048 * 1024, true},
		{"Name:\tx\n", 0, false},
		{"VmRSS:\t12 MB\n", 0, false},
	}
	for _, tt := range tests {
		got, err := parseVmRSS([]byte(tt.in))
		if (err == nil) != tt.ok || got != tt.want {
			t.Errorf("parseVmRSS(%q) = %d, %v, want %d, ok %v", tt.in, got, err, tt.want, tt.ok)
		}
	}
}

func TestParseMachineCPU(t *testing.T) {
	in := "cpu  100 20 30 1000 50 5 5 10 7 0\ncpu0 50 10 15 500 25 2 3 5 0 0\n"
	got, err := parseMachineCPU([]byte(in), 100)
	if want := 1.7; err != nil || math.Abs(got-want) > 1e-9 {
		t.Errorf("parseMachineCPU(%q) = %v, %v, want %v, nil", in, got, err, want)
	}
	if _, err := parseMachineCPU([]byte("intr 1 2 3\n"), 100); err == nil {
		t.Errorf("parseMachineCPU(no cpu line) error = nil, want error")
	}
}

func TestPercentileMedian(t *testing.T) {
	ds := make([]time.Duration, 100)
	for i := range ds {
		ds[len(ds)-1-i] = time.Duration(i+1) * time.Millisecond // 100..1 ms, unsorted
	}
	for _, tt := range []struct {
		q    float64
		want time.Duration
	}{{0.5, 50 * time.Millisecond}, {0.99, 99 * time.Millisecond}, {1, 100 * time.Millisecond}, {0.001, time.Millisecond}} {
		if got := percentile(ds, tt.q); got != tt.want {
			t.Errorf("percentile(1..100ms, %v) = %v, want %v", tt.q, got, tt.want)
		}
	}
	if got := percentile(nil, 0.5); got != 0 {
		t.Errorf("percentile(nil, 0.5) = %v, want 0", got)
	}
	for _, tt := range []struct {
		in   []float64
		want float64
	}{{[]float64{3, 1, 2}, 2}, {[]float64{4, 1, 3, 2}, 2.5}, {[]float64{7}, 7}} {
		if got := median(tt.in); got != tt.want {
			t.Errorf("median(%v) = %v, want %v", tt.in, got, tt.want)
		}
	}
}

func TestFinishRatios(t *testing.T) {
	r := newReport(benchConfig{Streams: 8, Reps: 3}, []system{{Name: "forwarder"}, {Name: "xray"}, {Name: "burrow"}})
	r.Systems[0].Reps = []map[string]float64{{"plain_x1_MBps": 1000, "ttfb_p50_ms": 0.2}}
	r.Systems[1].Reps = []map[string]float64{{"plain_x1_MBps": 300, "ttfb_p50_ms": 4}, {"plain_x1_MBps": 500, "ttfb_p50_ms": 2}, {"plain_x1_MBps": 400, "ttfb_p50_ms": 3}}
	r.Systems[2].Reps = []map[string]float64{{"plain_x1_MBps": 800, "ttfb_p50_ms": 1.5, "ttfb_failed": 0}}
	r.finish([]string{"burrow"}, []string{"xray", "forwarder:_MBps"})
	if got := r.Systems[1].Median["plain_x1_MBps"]; got != 400 {
		t.Errorf("xray median plain_x1_MBps = %v, want 400", got)
	}
	want := map[string]map[string]float64{
		"xray":      {"plain_x1_MBps": 2, "ttfb_p50_ms": 0.5},
		"forwarder": {"plain_x1_MBps": 0.8},
	}
	for base, figs := range want {
		got := r.Ratios["burrow"][base]
		if len(got) != len(figs) {
			t.Errorf("ratios burrow/%s = %v, want %v", base, got, figs)
		}
		for k, v := range figs {
			if math.Abs(got[k]-v) > 1e-9 {
				t.Errorf("ratio burrow/%s %s = %v, want %v", base, k, got[k], v)
			}
		}
	}
	if _, ok := r.Ratios["xray"]; ok {
		t.Errorf("ratios of xray present, want only systems named burrow*")
	}
}

func TestLoadSystems(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		name, body string
		ok         bool
	}{
		{"good", `{"systems":[{"name":"direct"},{"name":"x","socks":"127.0.0.1:1","procs":[{"role":"server","argv":["a"]}]}]}`, true},
		{"unknown field", `{"systems":[{"name":"direct","sock":"1"}]}`, false},
		{"bad role", `{"systems":[{"name":"x","procs":[{"role":"relay","argv":["a"]}]}]}`, false},
		{"empty", `{"systems":[]}`, false},
		{"no name", `{"systems":[{"socks":"127.0.0.1:1"}]}`, false},
	}
	for _, tt := range tests {
		p := filepath.Join(dir, tt.name+".json")
		os.WriteFile(p, []byte(tt.body), 0o644)
		_, err := loadSystems(p)
		if (err == nil) != tt.ok {
			t.Errorf("loadSystems(%s) error = %v, want ok %v", tt.body, err, tt.ok)
		}
	}
}

// TestMeasureThroughForwarder runs every measurement, small, against an
// in-process sink directly and through an in-process forwarder.
func TestMeasureThroughForwarder(t *testing.T) {
	s, err := newSink()
	if err != nil {
		t.Fatal(err)
	}
	listen := func() net.Listener {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { l.Close() })
		return l
	}
	lp, lt, lf := listen(), listen(), listen()
	go s.serve(lp, false)
	go s.serve(lt, true)
	go serveForward(lf)
	tg := target{
		plain: netip.MustParseAddrPort(lp.Addr().String()),
		tls:   netip.MustParseAddrPort(lt.Addr().String()),
	}
	for _, u := range []*under{{}, {socks: lf.Addr().String()}} {
		name := "direct"
		if u.socks != "" {
			name = "forwarder"
		}
		t.Run(name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			for _, overTLS := range []bool{false, true} {
				mbps, cpu, err := u.throughput(ctx, tg, overTLS, 3, 3<<20+1)
				if err != nil || mbps <= 0 || !math.IsNaN(cpu) {
					t.Errorf("throughput(tls=%v) = %v, %v, %v; want > 0, NaN (no processes), nil", overTLS, mbps, cpu, err)
				}
			}
			ds, failed := u.ttfb(ctx, tg, 5)
			if len(ds) != 5 || failed != 0 {
				t.Errorf("ttfb(5) = %d samples, %d failed; want 5, 0", len(ds), failed)
			}
			rs, err := u.rtt(ctx, tg, 10)
			if err != nil || len(rs) != 10 {
				t.Errorf("rtt(10) = %d samples, %v; want 10, nil", len(rs), err)
			}
			res, err := u.idle(ctx, tg, 20, 10*time.Millisecond)
			if err != nil || res.opened != 20 || res.held != 20 {
				t.Errorf("idle(20) = opened %d held %d, %v; want 20, 20, nil", res.opened, res.held, err)
			}
		})
	}
}

func TestForwarderRefusesNonLoopback(t *testing.T) {
	lf, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer lf.Close()
	go serveForward(lf)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := dialSOCKS(ctx, lf.Addr().String(), netip.MustParseAddrPort("192.0.2.1:443"))
	if err == nil {
		c.Close()
		t.Fatalf("dialSOCKS via forwarder to 192.0.2.1:443 succeeded, want refusal")
	}
}
