package socks5

import (
	"io"
	"net"
	"testing"
)

// BenchmarkConnectThroughput measures one-way bytes through CONNECT between
// loopback TCP sockets (the relay's io.Copy fast path).
func BenchmarkConnectThroughput(b *testing.B) {
	sink, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer sink.Close()
	done := make(chan int64, 1)
	go func() {
		c, err := sink.Accept()
		if err != nil {
			done <- 0
			return
		}
		n, _ := io.Copy(io.Discard, c)
		c.Close()
		done <- n
	}()
	s := &Server{Dialer: &testDialer{}}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- s.Serve(l) }()
	defer func() { s.Close(); <-served }()

	c, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	ap := sink.Addr().(*net.TCPAddr).AddrPort()
	c.Write(addr{ip: ap.Addr(), port: ap.Port()}.appendTo([]byte{5, 1, 0, 5, 1, 0}))
	var reply [2 + 10]byte
	if _, err := io.ReadFull(c, reply[:]); err != nil || reply[3] != 0 {
		b.Fatalf("handshake: %x, %v", reply, err)
	}
	buf := make([]byte, 256<<10)
	b.SetBytes(int64(len(buf)))
	b.ResetTimer()
	for range b.N {
		if _, err := c.Write(buf); err != nil {
			b.Fatal(err)
		}
	}
	c.(*net.TCPConn).CloseWrite()
	if n := <-done; n != int64(b.N*len(buf)) {
		b.Errorf("sink received %d bytes, want %d", n, b.N*len(buf))
	}
}
