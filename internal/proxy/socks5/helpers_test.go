package socks5

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"runtime"
	"sync"
	"testing"
	"time"
)

// testDialer dials real loopback sockets. Addresses listed in rewrite are
// dialed at their mapped address instead, so tests can use domain names
// without any resolver; every call is recorded.
type testDialer struct {
	rewrite map[string]string // requested address → loopback address
	fail    error             // when set, every dial fails with it

	mu    sync.Mutex
	calls []string // "network address"
	conns []net.Conn
}

func (d *testDialer) DialContext(ctx context.Context, network, address string) (net.Conn, error) {
	d.mu.Lock()
	d.calls = append(d.calls, network+" "+address)
	d.mu.Unlock()
	if d.fail != nil {
		return nil, d.fail
	}
	target := address
	if r, ok := d.rewrite[address]; ok {
		target = r
	}
	if host, _, err := net.SplitHostPort(target); err != nil || !isLoopback(host) {
		return nil, fmt.Errorf("test dialer: refusing non-loopback address %q", target)
	}
	var nd net.Dialer
	c, err := nd.DialContext(ctx, network, target)
	if err != nil {
		return nil, err
	}
	if network == "udp" {
		c = &trackedConn{Conn: c, address: address, closed: make(chan struct{})}
	}
	d.mu.Lock()
	d.conns = append(d.conns, c)
	d.mu.Unlock()
	return c, nil
}

// trackedConn is a dialed UDP conn whose closed channel is closed by Close:
// tests wait for a session's end on it. TCP conns are not wrapped, so the
// server still sees a *net.TCPConn (CloseWrite, splicing).
type trackedConn struct {
	net.Conn
	address string // as requested, before any rewrite
	once    sync.Once
	closed  chan struct{}
}

func (c *trackedConn) Close() error {
	c.once.Do(func() { close(c.closed) })
	return c.Conn.Close()
}

// waitUDPClosed waits until the first UDP conn dialed to target (as
// requested, before any rewrite) is closed.
func (d *testDialer) waitUDPClosed(t *testing.T, target string, budget time.Duration) {
	t.Helper()
	var tc *trackedConn
	d.mu.Lock()
	for _, c := range d.conns {
		if c, ok := c.(*trackedConn); ok && c.address == target {
			tc = c
			break
		}
	}
	d.mu.Unlock()
	if tc == nil {
		t.Fatalf("no UDP conn was dialed to %s", target)
	}
	select {
	case <-tc.closed:
	case <-time.After(budget):
		t.Fatalf("the UDP conn to %s is still open after %v", target, budget)
	}
}

func (d *testDialer) Calls() []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]string(nil), d.calls...)
}

// startServer serves s on a fresh 127.0.0.1 listener and stops it (and checks
// Serve's result) when the test ends.
func startServer(t *testing.T, s *Server) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- s.Serve(l) }()
	t.Cleanup(func() {
		s.Close()
		if err := <-done; !errors.Is(err, ErrServerClosed) {
			t.Errorf("Serve() = %v, want ErrServerClosed", err)
		}
	})
	return l.Addr().String()
}

// handshake performs the no-auth greeting and sends a request on c, then
// reads the reply. It returns the reply code and bound address.
func clientRequest(t *testing.T, c net.Conn, cmd byte, dst addr) (Reply, addr) {
	t.Helper()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	defer c.SetDeadline(time.Time{})
	if _, err := c.Write([]byte{5, 1, 0}); err != nil {
		t.Fatal(err)
	}
	var m [2]byte
	if _, err := io.ReadFull(c, m[:]); err != nil {
		t.Fatalf("read method: %v", err)
	}
	if m != [2]byte{5, 0} {
		t.Fatalf("method = %x, want 0500", m)
	}
	if _, err := c.Write(dst.appendTo([]byte{5, cmd, 0})); err != nil {
		t.Fatal(err)
	}
	var h [3]byte
	if _, err := io.ReadFull(c, h[:]); err != nil {
		t.Fatalf("read reply: %v", err)
	}
	bnd, err := readAddr(c)
	if err != nil {
		t.Fatalf("read reply address: %v", err)
	}
	return Reply(h[1]), bnd
}

// checkGoroutines fails the test if the goroutine count does not fall back to
// at most base within a few seconds.
func checkGoroutines(t *testing.T, base int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		n := runtime.NumGoroutine()
		if n <= base {
			return
		}
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			buf = buf[:runtime.Stack(buf, true)]
			t.Fatalf("goroutines = %d, want <= %d\n%s", n, base, buf)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// isLoopback reports whether host is a loopback IP address: tests never
// leave the machine.
func isLoopback(host string) bool {
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.IsLoopback()
}
