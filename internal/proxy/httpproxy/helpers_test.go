package httpproxy

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"runtime"
	"sync"
	"sync/atomic"
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
	return nd.DialContext(ctx, network, target)
}

func (d *testDialer) Calls() []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]string(nil), d.calls...)
}

// countingListener counts accepted connections.
type countingListener struct {
	net.Listener
	n atomic.Int32
}

func (l *countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		l.n.Add(1)
	}
	return c, err
}

// startServer serves s on a fresh 127.0.0.1 listener and stops it (and checks
// Serve's result) when the test ends.
func startServer(t *testing.T, s *Server) *countingListener {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cl := &countingListener{Listener: l}
	done := make(chan error, 1)
	go func() { done <- s.Serve(cl) }()
	t.Cleanup(func() {
		s.Close()
		if err := <-done; !errors.Is(err, ErrServerClosed) {
			t.Errorf("Serve() = %v, want ErrServerClosed", err)
		}
	})
	return cl
}

// rawOrigin is an HTTP/1.1 origin whose answers are written by hand, to
// control framing and headers exactly. handle writes the response for req
// and reports whether to close the connection afterwards.
func rawOrigin(t *testing.T, handle func(req *http.Request, w *bufio.Writer) (closeConn bool)) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			wg.Go(func() {
				defer c.Close()
				br, bw := bufio.NewReader(c), bufio.NewWriter(c)
				for {
					req, err := http.ReadRequest(br)
					if err != nil {
						return
					}
					io.Copy(io.Discard, req.Body)
					closeConn := handle(req, bw)
					bw.Flush()
					if closeConn {
						return
					}
				}
			})
		}
	})
	t.Cleanup(func() { l.Close(); wg.Wait() })
	return l.Addr().String()
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
