package server

import (
	"net/netip"
	"os/exec"
	"runtime"
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

// TestEgressPolicyNewOwnAddressNetns adds an address to the loopback of a
// network namespace of the test's own (this thread's, nameless, gone with
// it): the policy refuses it from the moment `ip addr add` returns, and
// allows it again once removed.
func TestEgressPolicyNewOwnAddressNetns(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("network namespaces are Linux's")
	}
	ipCmd, err := exec.LookPath("ip")
	if err != nil {
		t.Skip("no ip command")
	}
	runtime.LockOSThread() // never unlocked: the thread ends with the test, namespace and all
	if err := syscall.Unshare(syscall.CLONE_NEWNET); err != nil {
		t.Skipf("cannot make a network namespace (needs CAP_SYS_ADMIN): %v", err)
	}
	ip := func(args ...string) {
		t.Helper()
		if out, err := exec.Command(ipCmd, args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %v: %v\n%s", args, err, out)
		}
	}
	a := netip.MustParseAddr("198.51.100.7")
	p := NewEgressPolicy(false)
	if p.Refuses(a) {
		t.Fatalf("Refuses(%s) before it is ours = true, want false", a)
	}
	ip("addr", "add", a.String()+"/32", "dev", "lo")
	if !p.Refuses(a) {
		t.Errorf("Refuses(%s) right after it was added = false, want true", a)
	}
	ip("addr", "del", a.String()+"/32", "dev", "lo")
	if p.Refuses(a) {
		t.Errorf("Refuses(%s) after it was removed = true, want false", a)
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
