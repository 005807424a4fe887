package client

import (
	"testing"

	"github.com/burrow-vpn/burrow/internal/links"
	"github.com/burrow-vpn/burrow/internal/transport/xhttp"
)

// TestTunnelsShareAPacer: tunnels to one server draw on one pacer, since a
// rate rule counts all their connections; another server has its own, and
// pacing off gives none.
func TestTunnelsShareAPacer(t *testing.T) {
	link := func(port uint16) *links.VLESS {
		return &links.VLESS{Host: "127.0.0.1", Port: port, SNI: "example.com",
			Fingerprint: "chrome", PublicKey: make([]byte, 32), Type: links.TypeXHTTP,
			Security: links.SecurityReality, Encryption: links.EncryptionNone}
	}
	a, err := NewTunnel(link(4431), TunnelOptions{})
	if err != nil {
		t.Fatal(err)
	}
	b, err := NewTunnel(link(4431), TunnelOptions{})
	if err != nil {
		t.Fatal(err)
	}
	c, err := NewTunnel(link(4432), TunnelOptions{})
	if err != nil {
		t.Fatal(err)
	}
	off, err := NewTunnel(link(4431), TunnelOptions{Pace: xhttp.Pace{Off: true}})
	if err != nil {
		t.Fatal(err)
	}
	if a.pacer == nil || a.pacer != b.pacer {
		t.Errorf("two tunnels to one server: pacers %p and %p, want one", a.pacer, b.pacer)
	}
	if c.pacer == a.pacer {
		t.Error("tunnels to two servers share a pacer")
	}
	if off.pacer != nil {
		t.Error("a tunnel with pacing off has a pacer")
	}
	if cfg := a.xhttpConfig(); cfg.Pacer != a.pacer {
		t.Error("the tunnel's XHTTP dialer does not use the tunnel's pacer")
	}
}
