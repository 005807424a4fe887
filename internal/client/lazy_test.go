package client

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/burrow-vpn/burrow/internal/links"
	"github.com/burrow-vpn/burrow/internal/mux"
)

// muxBed is a test bed whose link allows TCP inside mux, reached through a
// relay that counts the TCP connections made to the server.
func muxBed(t *testing.T) (*testBed, *freezer, *links.VLESS) {
	t.Helper()
	bed := startBed(t)
	relay := startFreezer(t, bed.server, 1<<50) // counts connections, never freezes
	l := bed.link
	l.Port = uint16(relay.ln.Addr().(*net.TCPAddr).Port)
	l.TCPMux = true
	return bed, relay, &l
}

func (f *freezer) count() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.conns
}

// startEcho serves loopback connections that echo what they read; with
// greet, each first sends greet (a server-first protocol).
func startEcho(t testing.TB, greet string) string {
	return serveLoopback(t, func(c net.Conn) {
		if greet != "" {
			c.Write([]byte(greet))
		}
		io.Copy(c, c)
	})
}

func TestMuxCarriesPlainStreams(t *testing.T) {
	bed, relay, l := muxBed(t)
	tun, err := NewTunnel(l, TunnelOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer tun.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	// Sequential and parallel plain-text streams share one connection.
	for i := range 20 {
		if err := fetch(ctx, tun, bed.target, 1000+i*5000); err != nil {
			t.Fatalf("fetch %d: %v", i, err)
		}
	}
	var wg sync.WaitGroup
	errs := make([]error, 10)
	for i := range errs {
		wg.Go(func() { errs[i] = fetch(ctx, tun, bed.target, 3<<20) })
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatalf("parallel fetches: %v", err)
	}
	if n := relay.count(); n != 1 {
		t.Errorf("30 plain-text streams used %d connections to the server, want 1", n)
	}
	if n := tun.muxConns(); n != 1 {
		t.Errorf("mux connections open = %d, want 1", n)
	}

	// A stream that starts with a TLS record gets a Vision connection of its own.
	echo := startEcho(t, "")
	c, err := tun.DialContext(ctx, "tcp", echo)
	if err != nil {
		t.Fatal(err)
	}
	hello := append([]byte{0x16, 0x03, 0x01, 0x00, 0x05}, "hello"...)
	if _, err := c.Write(hello); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, len(hello))
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.ReadFull(c, got); err != nil || !bytes.Equal(got, hello) {
		t.Fatalf("TLS-looking stream echoed %q, %v; want %q", got, err, hello)
	}
	c.Close()
	if n := relay.count(); n != 2 {
		t.Errorf("after one TLS-looking stream: %d connections to the server, want 2", n)
	}

	// Closed before writing: nothing is opened. A carrier is only ever opened
	// by the conn's one start (on its first Write, or a Read after firstWait);
	// once the Write and a Read after Close have failed with net.ErrClosed that
	// start has been decided and no later call can open anything, so the
	// count below is final, not a guess after a pause.
	c, err = tun.DialContext(ctx, "tcp", echo)
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	if _, err := c.Write([]byte("x")); !errors.Is(err, net.ErrClosed) {
		t.Errorf("Write after Close = %v, want net.ErrClosed", err)
	}
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Read(make([]byte, 1)); !errors.Is(err, net.ErrClosed) {
		t.Errorf("Read after Close = %v, want net.ErrClosed", err)
	}
	if n := relay.count(); n != 2 {
		t.Errorf("a stream closed before any byte opened a connection: %d, want 2", n)
	}
}

