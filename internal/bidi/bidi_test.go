package bidi_test

import (
	"context"
	"errors"
	"io"
	"net"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/burrow-vpn/burrow/internal/bidi"
)

// tcpPair returns the two ends of a loopback TCP connection.
func tcpPair(t *testing.T) (*net.TCPConn, *net.TCPConn) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	a, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	b, err := l.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close(); b.Close() })
	return a.(*net.TCPConn), b.(*net.TCPConn)
}

// readFromConn is a TCP conn whose ReadFrom (the splice fast path) counts
// its use.
type readFromConn struct {
	*net.TCPConn
	used *atomic.Int32
}

func (c readFromConn) ReadFrom(r io.Reader) (int64, error) {
	c.used.Add(1)
	return c.TCPConn.ReadFrom(r)
}

// TestCopyHalfCloseAndFastPath relays client ⇄ remote over real sockets: a
// FIN from either side reaches the other as EOF while the other direction
// still carries data, both ends go through the destination's ReadFrom (so
// *net.TCPConn pairs still splice), and Copy returns nil.
func TestCopyHalfCloseAndFastPath(t *testing.T) {
	client, a := tcpPair(t)
	b, remote := tcpPair(t)
	var used atomic.Int32
	done := make(chan error, 1)
	go func() {
		done <- bidi.Copy(context.Background(), readFromConn{a, &used}, readFromConn{b, &used})
	}()
	client.SetDeadline(time.Now().Add(30 * time.Second))
	remote.SetDeadline(time.Now().Add(30 * time.Second))

	client.Write([]byte("ping"))
	client.CloseWrite()
	got, err := io.ReadAll(remote) // EOF arrives through the half-close
	if err != nil || string(got) != "ping" {
		t.Fatalf("remote read = %q, %v, want %q, nil", got, err, "ping")
	}
	remote.Write([]byte("pong")) // the other direction still works
	remote.CloseWrite()
	got, err = io.ReadAll(client)
	if err != nil || string(got) != "pong" {
		t.Fatalf("client read = %q, %v, want %q, nil", got, err, "pong")
	}
	if err := <-done; err != nil {
		t.Errorf("Copy() = %v, want nil", err)
	}
	if n := used.Load(); n != 2 {
		t.Errorf("ReadFrom fast path used %d times, want 2 (once per direction)", n)
	}
	if _, err := a.Write([]byte("x")); !errors.Is(err, net.ErrClosed) {
		t.Errorf("write to a after Copy = %v, want net.ErrClosed (Copy closes both)", err)
	}
}

// TestCopyWithErrorEndsBoth fails one direction's copy and checks that both
// conns are closed, which ends the other direction (blocked in a read), and
// that CopyWith returns the failed copy's error, not the other direction's
// "closed" error. Over net.Pipe, synctest checks that no goroutine outlives
// CopyWith; over TCP, a half-close after the error (instead of a close) would
// leave the other direction, and so CopyWith, running.
func TestCopyWithErrorEndsBoth(t *testing.T) {
	for _, failing := range []string{"ab", "ba"} {
		t.Run("pipe/"+failing, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				client, a := net.Pipe()
				b, remote := net.Pipe()
				testErrorEndsBoth(t, failing, client, a, b, remote)
			})
		})
		t.Run("tcp/"+failing, func(t *testing.T) {
			client, a := tcpPair(t)
			b, remote := tcpPair(t)
			client.SetDeadline(time.Now().Add(30 * time.Second))
			remote.SetDeadline(time.Now().Add(30 * time.Second))
			testErrorEndsBoth(t, failing, client, a, b, remote)
		})
	}
}

func testErrorEndsBoth(t *testing.T, failing string, client, a, b, remote net.Conn) {
	defer client.Close()
	defer remote.Close()
	errBoom := errors.New("boom")
	fail := func(dst io.Writer, src io.Reader) (int64, error) {
		var b [1]byte
		if _, err := src.Read(b[:]); err != nil {
			return 0, err
		}
		return 0, errBoom
	}
	ab, ba := bidi.CopyFunc(io.Copy), bidi.CopyFunc(io.Copy)
	writer := client // its byte makes the failing copy fail
	if failing == "ab" {
		ab = fail
	} else {
		ba, writer = fail, remote
	}
	done := make(chan error, 1)
	go func() { done <- bidi.CopyWith(context.Background(), a, b, ab, ba) }()
	writer.Write([]byte("x"))
	if err := <-done; !errors.Is(err, errBoom) {
		t.Errorf("CopyWith() = %v, want %v", err, errBoom)
	}
	for name, end := range map[string]net.Conn{"client": client, "remote": remote} {
		if _, err := end.Read(make([]byte, 1)); err != io.EOF {
			t.Errorf("%s read after CopyWith = %v, want EOF (its peer closed)", name, err)
		}
	}
}

// TestCopyWithoutCloseWrite: a destination that cannot half-close (net.Pipe)
// is closed at its source's EOF, with the other side, and Copy reports no
// error for that clean end.
func TestCopyWithoutCloseWrite(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		client, a := net.Pipe()
		b, remote := net.Pipe()
		defer remote.Close()
		done := make(chan error, 1)
		go func() { done <- bidi.Copy(t.Context(), a, b) }()
		client.Close() // EOF on a
		if err := <-done; err != nil {
			t.Errorf("Copy() = %v, want nil", err)
		}
		if _, err := remote.Read(make([]byte, 1)); err != io.EOF {
			t.Errorf("remote read = %v, want EOF", err)
		}
	})
}

// TestCopyCancel: cancelling ctx closes both conns and Copy returns the
// cancellation's cause.
func TestCopyCancel(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		client, a := net.Pipe()
		b, remote := net.Pipe()
		defer client.Close()
		defer remote.Close()
		errStop := errors.New("stop")
		ctx, cancel := context.WithCancelCause(t.Context())
		done := make(chan error, 1)
		go func() { done <- bidi.Copy(ctx, a, b) }()
		synctest.Wait() // both directions blocked in a read
		cancel(errStop)
		if err := <-done; !errors.Is(err, errStop) {
			t.Errorf("Copy() = %v, want %v", err, errStop)
		}
		if _, err := client.Write([]byte("x")); err != io.ErrClosedPipe {
			t.Errorf("client write after cancel = %v, want io.ErrClosedPipe", err)
		}
	})
}
