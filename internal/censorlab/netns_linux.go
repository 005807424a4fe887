package censorlab

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"strings"

	"golang.org/x/sys/unix"
)

// ErrNeedRoot is returned by NetnsPath when the process may not create
// network namespaces.
var ErrNeedRoot = errors.New("censorlab: the netns mode needs root (CAP_SYS_ADMIN and CAP_NET_ADMIN) and the ip command")

// The netns mode's address plan:
//
//	ns <name>c  client   10.201.1.2/24 ── veth ── 10.201.1.1/24  ns <name>r  censor (relays listen here)
//	ns <name>s  servers  10.201.2.10-29/24 ── veth ── 10.201.2.1/24  ns <name>r
//	            controls 10.201.3.10-29/24 (the cover's network) on the same veth,
//	            and the relay systems' entry relays (their exits at 10.201.2.x)
//
// The client reaches the censor's relay, the censor dials the servers: every
// byte of the censored path crosses two veth links as real packets. Sites
// beyond the servers (the cover, the workload's site) stay in the process's
// own namespace, where the servers' outgoing connections go.
var (
	netnsServerNet = netip.MustParsePrefix("10.201.2.0/24")
	netnsCoverNet  = netip.MustParsePrefix("10.201.3.0/24")
	netnsRouterC   = "10.201.1.1"
)

// NetnsPath creates three network namespaces named name+"c", name+"r" and
// name+"s" (name at most 10 characters), linked as above, and returns the
// Path that places the lab's parties in them, and a function that removes
// them. Without root it returns ErrNeedRoot.
func NetnsPath(name string) (Path, func() error, error) {
	if os.Geteuid() != 0 {
		return Path{}, nil, ErrNeedRoot
	}
	if _, err := exec.LookPath("ip"); err != nil {
		return Path{}, nil, fmt.Errorf("%w: %v", ErrNeedRoot, err)
	}
	if len(name) == 0 || len(name) > 10 {
		return Path{}, nil, fmt.Errorf("censorlab: netns name %q: want 1-10 characters", name)
	}
	c, r, s := name+"c", name+"r", name+"s"
	cleanup := func() error {
		var errs []error
		for _, ns := range []string{c, r, s} {
			if err := exec.Command("ip", "netns", "del", ns).Run(); err != nil {
				errs = append(errs, fmt.Errorf("ip netns del %s: %w", ns, err))
			}
		}
		return errors.Join(errs...)
	}
	cmds := [][]string{
		{"netns", "add", c}, {"netns", "add", r}, {"netns", "add", s},
		{"link", "add", c + "0", "type", "veth", "peer", "name", r + "0"},
		{"link", "set", c + "0", "netns", c}, {"link", "set", r + "0", "netns", r},
		{"link", "add", r + "1", "type", "veth", "peer", "name", s + "0"},
		{"link", "set", r + "1", "netns", r}, {"link", "set", s + "0", "netns", s},
		{"-n", c, "addr", "add", "10.201.1.2/24", "dev", c + "0"},
		{"-n", r, "addr", "add", netnsRouterC + "/24", "dev", r + "0"},
		{"-n", r, "addr", "add", "10.201.2.1/24", "dev", r + "1"},
	}
	for i := 10; i < 30; i++ {
		cmds = append(cmds, []string{"-n", s, "addr", "add", fmt.Sprintf("10.201.2.%d/24", i), "dev", s + "0"},
			[]string{"-n", s, "addr", "add", fmt.Sprintf("10.201.3.%d/24", i), "dev", s + "0"})
	}
	for _, l := range [][2]string{{c, c + "0"}, {c, "lo"}, {r, r + "0"}, {r, r + "1"}, {r, "lo"}, {s, s + "0"}, {s, "lo"}} {
		cmds = append(cmds, []string{"-n", l[0], "link", "set", l[1], "up"})
	}
	cmds = append(cmds, []string{"-n", r, "route", "add", netnsCoverNet.String(), "dev", r + "1"})
	for _, args := range cmds {
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			cleanup()
			return Path{}, nil, fmt.Errorf("censorlab: ip %s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
		}
	}
	in := func(ns string) func(func() error) error {
		return func(f func() error) error { return inNetns("/var/run/netns/"+ns, f) }
	}
	inRouter := in(r)
	p := Path{
		ServerNet: netnsServerNet,
		ServerIP: func(i int) netip.Addr {
			return netip.AddrFrom4([4]byte{10, 201, 2, byte(10 + i%20)})
		},
		CoverNet: netnsCoverNet,
		ControlIP: func(i int) netip.Addr {
			return netip.AddrFrom4([4]byte{10, 201, 3, byte(10 + i%20)})
		},
		InServer:    in(s),
		InRouter:    inRouter,
		InClient:    in(c),
		RelayListen: netnsRouterC + ":0",
		RouterDial: func(ctx context.Context, network, addr string) (conn net.Conn, err error) {
			err = inRouter(func() error {
				var d net.Dialer
				conn, err = d.DialContext(ctx, network, addr)
				return err
			})
			return conn, err
		},
	}
	return p, cleanup, nil
}

// inNetns runs f on a thread switched into the network namespace at path,
// so the sockets f creates belong to it (a socket keeps its namespace for
// life), then switches the thread back.
func inNetns(path string, f func() error) error {
	target, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("censorlab: open %s: %w", path, err)
	}
	defer unix.Close(target)
	runtime.LockOSThread()
	orig, err := unix.Open("/proc/thread-self/ns/net", unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("censorlab: open own netns: %w", err)
	}
	defer unix.Close(orig)
	if err := unix.Setns(target, unix.CLONE_NEWNET); err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("censorlab: setns %s: %w", path, err)
	}
	ferr := f()
	if err := unix.Setns(orig, unix.CLONE_NEWNET); err != nil {
		// The thread stays locked, so Go retires it with this goroutine
		// rather than reuse it in the wrong namespace.
		return fmt.Errorf("censorlab: setns back: %w", err)
	}
	runtime.UnlockOSThread()
	return ferr
}
