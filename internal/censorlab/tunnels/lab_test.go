package tunnels

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/burrow-vpn/burrow/internal/censorlab"
)

// TestLabTable runs the full table — every scenario against Burrow and the
// baselines — and asserts the CI rule: no Burrow cell that is not marked
// expected-fail is detected or loses a byte, and every baseline is caught
// where it must be.
func TestLabTable(t *testing.T) {
	skipUnderRace(t)
	if testing.Short() {
		t.Skip("the full lab table takes a while; not in -short")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	start := time.Now()
	systems := append(append(All(), censorlab.Baselines()...), censorlab.Controls()...)
	results, err := censorlab.Run(ctx, censorlab.Config{Systems: systems, Workload: censorlab.Workload{Idle: raceSlowdown * 1500 * time.Millisecond}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if want := len(systems) * len(censorlab.Scenarios()); len(results) != want {
		t.Fatalf("Run returned %d cells, want %d", len(results), want)
	}
	var table strings.Builder
	censorlab.PrintTable(&table, results)
	t.Log("\n" + table.String())
	t.Logf("wall time %.1fs", time.Since(start).Seconds())
	if err := censorlab.Check(results); err != nil {
		t.Error(err)
	}
	if os.Getenv("LAB_VERBOSE") != "" {
		for _, r := range results {
			fmt.Printf("%+v\n", r)
		}
	}
}
