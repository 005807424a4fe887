package censorlab

import (
	"net/netip"
	"strings"
	"testing"
	"time"
)

// An expected fail passes only when the rules it names fire and at least
// its floor arrives; anything else fails the cell.
func TestExpectedFailNamesRuleAndFloor(t *testing.T) {
	for _, tt := range []struct {
		name      string
		rules     []string
		delivered int64
		want      bool
	}{
		{"expected rule, floor met", []string{"byte-budget"}, 300, true},
		{"expected rule, above floor", []string{"byte-budget"}, 1000, true},
		{"nothing fired, everything arrived", nil, 1000, true},
		{"expected rule, below floor", []string{"byte-budget"}, 299, false},
		{"another rule too", []string{"byte-budget", "tls-in-tls"}, 1000, false},
		{"another rule only", []string{"prober"}, 1000, false},
	} {
		r := Result{ExpectedFail: true, ExpectRules: []string{"byte-budget"}, Floor: 300, BytesExpected: 1000,
			BytesDelivered: tt.delivered, Detected: len(tt.rules) > 0, Rule: strings.Join(tt.rules, "+")}
		if got := r.meetsRule(tt.rules); got != tt.want {
			t.Errorf("%s: meetsRule(%v) with %d bytes = %v, want %v", tt.name, tt.rules, tt.delivered, got, tt.want)
		}
	}
	flagged := Result{Control: true, Detected: true, Rule: "tls-in-tls", BytesExpected: 10, BytesDelivered: 10}
	if flagged.meetsRule([]string{"tls-in-tls"}) {
		t.Errorf("a flagged benign control meets the CI rule, want it not to (the rule is not usable by a censor)")
	}
	if err := Check([]Result{flagged}); err == nil || !strings.Contains(err.Error(), "flags a benign control") {
		t.Errorf("Check(flagged control) = %v, want a benign-control error", err)
	}
}

func TestConnRate(t *testing.T) {
	c := NewCensor()
	m := &ConnRate{PerPair: 3, PerClient: 5, Handshakes: 2, Window: time.Hour}
	m.attach(c)
	for i := range 3 {
		if v := m.Open(tcpFlow(uint64(1+i), "127.0.2.1:443")); v.Action != Pass {
			t.Fatalf("connection %d of 3 to one server: %v, want pass", i+1, v)
		}
	}
	if v := m.Open(tcpFlow(4, "127.0.2.1:443")); v.Action != Reset || v.Rule != RuleConnRate {
		t.Fatalf("4th new connection to one server in the window: %v by %q, want reset by %s", v.Action, v.Rule, RuleConnRate)
	}
	if v := c.open(tcpFlow(5, "127.0.2.1:443"), func(Action) {}); v.Action != Reset || v.Rule != RuleConnRate {
		t.Fatalf("censor after the pair was caught: %v by %q, want reset by %s", v.Action, v.Rule, RuleConnRate)
	}
	if v := m.Open(tcpFlow(6, "127.0.2.2:443")); v.Action != Pass {
		t.Fatalf("5th connection of the client, to another server: %v, want pass", v)
	}
	if v := m.Open(tcpFlow(7, "127.0.2.3:443")); v.Action != Reset || !strings.Contains(v.Reason, "from 127.0.0.1") {
		t.Fatalf("6th connection of the client in the window: %v (%s), want reset for the client's rate", v.Action, v.Reason)
	}

	hs := &ConnRate{Handshakes: 2, ClientHandshakes: 3, Window: time.Hour}
	hs.attach(NewCensor())
	hello := chromeHello(t)
	for i := range 3 {
		f := tcpFlow(uint64(10+i), "127.0.2.9:443")
		hs.Open(f)
		v, _ := feed(f, hs, Up, hello, 100)
		want := Pass
		if i == 2 {
			want = Reset
		}
		if v.Action != want || (want == Reset && v.Rule != RuleHandshakeRate) {
			t.Fatalf("TLS handshake %d of a pair with a limit of 2: %v by %q, want %v", i+1, v.Action, v.Rule, want)
		}
	}
	f := tcpFlow(20, "127.0.2.10:443")
	hs.Open(f)
	if v, _ := feed(f, hs, Up, hello, 0); v.Action != Reset || !strings.Contains(v.Reason, "handshakes from 127.0.0.1") {
		t.Fatalf("4th TLS handshake of the client (limit 3), to another server: %v (%s), want reset for the client's rate", v.Action, v.Reason)
	}
}

func TestConnRateWindowSlides(t *testing.T) {
	now := time.Now()
	ts := []time.Time{now.Add(-3 * time.Second), now.Add(-2 * time.Second), now.Add(-500 * time.Millisecond)}
	if got := slide(ts, now, time.Second); len(got) != 2 {
		t.Fatalf("slide over 1s keeps %d times, want 2 (the one 500ms ago and now)", len(got))
	}
}

func TestSNINetworks(t *testing.T) {
	for _, tt := range []struct {
		sni, server string
		want        Action
	}{
		{CoverSNI, "127.0.2.1:443", Reset},
		{CoverSNI, "127.0.1.7:443", Pass},
		{"unknown.example", "127.0.2.1:443", Pass},
	} {
		m := &SNINetworks{Known: []WhitelistEntry{{SNI: CoverSNI, Networks: []netip.Prefix{CoverNet}}}}
		v, _ := feed(tcpFlow(1, tt.server), m, Up, goHello(t, tt.sni), 0)
		if v.Action != tt.want {
			t.Errorf("SNINetworks(%s towards %s) = %v (%s), want %v", tt.sni, tt.server, v.Action, v.Reason, tt.want)
		}
	}
}
