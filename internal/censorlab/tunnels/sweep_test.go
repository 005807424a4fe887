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

// TestLabSweep carries 32 MiB through each Burrow transport behind a freeze
// box and a connection cap it is not told about, checking every byte: the
// client must learn both (internal/client/learn.go). The default suite runs
// a representative corner of issue 14's grid, the tightest cap at a freeze
// the lab's own scenarios do not use; -sweep runs all of it (`burrow lab
// --sweep` prints the same table).
func TestLabSweep(t *testing.T) {
	skipUnderRace(t)
	if testing.Short() {
		t.Skip("32 MiB per point; not in -short")
	}
	points := []censorlab.SweepPoint{{Budget: 32 << 10, MaxConns: 2}}
	timeout := 10 * time.Minute
	if *fullSweep {
		points, timeout = censorlab.SweepGrid(), 6*time.Hour
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	results, err := censorlab.Sweep(ctx, censorlab.SweepConfig{Systems: All(), Points: points}, func(r censorlab.SweepResult) {
		t.Logf("%s freeze %d cap %d: ok=%v %.1fs %d conns", r.System, r.Budget, r.MaxConns, r.OK, r.Seconds, r.Conns)
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
	}
}
