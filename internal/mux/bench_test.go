package mux

import (
	"bytes"
	"context"
	"io"
	"net"
	"net/netip"
	"sync"
	"testing"
)

// BenchmarkFrame encodes mux.cool data frames (a TCP stream's and an XUDP
// datagram's with its source address) and decodes them again.
func BenchmarkFrame(b *testing.B) {
	cases := []struct {
		name string
		src  netip.AddrPort
		size int
	}{
		{"tcp 8KiB", netip.AddrPort{}, 8 << 10},
		{"udp 1200B", netip.MustParseAddrPort("192.0.2.1:53"), 1200},
	}
	for _, tc := range cases {
		b.Run(tc.name, func(b *testing.B) {
			data := make([]byte, tc.size)
			var buf []byte
			var r bytes.Reader
			fr := &frameReader{r: &r}
			b.SetBytes(int64(tc.size))
			b.ReportAllocs()
			for b.Loop() {
				buf = appendFrame(buf[:0], 7, statusKeep, optData, tc.src, data)
				r.Reset(buf)
				f, err := fr.read()
				if err != nil || len(f.data) != tc.size {
					b.Fatalf("read = %v, %v", f, err)
				}
			}
		})
	}
}

// loopbackMux starts ServerMux behind a loopback TCP listener and returns a Client over a
// real TCP connection to it; everything is closed when b ends.
func loopbackMux(b *testing.B) *Client {
	b.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		sc, err := l.Accept()
		if err != nil {
			return
		}
		defer sc.Close()
		ServerMux(context.Background(), sc, dialLoopback)
	}()
	cc, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		b.Fatal(err)
	}
	c := NewClient(cc)
	b.Cleanup(func() {
		c.Close()
		l.Close()
		<-done
	})
	return c
}

// benchTarget runs a loopback TCP server whose conns run serve; it returns its address.
func benchTarget(b *testing.B, serve func(net.Conn)) string {
	b.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			wg.Go(func() {
				defer c.Close()
				serve(c)
			})
		}
	})
	b.Cleanup(func() { l.Close(); wg.Wait() })
	return l.Addr().String()
}

// BenchmarkDownload streams from a loopback target through ServerMux and a Client over a
// loopback TCP connection: the server's download path and the client's read path.
func BenchmarkDownload(b *testing.B) {
	const step = 1 << 20
	src := benchTarget(b, func(c net.Conn) {
		buf := make([]byte, 64<<10)
		for {
			if _, err := c.Write(buf); err != nil {
				return
			}
		}
	})
	c := loopbackMux(b)
	st, err := c.Dial(context.Background(), "tcp", src)
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	buf := make([]byte, 32<<10)
	b.SetBytes(step)
	b.ReportAllocs()
	for b.Loop() {
		for n := 0; n < step; {
			m, err := st.Read(buf[:min(len(buf), step-n)])
			if err != nil {
				b.Fatal(err)
			}
			n += m
		}
	}
}

// BenchmarkUpload writes through a Client stream to a loopback target that discards: the
// client's write path and the server's delivery to the target.
func BenchmarkUpload(b *testing.B) {
	const step = 1 << 20
	got := make(chan int64, 1)
	sink := benchTarget(b, func(c net.Conn) {
		n, _ := io.Copy(io.Discard, c)
		got <- n
	})
	c := loopbackMux(b)
	st, err := c.Dial(context.Background(), "tcp", sink)
	if err != nil {
		b.Fatal(err)
	}
	buf := make([]byte, 256<<10)
	b.SetBytes(step)
	b.ReportAllocs()
	var sent int64
	for b.Loop() {
		for n := 0; n < step; n += len(buf) {
			if _, err := st.Write(buf); err != nil {
				b.Fatal(err)
			}
		}
		sent += step
	}
	st.Close()
	if n := <-got; n != sent {
		b.Fatalf("target got %d bytes, want %d", n, sent)
	}
}
