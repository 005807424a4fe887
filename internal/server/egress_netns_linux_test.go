package server

import (
	"net/netip"
	"os/exec"
	"runtime"
	"syscall"
	"testing"
)

// TestEgressPolicyNewOwnAddressNetns adds an address to the loopback of a
// network namespace of the test's own (this thread's, nameless, gone with
// it): the policy refuses it from the moment `ip addr add` returns, and
// allows it again once removed.
func TestEgressPolicyNewOwnAddressNetns(t *testing.T) {
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
