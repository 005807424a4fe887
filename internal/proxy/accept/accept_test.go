package accept_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/burrow-vpn/burrow/internal/proxy/accept"
)

var discard = slog.New(slog.DiscardHandler)

// TestServeThenClose serves two loopback listeners, holds a connection open
// on each, and checks that Close ends both Serve calls with ErrClosed only
// after every handle call has returned, and that the handles' context was
// cancelled (so they closed their connections).
func TestServeThenClose(t *testing.T) {
	var g accept.Group
	var started, returned atomic.Int32
	handling := make(chan struct{}, 2)
	handle := func(ctx context.Context, c net.Conn) {
		defer returned.Add(1)
		defer c.Close()
		started.Add(1)
		handling <- struct{}{}
		<-ctx.Done()
	}
	serveErrs := make(chan error, 2)
	var clients []net.Conn
	for range 2 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		go func() { serveErrs <- g.Serve(l, discard, handle) }()
		c, err := net.Dial("tcp", l.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		clients = append(clients, c)
	}
	<-handling
	<-handling

	if err := g.Close(); err != nil {
		t.Errorf("Close() = %v, want nil", err)
	}
	if s, r := started.Load(), returned.Load(); r != s || s != 2 {
		t.Errorf("after Close: %d handle calls started, %d returned, want 2 and 2", s, r)
	}
	for range 2 {
		if err := <-serveErrs; !errors.Is(err, accept.ErrClosed) {
			t.Errorf("Serve() = %v, want ErrClosed", err)
		}
	}
	for i, c := range clients {
		c.SetReadDeadline(time.Now().Add(30 * time.Second))
		if _, err := c.Read(make([]byte, 1)); err != io.EOF {
			t.Errorf("client %d read = %v, want EOF (the handle closed it)", i, err)
		}
	}
}

// TestServeAfterClose: a Serve call after Close returns ErrClosed at once
// and closes its listener.
func TestServeAfterClose(t *testing.T) {
	var g accept.Group
	g.Close()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	err = g.Serve(l, discard, func(context.Context, net.Conn) { t.Error("handle called") })
	if !errors.Is(err, accept.ErrClosed) {
		t.Errorf("Serve() after Close = %v, want ErrClosed", err)
	}
	if _, err := l.Accept(); !errors.Is(err, net.ErrClosed) {
		t.Errorf("Accept() on the listener = %v, want net.ErrClosed", err)
	}
}

// TestListenerClosedElsewhere: a listener closed by someone else ends Serve
// with the accept error, not ErrClosed.
func TestListenerClosedElsewhere(t *testing.T) {
	var g accept.Group
	defer g.Close()
	l := newFakeListener()
	l.Close()
	err := g.Serve(l, discard, func(context.Context, net.Conn) {})
	if errors.Is(err, accept.ErrClosed) || !errors.Is(err, net.ErrClosed) {
		t.Errorf("Serve() = %v, want an accept error wrapping net.ErrClosed", err)
	}
}

// TestTemporaryErrorBackoff: temporary accept errors are retried after 5 ms,
// then 10, then 20 (synctest's clock), and the connection that follows is
// served.
func TestTemporaryErrorBackoff(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var g accept.Group
		l := newFakeListener()
		l.temporary.Store(3)
		start := time.Now()
		served := make(chan time.Duration, 1)
		done := make(chan error, 1)
		go func() {
			done <- g.Serve(l, discard, func(_ context.Context, c net.Conn) {
				served <- time.Since(start)
				c.Close()
			})
		}()
		client, server := net.Pipe()
		defer client.Close()
		l.conns <- server
		if got, want := <-served, 35*time.Millisecond; got != want {
			t.Errorf("connection served after %v, want %v (backoff 5+10+20 ms)", got, want)
		}
		g.Close()
		if err := <-done; !errors.Is(err, accept.ErrClosed) {
			t.Errorf("Serve() = %v, want ErrClosed", err)
		}
	})
}

// fakeListener hands out the conns sent on conns, after failing as many
// Accept calls with a temporary error as temporary says.
type fakeListener struct {
	conns     chan net.Conn
	temporary atomic.Int32
	closeOnce sync.Once
	closed    chan struct{}
}

func newFakeListener() *fakeListener {
	return &fakeListener{conns: make(chan net.Conn), closed: make(chan struct{})}
}

type temporaryError struct{}

func (temporaryError) Error() string   { return "too many open files" }
func (temporaryError) Temporary() bool { return true }
func (temporaryError) Timeout() bool   { return false }

func (l *fakeListener) Accept() (net.Conn, error) {
	if l.temporary.Add(-1) >= 0 {
		return nil, temporaryError{}
	}
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.closed:
		return nil, net.ErrClosed
	}
}

func (l *fakeListener) Close() error {
	l.closeOnce.Do(func() { close(l.closed) })
	return nil
}

func (l *fakeListener) Addr() net.Addr { return &net.TCPAddr{} }
