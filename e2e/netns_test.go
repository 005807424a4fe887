package e2e

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// needRoot skips the test unless it can create network namespaces.
func needRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("e2e: network-namespace tests need root (run as root, as CI does)")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("e2e: the `ip` command (iproute2) is missing; install iproute2")
	}
	if _, err := os.Stat("/dev/net/tun"); err != nil {
		t.Skip("e2e: /dev/net/tun is missing; TUN tests cannot run here")
	}
}

var (
	buildOnce sync.Once
	buildPath string
	buildErr  error
)

// burrowBinary builds cmd/burrow once per test run.
func burrowBinary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "burrow-e2e-bin-")
		if err != nil {
			buildErr = err
			return
		}
		buildPath = filepath.Join(dir, "burrow")
		out, err := exec.Command("go", "build", "-o", buildPath, "../cmd/burrow").CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return buildPath
}

// lab is the four namespaces and their links:
//
//	client c0 10.200.1.2 fd00:200:1::2 ── r1 10.200.1.1 fd00:200:1::1  router
//	server s0 10.200.2.2 fd00:200:2::2 ── r2 10.200.2.1 fd00:200:2::1  router
//	site   t0 10.200.3.2,.3 fd00:200:3::2 ── r3 10.200.3.1 fd00:200:3::1  router
type lab struct {
	t                            *testing.T
	id                           string
	client, router, server, site string
	clients2                     []string // more client namespaces (addClient)
}

const serverAddr = "10.200.2.2:443"

// labCount makes namespace names unique within one test binary.
var labCount int

func newLab(t *testing.T) *lab {
	t.Helper()
	labCount++
	id := fmt.Sprintf("%d%d", os.Getpid()%100000, labCount)
	l := &lab{t: t, id: id, client: "bwc" + id, router: "bwr" + id, server: "bws" + id, site: "bwt" + id}
	t.Cleanup(l.destroy)
	for _, ns := range []string{l.client, l.router, l.server, l.site} {
		l.ip("netns", "add", ns)
		// Every namespace gets a resolver file of its own, which `ip netns
		// exec` mounts over /etc/resolv.conf: nothing run inside can
		// change the machine's. Only the client's names a server (below).
		l.writeNSFile(ns, "resolv.conf", "# burrow e2e namespace "+ns+": no resolver\nnameserver 127.0.0.1\n")
		l.in(ns, "ip", "link", "set", "lo", "up")
		// No duplicate address detection: addresses (link-local too) are
		// final at once, so before/after snapshots compare equal.
		l.in(ns, "sysctl", "-qw", "net.ipv6.conf.default.accept_dad=0", "net.ipv6.conf.all.accept_dad=0")
	}
	// The client's resolver points at the site's DNS server, so without the
	// tunnel queries would go there in the clear.
	l.writeNSFile(l.client, "resolv.conf", "nameserver "+siteAddr4+"\n")
	links := []struct{ ns, dev, peer, addr4, addr6, raddr4, raddr6 string }{
		{l.client, "c0", "r1", "10.200.1.2/24", "fd00:200:1::2/64", "10.200.1.1/24", "fd00:200:1::1/64"},
		{l.server, "s0", "r2", "10.200.2.2/24", "fd00:200:2::2/64", "10.200.2.1/24", "fd00:200:2::1/64"},
		{l.site, "t0", "r3", "10.200.3.2/24", "fd00:200:3::2/64", "10.200.3.1/24", "fd00:200:3::1/64"},
	}
	for _, k := range links {
		l.ip("link", "add", k.dev, "netns", k.ns, "type", "veth", "peer", "name", k.peer, "netns", l.router)
		l.in(k.ns, "ip", "addr", "add", k.addr4, "dev", k.dev)
		l.in(k.ns, "ip", "-6", "addr", "add", k.addr6, "dev", k.dev, "nodad")
		l.in(k.ns, "ip", "link", "set", k.dev, "up")
		l.in(l.router, "ip", "addr", "add", k.raddr4, "dev", k.peer)
		l.in(l.router, "ip", "-6", "addr", "add", k.raddr6, "dev", k.peer, "nodad")
		l.in(l.router, "ip", "link", "set", k.peer, "up")
		gw4 := strings.Split(k.raddr4, "/")[0]
		gw6 := strings.Split(k.raddr6, "/")[0]
		l.in(k.ns, "ip", "route", "add", "default", "via", gw4)
		l.in(k.ns, "ip", "-6", "route", "add", "default", "via", gw6)
	}
	l.in(l.site, "ip", "addr", "add", directAddr4+"/24", "dev", "t0")
	l.in(l.router, "sysctl", "-qw", "net.ipv4.ip_forward=1")
	l.in(l.router, "sysctl", "-qw", "net.ipv6.conf.all.forwarding=1")
	return l
}

