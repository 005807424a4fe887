package xhttp

import (
	"context"
	"io"
	"net"
	"sync/atomic"
	"testing"
	"time"
)

// TestSpreadDoesNotWait: a session past streamsPerConn on the only
// connection is carried by it at once while the next connection is dialed
// beside it; the caller never waits for that handshake. (It used to wait:
// under load, a relay's stream then missed a prober's patience.) Once the
// new connection is up, the next session goes there.
func TestSpreadDoesNotWait(t *testing.T) {
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hub := NewHub(ctx, HubConfig{Handle: testHandle})
	served := make(chan struct{})
	go func() { defer close(served); serveListener(ctx, hub, ln) }()
	defer func() { stop(); <-served; hub.Close() }()

	release := make(chan struct{})
	dials := make(chan int, 8)
	var n atomic.Int32
	dial := func(ctx context.Context) (net.Conn, func() int64, error) {
		n := n.Add(1)
		dials <- int(n)
		if n > 1 {
			select { // the second connection waits until the test lets it
			case <-release:
			case <-ctx.Done():
				return nil, nil, ctx.Err()
			}
		}
		var nd net.Dialer
		c, err := nd.DialContext(ctx, "tcp", ln.Addr().String())
		return c, nil, err
	}
	d, err := NewDialer(DialerConfig{Dial: dial, Host: "example.com", Path: "/x", MaxConns: 4})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()

	echo := func(i int) net.Conn {
		t.Helper()
		dctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		c, err := d.Dial(dctx)
		if err != nil {
			t.Fatalf("session %d: %v", i, err)
		}
		c.SetDeadline(time.Now().Add(30 * time.Second))
		if _, err := c.Write([]byte{'E', byte(i)}); err != nil {
			t.Fatalf("session %d write: %v", i, err)
		}
		var b [1]byte
		if _, err := io.ReadFull(c, b[:]); err != nil || b[0] != byte(i) {
			t.Fatalf("session %d echo: %v %v", i, b, err)
		}
		return c
	}
	var open []net.Conn
	defer func() {
		for _, c := range open {
			c.Close()
		}
	}()
	for i := range streamsPerConn + 1 {
		open = append(open, echo(i)) // the last one past the limit, while the next dial is held
	}
	if got := <-dials; got != 1 {
		t.Fatalf("first dial numbered %d", got)
	}
	select {
	case got := <-dials:
		if got != 2 {
			t.Fatalf("second dial numbered %d", got)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("no second connection was dialed past streamsPerConn sessions")
	}
	d.mu.Lock()
	conns, onFirst := len(d.conns), d.conns[0].streams
	d.mu.Unlock()
	if conns != 1 || onFirst < streamsPerConn+1 {
		t.Fatalf("while the second dial is held: %d connections, %d requests on the first; want 1 and at least %d", conns, onFirst, streamsPerConn+1)
	}
	close(release)
	timeout := time.After(30 * time.Second)
	for {
		d.mu.Lock()
		conns, ch := len(d.conns), d.changed
		d.mu.Unlock()
		if conns == 2 {
			break
		}
		select {
		case <-ch:
		case <-timeout:
			t.Fatalf("%d connections after the second dial was let go, want 2", conns)
		}
	}
	d.mu.Lock()
	first := d.conns[0]
	d.mu.Unlock()
	open = append(open, echo(streamsPerConn+1))
	d.mu.Lock()
	onNew := 0
	for _, pc := range d.conns {
		if pc != first {
			onNew += pc.streams
		}
	}
	d.mu.Unlock()
	if onNew < 1 {
		t.Errorf("the session after the new connection came up went to the busy one, want the new one")
	}
}