func TestMuxServerFirst(t *testing.T) {
	old := firstWait
	firstWait = 50 * time.Millisecond
	defer func() { firstWait = old }()
	_, relay, l := muxBed(t)
	tun, err := NewTunnel(l, TunnelOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer tun.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	greeter := startEcho(t, "220 ready\r\n")
	c, err := tun.DialContext(ctx, "tcp", greeter)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	got := make([]byte, len("220 ready\r\n"))
	if _, err := io.ReadFull(c, got); err != nil || string(got) != "220 ready\r\n" {
		t.Fatalf("server-first greeting = %q, %v", got, err)
	}
	if _, err := c.Write([]byte("QUIT\r\n")); err != nil {
		t.Fatal(err)
	}
	back := make([]byte, 6)
	if _, err := io.ReadFull(c, back); err != nil || string(back) != "QUIT\r\n" {
		t.Fatalf("echo after greeting = %q, %v", back, err)
	}
	if n, m := relay.count(), tun.muxConns(); n != 1 || m != 0 {
		t.Errorf("server-first stream: %d connections, %d of them mux; want 1 Vision connection", n, m)
	}
}

func TestMuxFailedDestination(t *testing.T) {
	_, _, l := muxBed(t)
	tun, err := NewTunnel(l, TunnelOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer tun.Close()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := ln.Addr().String()
	ln.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := tun.DialContext(ctx, "tcp", closed)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.Write([]byte("GET / HTTP/1.1\r\n\r\n"))
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Read(make([]byte, 10)); !errors.Is(err, mux.ErrSessionFailed) {
		t.Errorf("Read from a refused destination = %v, want %v", err, mux.ErrSessionFailed)
	}
}

func TestNoMuxWithoutLinkFlag(t *testing.T) {
	bed := startBed(t)
	for _, tc := range []struct {
		name  string
		mod   func(*links.VLESS, *TunnelOptions)
		wantL bool
	}{
		{"tcpmux=1", func(l *links.VLESS, _ *TunnelOptions) { l.TCPMux = true }, true},
		{"no tcpmux", func(*links.VLESS, *TunnelOptions) {}, false},
		{"--no-mux", func(l *links.VLESS, o *TunnelOptions) { l.TCPMux = true; o.NoMux = true }, false},
	} {
		l := bed.link
		var opts TunnelOptions
		tc.mod(&l, &opts)
		tun, err := NewTunnel(&l, opts)
		if err != nil {
			t.Fatal(err)
		}
		c, err := tun.DialContext(context.Background(), "tcp", bed.target)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		_, lazy := c.(*lazyConn)
		c.Close()
		tun.Close()
		if lazy != tc.wantL {
			t.Errorf("%s: carrier chosen by first bytes = %v, want %v", tc.name, lazy, tc.wantL)
		}
	}
}

// TestMuxThroughRelayCopy moves data the way the SOCKS5 frontend does
// (io.Copy both ways between TCP conns and the tunnel conn, which uses
// ReadFrom and WriteTo), over mux and over Vision.
func TestMuxThroughRelayCopy(t *testing.T) {
	_, relay, l := muxBed(t)
	tun, err := NewTunnel(l, TunnelOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer tun.Close()
	echo := startEcho(t, "")
	for _, first := range []byte{'G', 0x16} {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		c, err := tun.DialContext(ctx, "tcp", echo)
		if err != nil {
			t.Fatal(err)
		}
		app, local := net.Pipe()
		go func() { io.Copy(c, local); c.(interface{ CloseWrite() error }).CloseWrite() }()
		go func() { io.Copy(local, c); local.Close() }()
		msg := bytes.Repeat([]byte{first, 1, 2, 3, 4, 5, 6, 7}, 64<<10) // 512 KiB
		go app.Write(msg)
		got := make([]byte, len(msg))
		app.SetReadDeadline(time.Now().Add(20 * time.Second))
		if _, err := io.ReadFull(app, got); err != nil || !bytes.Equal(got, msg) {
			t.Errorf("first byte %#x: echo of 512 KiB through io.Copy: %v (equal %v)", first, err, bytes.Equal(got, msg))
		}
		app.Close()
		c.Close()
		cancel()
	}
	if n := relay.count(); n != 2 {
		t.Errorf("connections = %d, want 2 (one mux, one Vision)", n)
	}
}

// TestMuxServerDown: a burst of plain-text streams to a server that fails
// every handshake fails together, on one attempt or a few, not one each.
func TestMuxServerDown(t *testing.T) {
	bed := startBed(t)
	const streams = 20
	var mu sync.Mutex
	attempts := 0
	// An attempt is held until every stream has asked for a carrier, then
	// closed (the handshake fails): however slowly a busy machine starts the
	// streams, they all find the first attempt under way.
	var asked atomic.Int32
	allAsked := make(chan struct{})
	ask := func() {
		if asked.Add(1) == streams {
			close(allAsked)
		}
	}
	down := serveLoopback(t, func(c net.Conn) {
		mu.Lock()
		attempts++
		mu.Unlock()
		select {
		case <-allAsked:
		case <-time.After(30 * time.Second): // a stream that never asked fails the test below
		}
	})
	l := bed.link
	l.TCPMux = true
	_, port, _ := net.SplitHostPort(down)
	p, _ := strconv.Atoi(port)
	l.Port = uint16(p)
	tun, err := NewTunnel(&l, TunnelOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer tun.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	errs := make([]error, streams)
	var wg sync.WaitGroup
	for i := range streams {
		wg.Go(func() {
			c, err := tun.DialContext(ctx, "tcp", bed.target)
			if err != nil {
				ask()
				errs[i] = err
				return
			}
			defer c.Close()
			ask() // the Write asks for the carrier
			_, errs[i] = c.Write([]byte("GET / HTTP/1.1\r\n\r\n"))
		})
	}
	wg.Wait()
	for i, err := range errs {
		if err == nil {
			t.Errorf("stream %d: no error with the server down", i)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if attempts > 5 {
		t.Errorf("%d streams made %d connection attempts to a failing server, want a few at most", streams, attempts)
	}
	t.Logf("%d streams, %d attempts", streams, attempts)
}
