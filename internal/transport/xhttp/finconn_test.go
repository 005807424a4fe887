package xhttp

import (
	"context"
	"errors"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// conntrack relays TCP connections to a server and counts them the way a
// middlebox tracking connections does: a connection is live from its first
// packet until FINs (or a reset) have passed both ways. The count drops
// before the second FIN is forwarded, so no endpoint can see the end of a
// connection the box still counts. finDelay holds every FIN on the path for
// a while, as a slow or busy path does.
type conntrack struct {
	ln       net.Listener
	server   string
	finDelay time.Duration

	mu         sync.Mutex
	live, peak int
	wg         sync.WaitGroup
}

func startConntrack(t *testing.T, server string, finDelay time.Duration) *conntrack {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ct := &conntrack{ln: ln, server: server, finDelay: finDelay}
	ct.wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			ct.wg.Go(func() { ct.relay(c.(*net.TCPConn)) })
		}
	})
	t.Cleanup(func() {
		ln.Close()
		bounded(t, "the conntrack relays", ct.wg.Wait)
	})
	return ct
}

func (ct *conntrack) relay(client *net.TCPConn) {
	defer client.Close()
	up, err := net.Dial("tcp", ct.server)
	if err != nil {
		return
	}
	server := up.(*net.TCPConn)
	defer server.Close()
	ct.mu.Lock()
	ct.live++
	ct.peak = max(ct.peak, ct.live)
	ct.mu.Unlock()
	var ended atomic.Int32
	var once sync.Once
	forget := func() {
		once.Do(func() {
			ct.mu.Lock()
			ct.live--
			ct.mu.Unlock()
		})
	}
	defer forget()
	pump := func(dst, src *net.TCPConn) {
		_, err := io.Copy(dst, src)
		if err != nil && !errors.Is(err, io.EOF) {
			forget()
			client.SetLinger(0)
			server.SetLinger(0)
			client.Close()
			server.Close()
			return
		}
		time.Sleep(ct.finDelay) // the FIN's time on a slow path
		if ended.Add(1) == 2 {
			forget()
		}
		dst.CloseWrite()
	}
	var wg sync.WaitGroup
	wg.Go(func() { pump(server, client) })
	wg.Go(func() { pump(client, server) })
	wg.Wait()
}

func (ct *conntrack) peakLive() int {
	ct.mu.Lock()
	defer ct.mu.Unlock()
	return ct.peak
}

// tcpCounter is a dial result that counts what it receives and can still
// be half-closed, as the client's REALITY connection can.
type tcpCounter struct {
	*net.TCPConn
	n atomic.Int64
}

func (c *tcpCounter) Read(p []byte) (int, error) {
	n, err := c.TCPConn.Read(p)
	c.n.Add(int64(n))
	return n, err
}

// TestRotationWithinConnectionCap: a rotating dialer behind a box that
// counts connections until their FINs have passed both ways never holds
// more than MaxConns there, however slowly the FINs travel. A slot freed
// after a guessed delay instead of on the server's FIN let a new connection
// start while the box still counted the old one (the lab's conn-count rule
// saw 5 connections with a cap of 4 on a busy machine).
func TestRotationWithinConnectionCap(t *testing.T) {
	s := startServer(t)
	ct := startConntrack(t, s.ln.Addr().String(), 50*time.Millisecond)
	d := newDialer(t, DialerConfig{
		Dial: func(ctx context.Context) (net.Conn, func() int64, error) {
			var nd net.Dialer
			c, err := nd.DialContext(ctx, "tcp", ct.ln.Addr().String())
			if err != nil {
				return nil, nil, err
			}
			tc := &tcpCounter{TCPConn: c.(*net.TCPConn)}
			return tc, tc.n.Load, nil
		},
		Host: "example.com", Budget: 12 << 10, MaxConns: 2, Pace: noPace,
	})
	var wg sync.WaitGroup
	for i := range 24 {
		wg.Go(func() { download(t, d, 3000+i*1499) })
	}
	wg.Wait()
	if dialed := d.Stats().Dialed; dialed < 6 {
		t.Fatalf("%d connections dialed, want rotation (at least 6)", dialed)
	}
	if peak := ct.peakLive(); peak > 2 {
		t.Errorf("the path saw %d connections at once, want at most MaxConns = 2", peak)
	}
}
