package tunnels

import (
	"context"
	"log/slog"
	"net/netip"
	"testing"
	"time"

	"github.com/burrow-vpn/burrow/internal/censorlab"
	"github.com/burrow-vpn/burrow/internal/coversite"
)

// The audit behind `burrow check` passes Burrow's server and flags a plain
// Go crypto/tls proxy.
func TestAuditBurrowAndPlainTLS(t *testing.T) {
	ctx := context.Background()
	cover, err := coversite.Start("127.0.1.1:0", censorlab.CoverSNI)
	if err != nil {
		t.Fatal(err)
	}
	defer cover.Close()
	// The cover doubles as the neighbour the direct systems take as theirs.
	env := censorlab.Env{Cover: cover.Addr, CoverSNI: censorlab.CoverSNI, Neighbor: cover.Addr, NeighborSNI: censorlab.CoverSNI, Log: slog.New(slog.DiscardHandler)}
	for _, tt := range []struct {
		sys  censorlab.System
		ip   string
		flag bool
	}{
		{BurrowTCP(), "127.0.2.101", false},
		{censorlab.GoTLSProxy(), "127.0.2.102", true},
	} {
		env.IP = netip.MustParseAddr(tt.ip)
		inst, err := tt.sys.Start(ctx, env)
		if err != nil {
			t.Fatal(err)
		}
		r, err := censorlab.Audit(ctx, censorlab.AuditConfig{Server: inst.Server.String(), SNI: censorlab.CoverSNI, Cover: cover.Addr, Patience: 1500 * time.Millisecond})
		inst.Close()
		if err != nil {
			t.Fatal(err)
		}
		if r.Flagged() != tt.flag {
			t.Errorf("Audit(%s).Flagged() = %v, want %v; findings:", tt.sys.Name, r.Flagged(), tt.flag)
			for _, f := range r.Findings {
				t.Logf("  [%s] %s", f.Severity, f.What)
			}
		}
		if len(r.Probes) < 9 {
			t.Errorf("Audit(%s): %d probes, want the prober's battery", tt.sys.Name, len(r.Probes))
		}
	}
}

// TestFarCoverCaughtBySNIIP: the direct systems pass sni-ip because they
// take the servers' neighbour as cover; the same server taking the
// cover of another network (a big site's name, as operators often pick)
// is caught by it. The rule is not blunted by the neighbour.
func TestFarCoverCaughtBySNIIP(t *testing.T) {
	skipUnderRace(t)
	far := BurrowTCP()
	far.Name = "burrow-tcp-far-cover"
	far.Start = func(ctx context.Context, env censorlab.Env) (*censorlab.Instance, error) {
		env.Neighbor, env.NeighborSNI = env.Cover, env.CoverSNI
		return startTCP(ctx, env)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	results, err := censorlab.Run(ctx, censorlab.Config{
		Systems:   []censorlab.System{BurrowTCP(), far},
		Scenarios: []string{"sni-ip"},
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(results) != 2 {
		t.Fatalf("%d cells, want 2", len(results))
	}
	for _, r := range results {
		switch r.System {
		case "burrow-tcp":
			if r.Detected || r.BytesDelivered != r.BytesExpected {
				t.Errorf("burrow-tcp with the neighbour as cover: detected %v by %q (%s), %d of %d bytes", r.Detected, r.Rule, r.Detail, r.BytesDelivered, r.BytesExpected)
			}
		case far.Name:
			if r.Rule != censorlab.RuleSNIIP {
				t.Errorf("%s: rule %q (%s), want %s", r.System, r.Rule, r.Detail, censorlab.RuleSNIIP)
			}
		}
	}
}
