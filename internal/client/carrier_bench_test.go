package client

import (
	"context"
	"encoding/binary"
	"io"
	"net"
	"sync"
	"testing"
)

// startSink serves loopback connections that read an 8-byte n and send n bytes.
func startSink(b testing.TB) string {
	block := make([]byte, 256<<10)
	return serveLoopback(b, func(c net.Conn) {
		var nb [8]byte
		if _, err := io.ReadFull(c, nb[:]); err != nil {
			return
		}
		for n := int64(binary.BigEndian.Uint64(nb[:])); n > 0; {
			k, err := c.Write(block[:min(n, int64(len(block)))])
			n -= int64(k)
			if err != nil {
				return
			}
		}
	})
}

// benchTunnel returns a tunnel over bed's server, carrying plain-text
// streams as mux sessions if mux, else each on a Vision connection, with opts.
func benchTunnel(b *testing.B, bed *testBed, mux bool, opts TunnelOptions) *Tunnel {
	l := bed.link
	l.TCPMux = mux
	tun, err := NewTunnel(&l, opts)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { tun.Close() })
	return tun
}

// BenchmarkCarrier downloads through the tunnel as SOCKS5 would (io.Copy to
// a TCP conn) over mux sessions and over Vision connections of their own,
// with one stream and with 8 at once.
func BenchmarkCarrier(b *testing.B) {
	bed := startBed(b)
	sink := startSink(b)
	for _, tc := range []struct {
		name    string
		mux     bool
		streams int
	}{{"mux", true, 1}, {"vision", false, 1}, {"mux-x8", true, 8}, {"vision-x8", false, 8}} {
		b.Run(tc.name, func(b *testing.B) {
			tun := benchTunnel(b, bed, tc.mux, TunnelOptions{})
			const n = 64 << 20
			b.SetBytes(n)
			for b.Loop() {
				var wg sync.WaitGroup
				for range tc.streams {
					wg.Go(func() { download(b, tun, sink, n/int64(tc.streams)) })
				}
				wg.Wait()
			}
		})
	}
}

// download fetches n bytes from sink through tun, the application end being a
// loopback TCP pair as the SOCKS5 frontend has.
func download(b *testing.B, tun *Tunnel, sink string, n int64) {
	c, err := tun.DialContext(context.Background(), "tcp", sink)
	if err != nil {
		b.Error(err)
		return
	}
	defer c.Close()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Error(err)
		return
	}
	app, _ := net.Dial("tcp", ln.Addr().String())
	local, _ := ln.Accept()
	ln.Close()
	defer app.Close()
	go func() { io.Copy(c, local) }()
	go func() { io.Copy(local, c); local.Close() }()
	var nb [8]byte
	binary.BigEndian.PutUint64(nb[:], uint64(n))
	app.Write(nb[:])
	got, err := io.CopyBuffer(io.Discard, app, make([]byte, 256<<10))
	if err != nil || got != n {
		b.Errorf("got %d bytes, %v; want %d", got, err, n)
	}
}

// BenchmarkFirstByte opens a stream, sends a request and reads the first
// byte of the answer, one stream after another (the benchmark's TTFB test
// without SOCKS).
func BenchmarkFirstByte(b *testing.B) {
	bed := startBed(b)
	sink := startSink(b)
	for _, tc := range []struct {
		name string
		mux  bool
	}{{"mux", true}, {"vision-spare", false}} {
		b.Run(tc.name, func(b *testing.B) {
			tun := benchTunnel(b, bed, tc.mux, TunnelOptions{Spare: true})
			var nb [8]byte
			binary.BigEndian.PutUint64(nb[:], 1)
			var one [1]byte
			for b.Loop() {
				c, err := tun.DialContext(context.Background(), "tcp", sink)
				if err != nil {
					b.Fatal(err)
				}
				if _, err := c.Write(nb[:]); err != nil {
					b.Fatal(err)
				}
				if _, err := io.ReadFull(c, one[:]); err != nil {
					b.Fatal(err)
				}
				c.Close()
			}
		})
	}
}

// BenchmarkEcho times a 64-byte round trip on an established stream.
func BenchmarkEcho(b *testing.B) {
	bed := startBed(b)
	echo := startEcho(b, "")
	for _, tc := range []struct {
		name string
		mux  bool
	}{{"mux", true}, {"vision", false}} {
		b.Run(tc.name, func(b *testing.B) {
			tun := benchTunnel(b, bed, tc.mux, TunnelOptions{})
			c, err := tun.DialContext(context.Background(), "tcp", echo)
			if err != nil {
				b.Fatal(err)
			}
			defer c.Close()
			msg, back := make([]byte, 64), make([]byte, 64)
			for i := range 100 + b.N {
				if i == 100 {
					b.ResetTimer()
				}
				if _, err := c.Write(msg); err != nil {
					b.Fatal(err)
				}
				if _, err := io.ReadFull(c, back); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
