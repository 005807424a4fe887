package censorlab

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func TestMeasureSlowness(t *testing.T) {
	for _, tt := range []struct {
		name     string
		work     time.Duration
		min, max float64
	}{
		{"quicker than a quiet machine", 0, 1, 1},
		{"ten times slower", 10 * quietCalibration, 10, maxSlowness},
		{"hopelessly slow", 100 * quietCalibration, maxSlowness, maxSlowness},
	} {
		// The stand-in workload takes at least tt.work of wall time, as the real
		// one does on a machine that gives it a tenth of a core.
		got := measureSlowness(func() { time.Sleep(tt.work) })
		if got < tt.min || got > tt.max {
			t.Errorf("%s: measureSlowness = %.1f, want in [%.0f, %.0f]", tt.name, got, tt.min, tt.max)
		}
	}
	if s := Slowness(); s < 1 || s > maxSlowness {
		t.Errorf("Slowness() = %.1f, want in [1, %d]", s, maxSlowness)
	}
	if d := Budget(time.Second); d < time.Second {
		t.Errorf("Budget(1s) = %v, want at least 1s", d)
	}
}

// flaky wraps a system so that its first fails dials fail with an i/o timeout,
// as a baseline's handshake does on a machine too busy to answer in time.
func flaky(sys System, fails int64) System {
	start := sys.Start
	var n atomic.Int64
	sys.Start = func(ctx context.Context, env Env) (*Instance, error) {
		inst, err := start(ctx, env)
		if err != nil {
			return nil, err
		}
		dial := inst.Dial
		inst.Dial = func(ctx context.Context, via netip.AddrPort, target string) (net.Conn, error) {
			if n.Add(1) <= fails {
				return nil, &net.OpError{Op: "read", Net: "tcp", Err: errTimeout{}}
			}
			return dial(ctx, via, target)
		}
		return inst, nil
	}
	return sys
}

type errTimeout struct{}

func (errTimeout) Error() string   { return "i/o timeout" }
func (errTimeout) Timeout() bool   { return true }
func (errTimeout) Temporary() bool { return true }

// A baseline whose workload times out while the censor does nothing did not
// run: it is tried again, and one that never runs is reported as such, not as
// "detected false".
func TestCellThatDidNotRun(t *testing.T) {
	w := Workload{Download: 64 << 10, Upload: 16 << 10, Exchanges: 4, Conns: 2}
	once := flaky(OpenVPNTCP(), 1) // the first dial of the first try fails
	never := flaky(OpenVPNTCP(), 1<<40)
	never.Name = "openvpn-tcp-never"
	results, err := Run(context.Background(), Config{Systems: []System{once, never}, Scenarios: []string{"tls-in-tls"}, Workload: w}, nil)
	if err != nil {
		t.Fatal(err)
	}
	r := results[0]
	if r.DidNotRun || r.Tries != 2 || r.Detected || r.BytesDelivered != r.BytesExpected || !r.OK {
		t.Errorf("%s: did not run %v after %d tries, detected %v, %d of %d bytes, ok %v; want it run on the 2nd try with all bytes",
			r.System, r.DidNotRun, r.Tries, r.Detected, r.BytesDelivered, r.BytesExpected, r.OK)
	}
	r = results[1]
	if !r.DidNotRun || r.Tries != cellTries || r.OK || !strings.Contains(r.Detail, "i/o timeout") {
		t.Errorf("%s: did not run %v after %d tries, ok %v (%s); want did not run after %d tries, not ok, an i/o timeout",
			r.System, r.DidNotRun, r.Tries, r.OK, r.Detail, cellTries)
	}
	err = Check(results)
	if !errors.Is(err, ErrCIRule) || !strings.Contains(err.Error(), "openvpn-tcp-never: did not run in 3 tries") {
		t.Errorf("Check = %v, want the CI rule broken by openvpn-tcp-never not running", err)
	}
	if v := verdict(r); !strings.HasPrefix(v, "FAIL: did not run") {
		t.Errorf("verdict = %q, want FAIL: did not run", v)
	}
}
