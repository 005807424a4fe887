package xhttp

import (
	"context"
	"io"
	"net"
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
		pc, err := d.dial(ctx)
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
