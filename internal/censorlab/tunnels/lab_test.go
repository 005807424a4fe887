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

// TestLabTable runs the full table — every scenario against Burrow, the
// baselines and the benign controls — and asserts the CI rule: no Burrow
// cell that is not marked expected-fail is detected or loses a byte (but the
// KnownFailing cells of issue 14, logged), an expected fail is caught only by
// its rules and delivers its floor, no control is flagged, and every
// baseline is caught where it must be.
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
	rest, known := SetAsideKnown(results)
	for _, r := range known {
		t.Logf("known failing cell %s/%s (%s): rule %q, %d of %d bytes (%s)", r.Scenario, r.System,
			KnownFailing[r.Scenario+"/"+r.System], r.Rule, r.BytesDelivered, r.BytesExpected, r.Detail)
	}
	if err := censorlab.Check(rest); err != nil {
		t.Error(err)
	}
	if os.Getenv("LAB_VERBOSE") != "" {
		for _, r := range results {
			fmt.Printf("%+v\n", r)
		}
	}
}
