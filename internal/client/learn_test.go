package client

import (
	"net"

	"github.com/burrow-vpn/burrow/internal/links"
	"testing"
)

func TestNetworkKey(t *testing.T) {
	for _, tc := range []struct {
		local net.Addr
		want  string
	}{
		{&net.TCPAddr{IP: net.ParseIP("192.168.1.23"), Port: 50000}, "192.168.1.0/24>s:443"},
		{&net.TCPAddr{IP: net.ParseIP("192.168.1.99"), Port: 1}, "192.168.1.0/24>s:443"},
		{&net.TCPAddr{IP: net.ParseIP("2001:db8:1:2:aaaa::1"), Port: 1}, "2001:db8:1:2::/64>s:443"},
		{&net.TCPAddr{IP: net.ParseIP("::ffff:10.0.0.7"), Port: 1}, "10.0.0.0/24>s:443"},
	} {
		if got := networkKey(tc.local, "s:443"); got != tc.want {
			t.Errorf("networkKey(%v) = %q, want %q", tc.local, got, tc.want)
		}
	}
}

// A tunnel that has not connected yet uses what another tunnel sharing its
// Learned found on the network the server was last reached from.
func TestLearnedSharedBeforeFirstDial(t *testing.T) {
	var l Learned
	link := &links.VLESS{Host: "192.0.2.1", Port: 443, SNI: "cover.test", Type: links.TypeTCP, Flow: links.FlowVision}
	a, err := NewTunnel(link, TunnelOptions{Learned: &l})
	if err != nil {
		t.Fatal(err)
	}
	k := networkKey(&net.TCPAddr{IP: net.ParseIP("10.1.2.3"), Port: 1}, a.server)
	l.seen(a.server, k)
	l.Stalled(k, 16384, false)
	l.Stalled(k, 16384, false)
	b, err := NewTunnel(link, TunnelOptions{Learned: &l})
	if err != nil {
		t.Fatal(err)
	}
	if got := b.Transport(); got != TransportXHTTP {
		t.Errorf("Transport() of a new tunnel on a network with a known freeze = %q, want %q", got, TransportXHTTP)
	}
	if c, err := NewTunnel(link, TunnelOptions{}); err != nil || c.Transport() != TransportTCP {
		t.Errorf("Transport() of a tunnel with its own Learned = %q (%v), want %q", c.Transport(), err, TransportTCP)
	}
}
