package relay

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/burrow-vpn/burrow/internal/bidi"
	"github.com/burrow-vpn/burrow/internal/meter"
	"github.com/burrow-vpn/burrow/internal/transport/xhttp"
)

// readSizes is a client connection that reports the size of the buffer
// each Read is given.
type readSizes struct {
	net.Conn
	sizes chan int
}

func (c readSizes) Read(p []byte) (int, error) {
	c.sizes <- len(p)
	return c.Conn.Read(p)
}

// echoExit serves XHTTP on a loopback listener: every session reads the
// relay's header of hdr bytes, then echoes. It returns the listener's
// address.
func echoExit(t *testing.T, hdr int) string {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hub := xhttp.NewHub(ctx, xhttp.HubConfig{Handle: func(ctx context.Context, c net.Conn) {
		defer c.Close()
		if _, err := io.ReadFull(c, make([]byte, hdr)); err != nil {
			return
		}
		io.Copy(c, c)
	}})
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Go(func() {
				defer c.Close()
				stop := context.AfterFunc(ctx, func() { c.Close() })
				defer stop()
				hub.ServeConn(ctx, c, xhttp.ConnOptions{})
			})
		}
	})
	t.Cleanup(func() {
		cancel()
		ln.Close()
		hub.Close()
		wg.Wait()
	})
	return ln.Addr().String()
}

// TestIdleConnectionSmallBuffer: a relayed client connection that is idle
// is read into a small buffer; a burst takes a large one, which is given
// back once the burst ends. (The relay once copied with io.Copy, which
// holds 32 KiB per direction for the life of every connection: with 2,000
// idle clients that was most of the relay's memory; bench/relay_mem_test.go.)
func TestIdleConnectionSmallBuffer(t *testing.T) {
	hdr := []byte("relay stream header")
	addr := echoExit(t, len(hdr))
	e := testExit()
	e.client = hdr
	var err error
	e.pool, err = xhttp.NewDialer(xhttp.DialerConfig{Host: "exit.test", Path: "/", Dial: func(ctx context.Context) (net.Conn, func() int64, error) {
		var d net.Dialer
		c, err := d.DialContext(ctx, "tcp", addr)
		if err != nil {
			return nil, nil, err
		}
		var rx atomic.Int64
		return meter.NewConn(c, meter.Unlimited{AddFunc: func(n int64) { rx.Add(n) }}, meter.Unlimited{}), rx.Load, nil
	}})
	if err != nil {
		t.Fatal(err)
	}
	defer e.pool.Close()
	r := &Relay{log: slog.New(slog.DiscardHandler)}
	r.exits.exits = []*exit{e}

	client, relaySide := net.Pipe()
	sizes := make(chan int, 64)
	done := make(chan struct{})
	go func() {
		defer close(done)
		r.handle(context.Background(), readSizes{relaySide, sizes})
	}()
	defer func() { client.Close(); <-done }()

	exchange := func(msg []byte) {
		t.Helper()
		errc := make(chan error, 1)
		go func() { _, err := client.Write(msg); errc <- err }()
		got := make([]byte, len(msg))
		if _, err := io.ReadFull(client, got); err != nil || !bytes.Equal(got, msg) {
			t.Fatalf("echo through the relay of %d bytes: %v (equal %v)", len(msg), err, bytes.Equal(got, msg))
		}
		if err := <-errc; err != nil {
			t.Fatal(err)
		}
	}
	// next returns the size of the next Read the relay makes.
	next := func() int { return <-sizes }

	exchange([]byte("x"))
	if n := next(); n > bidi.IdleRead {
		t.Fatalf("the first read of a client connection got a %d-byte buffer, want at most %d", n, bidi.IdleRead)
	}
	if n := next(); n > bidi.IdleRead {
		t.Fatalf("an idle connection waits with a %d-byte buffer, want at most %d", n, bidi.IdleRead)
	}
	burst := bytes.Repeat([]byte("0123456789abcdef"), 4<<10) // 64 KiB
	exchange(burst)
	large := 0
	for n := next(); ; n = next() {
		if n > bidi.IdleRead {
			large++
			continue
		}
		break // the read the connection idles in
	}
	if large == 0 {
		t.Error("a 64 KiB burst was read in small pieces only, want a large buffer while data flows")
	}
	exchange([]byte("y"))
	if n := next(); n > bidi.IdleRead {
		t.Errorf("after the burst the connection waits with a %d-byte buffer, want at most %d", n, bidi.IdleRead)
	}
}
