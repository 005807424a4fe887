package server

import (
	"net/netip"
	"sync"
	"syscall"
	"testing"
)

// TestEgressPolicyNewOwnAddressFreshCheck: without address-change notices,
// an address missing from the cached listing is looked up again, so one
// added after the listing is refused at once.
func TestEgressPolicyNewOwnAddressFreshCheck(t *testing.T) {
	var mu sync.Mutex
	addrs := []netip.Addr{netip.MustParseAddr("198.51.100.1")}
	p := NewEgressPolicy(false)
	p.listAddrs = func() ([]netip.Addr, error) {
		mu.Lock()
		defer mu.Unlock()
		return addrs, nil
	}
	p.watched = true // as on a system without notices
	added := netip.MustParseAddr("198.51.100.2")
	if !p.Refuses(netip.MustParseAddr("198.51.100.1")) || p.Refuses(added) {
		t.Fatalf("Refuses(own, other) = %v, %v; want true, false", p.Refuses(netip.MustParseAddr("198.51.100.1")), p.Refuses(added))
	}
	mu.Lock()
	addrs = append(addrs, added)
	mu.Unlock()
	if !p.Refuses(added) {
		t.Errorf("Refuses(%s) just after it became the server's = false, want true", added)
	}
	p.listAddrs = func() ([]netip.Addr, error) { return nil, syscall.EMFILE }
	if !p.Refuses(netip.MustParseAddr("198.51.100.3")) {
		t.Errorf("Refuses with the address listing failing = false, want true (fail closed)")
	}
}

// BenchmarkEgressRefuses is the cost the own-address check adds to a dial
// of an ordinary destination when no address changed.
func BenchmarkEgressRefuses(b *testing.B) {
	p := NewEgressPolicy(false)
	a := netip.MustParseAddr("8.8.8.8")
	b.ReportAllocs()
	for b.Loop() {
		if p.Refuses(a) {
			b.Fatal("8.8.8.8 refused")
		}
	}
}
