package tunnels

import (
	"context"
	"flag"
	"strings"
	"testing"
	"time"

	"github.com/burrow-vpn/burrow/internal/censorlab"
)

var fullSweep = flag.Bool("sweep", false, "run issue 14's whole budget × cap sweep (4–64 KiB × 2–8 connections, 32 MiB each); slow")

// TestLabSweep carries a download through each Burrow transport behind a
// freeze box and a connection cap it is not told about, checking every
// byte: the client must learn both (internal/client/learn.go). Where the
// freeze leaves a paced connection enough to carry (pace.go in the xhttp
// transport: from about 10 KiB with the lab's cover), the connections and
// handshakes it opens must also stay under the conn-rate rule's limits in
// every 10 s. The default suite runs 4 MiB at two corners of issue 14's
// grid, one on each side of that boundary, each at a freeze the lab's own
// scenarios do not use and a tight cap; -sweep runs all of it with 32 MiB
// (`burrow lab --sweep` prints the same table).
func TestLabSweep(t *testing.T) {
	skipUnderRace(t)
	if testing.Short() {
		t.Skip("a download per point; not in -short")
	}
	points := []censorlab.SweepPoint{{Budget: 64 << 10, MaxConns: 2}, {Budget: 8 << 10, MaxConns: 3}}
	size, timeout := int64(4<<20), 10*time.Minute
	if *fullSweep {
		points, size, timeout = censorlab.SweepGrid(), 32<<20, 12*time.Hour
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	// Two points at once: a paced point mostly waits.
	cfg := censorlab.SweepConfig{Systems: All(), Points: points, Bytes: size, Parallel: 2}
	results, err := censorlab.Sweep(ctx, cfg, func(r censorlab.SweepResult) {
		t.Logf("%s freeze %d cap %d: ok=%v %.1fs %d conns, at most %d opens and %d handshakes in 10 s",
			r.System, r.Budget, r.MaxConns, r.OK, r.Seconds, r.Conns, r.PeakConns, r.PeakHandshakes)
	})
	if err != nil {
		t.Fatal(err)
	}
	var table strings.Builder
	censorlab.PrintSweep(&table, results)
	t.Log("\n" + table.String())
	for _, r := range results {
		if !r.OK {
			t.Errorf("%s behind a freeze at %d B and a cap of %d: delivered %d of %d bytes intact in %d tries (%s %s)",
				r.System, r.Budget, r.MaxConns, r.Delivered, r.Bytes, r.Tries, r.Rules, r.Err)
		}
		if r.Budget >= 16<<10 && !r.RateOK {
			t.Errorf("%s behind a freeze at %d B and a cap of %d: %d opens and %d handshakes in 10 s, over the conn-rate rule",
				r.System, r.Budget, r.MaxConns, r.PeakConns, r.PeakHandshakes)
		}
	}
}
