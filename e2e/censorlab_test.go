package e2e

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/burrow-vpn/burrow/internal/censorlab"
	"github.com/burrow-vpn/burrow/internal/censorlab/tunnels"
)

// TestCensorLabNetns runs the whole lab table with client, censor and
// servers in separate network namespaces, asserts the CI rule, and checks
// that the traffic really crossed the client's veth link.
func TestCensorLabNetns(t *testing.T) {
	skipUnderRace(t)
	name := fmt.Sprintf("be%d", os.Getpid())
	path, cleanup, err := censorlab.NetnsPath(name)
	if errors.Is(err, censorlab.ErrNeedRoot) {
		t.Skipf("skipping the netns censor lab: %v (the loopback lab in internal/censorlab/tunnels covers the same cells without root)", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := cleanup(); err != nil {
			t.Error(err)
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	systems := append(tunnels.Direct(), censorlab.Baselines()...)
	results, err := censorlab.Run(ctx, censorlab.Config{Systems: systems, Path: path, Workload: censorlab.Workload{Idle: raceSlowdown * censorlab.DefaultIdle}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	var table strings.Builder
	censorlab.PrintTable(&table, results)
	t.Log("\n" + table.String())
	rest, known := tunnels.SetAsideKnown(results)
	for _, r := range known {
		t.Logf("known failing cell %s/%s (%s)", r.Scenario, r.System, tunnels.KnownFailing[r.Scenario+"/"+r.System])
	}
	if err := censorlab.Check(rest); err != nil {
		t.Error(err)
	}
	var delivered int64
	for _, r := range results {
		delivered += r.BytesDelivered
	}
	// Every delivered byte entered the router namespace on its client-side veth.
	rx, tx := linkBytes(t, name+"r", name+"r0")
	if rx+tx < delivered {
		t.Errorf("the client-side veth carried %d bytes, less than the %d the workloads delivered: traffic did not cross the namespaces", rx+tx, delivered)
	}
}

// linkBytes returns the received and sent byte counters of dev in ns.
func linkBytes(t *testing.T, ns, dev string) (rx, tx int64) {
	t.Helper()
	read := func(which string) int64 {
		out, err := exec.Command("ip", "netns", "exec", ns, "cat", "/sys/class/net/"+dev+"/statistics/"+which).Output()
		if err != nil {
			t.Fatalf("read %s counter of %s in %s: %v", which, dev, ns, err)
		}
		n, _ := strconv.ParseInt(strings.TrimSpace(string(out)), 10, 64)
		return n
	}
	return read("rx_bytes"), read("tx_bytes")
}

// TestCensorLabNetnsRelay runs the relay systems through the whitelist
// scenarios with client, censor and servers in their own namespaces: the
// relay listens in the cover's (whitelisted) network as the servers'
// namespace sees it, its exit in the servers' network, the client behind
// the censor. burrow-relay-xhttp must pass both with every byte; the benign
// controls run alongside, so a rule (or a probe) that cannot reach the
// cover's network from the censor would show as a flagged control.
func TestCensorLabNetnsRelay(t *testing.T) {
	skipUnderRace(t)
	name := fmt.Sprintf("bw%d", os.Getpid())
	path, cleanup, err := censorlab.NetnsPath(name)
	if errors.Is(err, censorlab.ErrNeedRoot) {
		t.Skipf("skipping the netns relay lab: %v (internal/censorlab/tunnels runs the relay systems on loopback)", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := cleanup(); err != nil {
			t.Error(err)
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	systems := append(tunnels.Relayed(), censorlab.Controls()...)
	results, err := censorlab.Run(ctx, censorlab.Config{Systems: systems, Scenarios: []string{"sni-whitelist", "russia-2026-mobile"},
		Path: path, Parallel: 4}, nil)
	if err != nil {
		t.Fatal(err)
	}
	var table strings.Builder
	censorlab.PrintTable(&table, results)
	t.Log("\n" + table.String())
	if err := censorlab.Check(results); err != nil {
		t.Error(err)
	}
	var cells int
	var delivered int64
	for _, r := range results {
		delivered += r.BytesDelivered
		if r.System != "burrow-relay-xhttp" {
			continue
		}
		cells++
		if r.Detected || r.BytesDelivered != r.BytesExpected {
			t.Errorf("%s/%s: detected=%v rule=%q, delivered %d of %d bytes (%s); want undetected with every byte",
				r.Scenario, r.System, r.Detected, r.Rule, r.BytesDelivered, r.BytesExpected, r.Detail)
		}
	}
	if cells != 2 {
		t.Errorf("burrow-relay-xhttp ran in %d cells, want 2", cells)
	}
	rx, tx := linkBytes(t, name+"r", name+"r0")
	if rx+tx < delivered {
		t.Errorf("the client-side veth carried %d bytes, less than the %d the workloads delivered: traffic did not cross the namespaces", rx+tx, delivered)
	}
}
