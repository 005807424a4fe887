package censorlab

import (
	"context"
	"crypto/tls"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/burrow-vpn/burrow/internal/coversite"
)

func startCover(t *testing.T) *coversite.Site {
	t.Helper()
	cover, err := coversite.Start("127.0.1.1:0", CoverSNI)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cover.Close() })
	return cover
}

// plainTLS is a TLS server with its own certificate that answers nothing.
func plainTLS(t *testing.T, ip string) netip.AddrPort {
	cert, err := selfSigned(CoverSNI)
	if err != nil {
		t.Fatal(err)
	}
	cfg := &tls.Config{Certificates: []tls.Certificate{cert}}
	return serveTCP(t, ip, func(c net.Conn) {
		c.SetDeadline(time.Now().Add(5 * time.Second))
		tc := tls.Server(c, cfg)
		tc.Handshake()
		tc.Read(make([]byte, 1))
	})
}

// A perfect relay to the cover looks like the cover to every probe; a TLS
// server of its own does not.
func TestCompare(t *testing.T) {
	cover := startCover(t)
	relay := exposed(t, NewCensor(), netip.MustParseAddrPort(cover.Addr))
	own := plainTLS(t, "127.0.2.44")
	ctx := context.Background()
	probes := Probes(goHello(t, CoverSNI), CoverSNI, "other.test")
	for _, r := range Compare(ctx, nil, relay, cover.Addr, probes, time.Second, 3) {
		if r.Differed != 0 || r.Tries != 3 {
			t.Errorf("relay to the cover, probe %s differed in %d of %d tries: server %v, cover %v (%s); want the same in 3 of 3",
				r.Probe, r.Differed, r.Tries, r.Server, r.Cover, r.Differs)
		}
	}
	differs := map[string]string{}
	for _, r := range Compare(ctx, nil, own.String(), cover.Addr, probes, time.Second, 1) {
		differs[r.Probe] = r.Differs
	}
	if d := differs["tls-sni"]; d == "" {
		t.Errorf("own-certificate TLS server, probe tls-sni: no difference, want one")
	}
}

// The prober blocks a server that answers unlike its cover, and leaves a
// faithful relay alone.
func TestProberBlocks(t *testing.T) {
	cover := startCover(t)
	faithful := netip.MustParseAddrPort(exposed(t, NewCensor(), netip.MustParseAddrPort(cover.Addr)))
	own := plainTLS(t, "127.0.2.45")
	for _, tt := range []struct {
		name   string
		server netip.AddrPort
		block  bool
	}{{"faithful relay", faithful, false}, {"own certificate", own, true}} {
		p := &Prober{Delay: 50 * time.Millisecond, Patience: time.Second, Reference: cover.Addr, ReferenceSNI: CoverSNI,
			Resolve: func(string) string { return cover.Addr }}
		c := NewCensor(p)
		conn, err := net.Dial("tcp", exposed(t, c, tt.server))
		if err != nil {
			t.Fatal(err)
		}
		tc := tls.Client(conn, &tls.Config{ServerName: CoverSNI, InsecureSkipVerify: true})
		tc.SetDeadline(time.Now().Add(3 * time.Second))
		tc.Handshake()
		c.Settle()
		tc.Close()
		ev := c.Events()
		if got := c.IPBlocked(tt.server.Addr()); got != tt.block || (len(ev) > 0) != tt.block {
			t.Errorf("%s: blocked %v, events %v; want blocked %v", tt.name, got, ev, tt.block)
		}
		if tt.block && len(ev) > 0 && !strings.HasPrefix(ev[0].Reason, "probe ") {
			t.Errorf("%s: event %q, want a probe difference", tt.name, ev[0].Reason)
		}
		if res := p.Results(tt.server); len(res) < 10 {
			t.Errorf("%s: %d probe results, want the whole battery", tt.name, len(res))
		}
	}
}

func TestAudit(t *testing.T) {
	cover := startCover(t)
	faithful := exposed(t, NewCensor(), netip.MustParseAddrPort(cover.Addr))
	own := plainTLS(t, "127.0.2.46")
	noDNS := func(context.Context, string) ([]netip.Addr, error) {
		return nil, &net.DNSError{Err: "no such host", IsNotFound: true}
	}
	for _, tt := range []struct {
		server string
		flag   bool
	}{{faithful, false}, {own.String(), true}} {
		r, err := Audit(context.Background(), AuditConfig{Server: tt.server, SNI: CoverSNI, Cover: cover.Addr, Patience: time.Second, Resolve: noDNS})
		if err != nil {
			t.Fatal(err)
		}
		if r.Flagged() != tt.flag {
			t.Errorf("Audit(%s).Flagged() = %v, want %v; findings %+v", tt.server, r.Flagged(), tt.flag, r.Findings)
		}
	}
}

// A client slower than the prober's delay (a busy machine, a long path)
// still has its first flight replayed: the prober waits for the flight,
// not for a fixed time after the connection opened.
func TestProberWaitsForFlight(t *testing.T) {
	cover := startCover(t)
	own := plainTLS(t, "127.0.2.47")
	p := &Prober{Delay: 20 * time.Millisecond, Patience: time.Second, Reference: cover.Addr, ReferenceSNI: CoverSNI,
		Resolve: func(string) string { return cover.Addr }}
	c := NewCensor(p)
	conn, err := net.Dial("tcp", exposed(t, c, own))
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(10 * p.Delay) // the client is slow to send its hello
	tc := tls.Client(conn, &tls.Config{ServerName: CoverSNI, InsecureSkipVerify: true})
	tc.SetDeadline(time.Now().Add(3 * time.Second))
	tc.Handshake()
	c.Settle()
	tc.Close()
	res := p.Results(own)
	replayed := false
	for _, r := range res {
		replayed = replayed || strings.Contains(strings.ToLower(r.Probe), "replay")
	}
	if len(res) < 10 || !replayed {
		t.Errorf("%d probe results (replay among them: %v), want the whole battery with the replayed flight", len(res), replayed)
	}
}

// Timing classes: quick against late is a difference; an answer in the
// middle band matches either side (a boundary the load of the moment moves
// answers across, the cover's own included).
func TestOutcomeTimingBands(t *testing.T) {
	for _, tt := range []struct {
		a, b   string
		differ bool
	}{
		{"quick", "late", true},
		{"late", "quick", true},
		{"quick", "middle", false},
		{"middle", "late", false},
		{"quick", "quick", false},
	} {
		a := Outcome{Answer: "x", End: "FIN", Timing: tt.a}
		b := Outcome{Answer: "x", End: "FIN", Timing: tt.b}
		if d := a.Differs(b); (d != "") != tt.differ {
			t.Errorf("%s vs %s: Differs = %q, want a difference: %v", tt.a, tt.b, d, tt.differ)
		}
	}
}