func (l *lab) resolvPath() string { return filepath.Join("/etc/netns", l.client, "resolv.conf") }

// writeNSFile writes /etc/netns/NS/NAME, which `ip netns exec NS` mounts
// over /etc/NAME.
func (l *lab) writeNSFile(ns, name, body string) {
	l.t.Helper()
	dir := filepath.Join("/etc/netns", ns)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		l.t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
		l.t.Fatal(err)
	}
}

// addClient adds another client namespace, linked to the router as the
// first is: c0 10.200.4.2 fd00:200:4::2 ── r4 10.200.4.1 fd00:200:4::1, with
// its own resolv.conf naming the site's DNS server. It returns its name.
func (l *lab) addClient() string {
	l.t.Helper()
	ns := "bwd" + l.id
	l.clients2 = append(l.clients2, ns)
	l.ip("netns", "add", ns)
	l.writeNSFile(ns, "resolv.conf", "nameserver "+siteAddr4+"\n")
	l.in(ns, "ip", "link", "set", "lo", "up")
	l.in(ns, "sysctl", "-qw", "net.ipv6.conf.default.accept_dad=0", "net.ipv6.conf.all.accept_dad=0")
	l.ip("link", "add", "c0", "netns", ns, "type", "veth", "peer", "name", "r4", "netns", l.router)
	l.in(ns, "ip", "addr", "add", "10.200.4.2/24", "dev", "c0")
	l.in(ns, "ip", "-6", "addr", "add", "fd00:200:4::2/64", "dev", "c0", "nodad")
	l.in(ns, "ip", "link", "set", "c0", "up")
	l.in(l.router, "ip", "addr", "add", "10.200.4.1/24", "dev", "r4")
	l.in(l.router, "ip", "-6", "addr", "add", "fd00:200:4::1/64", "dev", "r4", "nodad")
	l.in(l.router, "ip", "link", "set", "r4", "up")
	l.in(ns, "ip", "route", "add", "default", "via", "10.200.4.1")
	l.in(ns, "ip", "-6", "route", "add", "default", "via", "fd00:200:4::1")
	return ns
}

func (l *lab) destroy() {
	for _, ns := range append([]string{l.client, l.router, l.server, l.site}, l.clients2...) {
		exec.Command("ip", "netns", "del", ns).Run()
		os.RemoveAll(filepath.Join("/etc/netns", ns))
	}
}

