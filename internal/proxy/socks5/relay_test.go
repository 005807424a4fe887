package socks5

import (
	"context"
	"io"
	"net"
	"sync/atomic"
	"testing"
	"time"
)

// readFromConn is a conn with a ReadFrom fast path that counts its use.
type readFromConn struct {
	*net.TCPConn
	used *atomic.Int32
}

func (c readFromConn) ReadFrom(r io.Reader) (int64, error) {
	c.used.Add(1)
	return c.TCPConn.ReadFrom(r)
}

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
	return a.(*net.TCPConn), b.(*net.TCPConn)
}

// TestRelayFastPath checks that relay hands the conns to io.Copy unwrapped,
// so their ReadFrom (splice for TCP) is used, and that it half-closes.
func TestRelayFastPath(t *testing.T) {
	client, a := tcpPair(t)
	b, remote := tcpPair(t)
	defer client.Close()
	defer remote.Close()
	var used atomic.Int32
	done := make(chan error, 1)
	go func() {
		done <- relay(context.Background(), readFromConn{a, &used}, readFromConn{b, &used})
	}()
	client.SetDeadline(time.Now().Add(5 * time.Second))
	remote.SetDeadline(time.Now().Add(5 * time.Second))
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
		t.Errorf("relay() = %v, want nil", err)
	}
	if n := used.Load(); n != 2 {
		t.Errorf("ReadFrom fast path used %d times, want 2 (once per direction)", n)
	}
}
