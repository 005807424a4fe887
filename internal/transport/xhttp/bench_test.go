package xhttp

import (
	"context"
	"encoding/binary"
	"io"
	"net"
	"sync/atomic"
	"testing"
	"time"
)

// benchBed starts a hub on loopback serving testHandle and returns a
// dialer to it; both stop when b ends.
func benchBed(b *testing.B) *Dialer {
	b.Helper()
	ctx, stop := context.WithCancel(context.Background())
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	hub := NewHub(ctx, HubConfig{Handle: testHandle})
	serveDone := make(chan struct{})
	go func() {
		defer close(serveDone)
		serveListener(ctx, hub, ln)
	}()
	d, err := NewDialer(DialerConfig{Dial: (&connLog{}).dial(ln.Addr().String()), Host: "example.com", Path: "/x"})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		d.Close()
		stop()
		<-serveDone
		hub.Close()
	})
	return d
}

// BenchmarkConnSetup is what opening and closing one pooled connection
// costs, client and server together (both run in this process): the TCP
// connect, HTTP/2 on both ends, the first PING round trip, and the close
// until FINs have passed both ways. Rotation pays it for every connection.
func BenchmarkConnSetup(b *testing.B) {
	d := benchBed(b)
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		var started time.Time
		pc, err := d.dial(ctx, &started)
		if err != nil {
			b.Fatal(err)
		}
		pc.cc.Close()
		<-pc.gone
	}
}

// BenchmarkSessionEcho is one short session on a warm connection: open,
// one byte there and back, close, as a page's small fetches are.
func BenchmarkSessionEcho(b *testing.B) {
	d := benchBed(b)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	var buf [1]byte
	b.ReportAllocs()
	for b.Loop() {
		c, err := d.Dial(ctx)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := c.Write([]byte{'E', 'x'}); err != nil {
			b.Fatal(err)
		}
		if _, err := io.ReadFull(c, buf[:]); err != nil {
			b.Fatal(err)
		}
		c.Close()
	}
}

// txConn counts what the client writes.
type txConn struct {
	net.Conn
	tx *atomic.Int64
}

func (c txConn) Write(p []byte) (int, error) {
	n, err := c.Conn.Write(p)
	c.tx.Add(int64(n))
	return n, err
}

// BenchmarkDownload is one session's 8 MiB download on a warm connection:
// its throughput, and what the client writes meanwhile per MiB received
// (HTTP/2's window updates, each write padded: frameShaper), as up-B/MiB.
func BenchmarkDownload(b *testing.B) {
	ctx, stop := context.WithCancel(context.Background())
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	hub := NewHub(ctx, HubConfig{Handle: testHandle})
	serveDone := make(chan struct{})
	go func() {
		defer close(serveDone)
		serveListener(ctx, hub, ln)
	}()
	var tx atomic.Int64
	dial := func(ctx context.Context) (net.Conn, func() int64, error) {
		var d net.Dialer
		c, err := d.DialContext(ctx, "tcp", ln.Addr().String())
		if err != nil {
			return nil, nil, err
		}
		return txConn{Conn: c, tx: &tx}, nil, nil
	}
	d, err := NewDialer(DialerConfig{Dial: dial, Host: "example.com", Path: "/x", MaxConns: 1})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		d.Close()
		stop()
		<-serveDone
		hub.Close()
	})
	const size = 8 << 20
	cmd := make([]byte, 9)
	cmd[0] = 'S'
	binary.BigEndian.PutUint64(cmd[1:], size)
	buf := make([]byte, 32<<10)
	b.SetBytes(size)
	b.ReportAllocs()
	var up int64
	for b.Loop() {
		c, err := d.Dial(ctx)
		if err != nil {
			b.Fatal(err)
		}
		before := tx.Load()
		if _, err := c.Write(cmd); err != nil {
			b.Fatal(err)
		}
		if _, err := io.ReadAtLeast(c, buf, 1); err != nil {
			b.Fatal(err)
		}
		if _, err := io.CopyBuffer(io.Discard, c, buf); err != nil {
			b.Fatal(err)
		}
		up += tx.Load() - before
		c.Close()
	}
	b.ReportMetric(float64(up)/float64(b.N)/(size>>20), "up-B/MiB")
}