func (l *lab) ip(args ...string) {
	l.t.Helper()
	if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
		l.t.Fatalf("ip %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// in runs a command in ns and fails the test if it fails.
func (l *lab) in(ns string, args ...string) string {
	l.t.Helper()
	out, err := l.try(ns, args...)
	if err != nil {
		l.t.Fatalf("in %s: %s: %v\n%s", ns, strings.Join(args, " "), err, out)
	}
	return out
}

// try runs a command in ns with a 30s limit and returns its output.
func (l *lab) try(ns string, args ...string) (string, error) {
	cmd := exec.Command("ip", append([]string{"netns", "exec", ns}, args...)...)
	var buf bytes.Buffer
	cmd.Stdout, cmd.Stderr = &buf, &buf
	if err := cmd.Start(); err != nil {
		return "", err
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		return buf.String(), err
	case <-time.After(30 * time.Second):
		cmd.Process.Kill()
		<-done
		return buf.String(), fmt.Errorf("still running after 30s")
	}
}

// helper runs the test binary in a helper mode inside ns.
func (l *lab) helper(ns string, args ...string) (string, error) {
	exe, _ := os.Executable()
	return l.try(ns, append([]string{"env", "BURROW_E2E_HELPER=1", exe}, args...)...)
}

// proc is a long-running process in a namespace; its output is kept.
type proc struct {
	name string
	cmd  *exec.Cmd
	mu   sync.Mutex
	out  bytes.Buffer
	done chan struct{}
	err  error
}

func (p *proc) Write(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.out.Write(b)
}

func (p *proc) Output() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.out.String()
}

// start starts args in ns and waits until its output contains ready
// (if ready is not empty). The process is killed at cleanup if still running.
func (l *lab) start(name, ns, ready string, args ...string) *proc {
	l.t.Helper()
	return l.startCommand(name, ready, append([]string{"ip", "netns", "exec", ns}, args...)...)
}

// startCommand is start for a command line that enters a namespace itself.
func (l *lab) startCommand(name, ready string, argv ...string) *proc {
	l.t.Helper()
	p := &proc{name: name, done: make(chan struct{})}
	p.cmd = exec.Command(argv[0], argv[1:]...)
	p.cmd.Stdout, p.cmd.Stderr = p, p
	if err := p.cmd.Start(); err != nil {
		l.t.Fatalf("start %s: %v", name, err)
	}
	go func() { p.err = p.cmd.Wait(); close(p.done) }()
	l.t.Cleanup(func() { p.stop(syscall.SIGKILL) })
	if ready == "" {
		return p
	}
	deadline := time.After(30 * time.Second)
	for !strings.Contains(p.Output(), ready) {
		select {
		case <-p.done:
			l.t.Fatalf("%s exited before it was ready: %v\n%s", name, p.err, p.Output())
		case <-deadline:
			l.t.Fatalf("%s not ready within 30s:\n%s", name, p.Output())
		case <-time.After(50 * time.Millisecond):
		}
	}
	return p
}

func (l *lab) startHelper(name, ns string, args ...string) *proc {
	exe, _ := os.Executable()
	return l.start(name, ns, "ready", append([]string{"env", "BURROW_E2E_HELPER=1", exe}, args...)...)
}

// stop signals the process and waits up to 15s for it to exit.
func (p *proc) stop(sig syscall.Signal) error {
	select {
	case <-p.done:
		return p.err
	default:
	}
	p.cmd.Process.Signal(sig)
	select {
	case <-p.done:
		return p.err
	case <-time.After(15 * time.Second):
		p.cmd.Process.Kill()
		<-p.done
		return fmt.Errorf("%s did not exit within 15s of %v", p.name, sig)
	}
}

// netState is what the client namespace's routing looks like, for
// before/after comparison.
func (l *lab) netState() string {
	l.t.Helper()
	var b strings.Builder
	for _, args := range [][]string{
		{"ip", "-4", "rule"}, {"ip", "-6", "rule"},
		{"ip", "-4", "route", "show", "table", "all"}, {"ip", "-6", "route", "show", "table", "all"},
		{"ip", "-br", "link"},
	} {
		fmt.Fprintf(&b, "$ %s\n%s", strings.Join(args, " "), l.in(l.client, args...))
	}
	resolv, _ := os.ReadFile(l.resolvPath())
	fmt.Fprintf(&b, "$ cat resolv.conf\n%s", resolv)
	return b.String()
}

// checkClean fails the test if the client namespace still holds anything
// of a --tun run: our policy rule, a route in our table, a blackhole route
// (the kill switch), a burrow interface, or a resolver file other than
// resolvBefore.
func (l *lab) checkClean(t *testing.T, phase string, resolvBefore []byte) {
	t.Helper()
	l.checkCleanIn(t, l.client, phase, resolvBefore)
}

// checkCleanIn is checkClean for client namespace ns; it also checks that
// the run's state file is gone.
func (l *lab) checkCleanIn(t *testing.T, ns, phase string, resolvBefore []byte) {
	t.Helper()
	for _, fam := range []string{"-4", "-6"} {
		if out := l.in(ns, "ip", fam, "rule", "show", "priority", fmt.Sprint(tunRulePriority)); strings.TrimSpace(out) != "" {
			t.Errorf("%s: ip %s rule at priority %d left behind:\n%s", phase, fam, tunRulePriority, out)
		}
		for _, line := range strings.Split(l.in(ns, "ip", fam, "route", "show", "table", "all"), "\n") {
			if strings.Contains(line, fmt.Sprintf("table %d ", tunTable)) || strings.HasPrefix(line, "blackhole") || strings.Contains(line, "dev burrow") {
				t.Errorf("%s: ip %s route left behind: %s", phase, fam, line)
			}
		}
	}
	if out := l.in(ns, "ip", "-br", "link"); strings.Contains(out, "burrow") {
		t.Errorf("%s: interface left behind:\n%s", phase, out)
	}
	if got, _ := os.ReadFile(filepath.Join("/etc/netns", ns, "resolv.conf")); !bytes.Equal(got, resolvBefore) {
		t.Errorf("%s: the namespace's resolv.conf = %q, want %q as before", phase, got, resolvBefore)
	}
	var st syscall.Stat_t
	if err := syscall.Stat(filepath.Join("/run/netns", ns), &st); err != nil {
		t.Fatal(err)
	}
	if state := fmt.Sprintf("/run/burrow/tun-%d-burrow0.json", st.Ino); fileSnapshot(state)[:7] != "missing" {
		t.Errorf("%s: state file %s left behind: %s", phase, state, fileSnapshot(state))
	}
}

// What a --tun run adds (internal/tun's defaults).
const (
	tunRulePriority = 5210
	tunTable        = 0x4255
)

// hostResolv is the machine's resolver file, which no test may change.
const hostResolv = "/etc/resolv.conf"

// fileSnapshot describes a file exactly: a symlink's target, or a regular
// file's mode and bytes.
func fileSnapshot(path string) string {
	fi, err := os.Lstat(path)
	if err != nil {
		return "missing: " + err.Error()
	}
	if fi.Mode()&os.ModeSymlink != 0 {
		target, _ := os.Readlink(path)
		return "symlink to " + target
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return "unreadable: " + err.Error()
	}
	return fmt.Sprintf("%v %q", fi.Mode(), b)
}

// checkHostResolv runs the tests and fails the run if the machine's
// /etc/resolv.conf differs afterwards (a namespace test that rewrote it
// would move the whole machine's DNS to a test address); it then puts the
// original bytes back, so one failed run does not break the machine.
func checkHostResolv(run func() int) int {
	before := fileSnapshot(hostResolv)
	orig, origErr := os.ReadFile(hostResolv)
	origLink, linkErr := os.Readlink(hostResolv)
	code := run()
	after := fileSnapshot(hostResolv)
	if after == before {
		return code
	}
	fmt.Fprintf(os.Stderr, "FAIL: the e2e tests changed the machine's %s:\n  before: %s\n  after:  %s\n", hostResolv, before, after)
	switch {
	case linkErr == nil:
		os.Remove(hostResolv)
		os.Symlink(origLink, hostResolv)
	case origErr == nil:
		os.WriteFile(hostResolv, orig, 0o644)
	}
	fmt.Fprintf(os.Stderr, "  put back:  %s\n", fileSnapshot(hostResolv))
	return 1
}

var _ io.Writer = (*proc)(nil)
