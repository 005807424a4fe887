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
	env := censorlab.Env{Cover: cover.Addr, CoverSNI: censorlab.CoverSNI, Log: slog.New(slog.DiscardHandler)}
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
