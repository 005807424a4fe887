package vless

import (
	"crypto/tls"
	"io"
	"net"
	"testing"
)

// BenchmarkRelay moves inner-TLS data client → VLESS server relay → target over loopback:
// with Vision (direct copy after the handshake, spliced into the target socket) and without
// a flow (TLS in TLS). Compare the two with benchstat; the figures are not asserted.
func BenchmarkRelay(b *testing.B) {
	for _, flow := range []string{FlowVision, ""} {
		name := flow
		if name == "" {
			name = "no-flow"
		}
		b.Run(name, func(b *testing.B) { benchRelay(b, flow) })
	}
}

func benchRelay(b *testing.B, flow string) {
	const chunk = 64 << 10
	total := int64(b.N) * chunk

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	targetDone := make(chan int64, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			targetDone <- 0
			return
		}
		defer c.Close()
		s := tls.Server(c, serverTLSConfig(b))
		n, _ := io.CopyN(io.Discard, s, total)
		targetDone <- n
		io.Copy(io.Discard, s)
	}()

	co, so := outerPair(b, "crypto/tls", serverTLSConfig(b))
	cc := ClientConn(co, &Request{UUID: testUUID, Flow: flow, Command: CommandTCP, Dest: Addr{Host: "example.com", Port: 443}})
	go func() {
		req, err := ReadRequest(so)
		if err != nil {
			return
		}
		sc := ServerConn(so, req)
		tc, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			return
		}
		go io.Copy(sc, tc)
		io.Copy(tc, sc)
		tc.Close()
		sc.Close()
	}()
	inner := tls.Client(cc, clientTLSConfig())
	if err := inner.Handshake(); err != nil {
		b.Fatal(err)
	}
	buf := make([]byte, chunk)
	b.SetBytes(chunk)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := inner.Write(buf); err != nil {
			b.Fatal(err)
		}
	}
	if n := <-targetDone; n != total {
		b.Fatalf("target received %d bytes, want %d", n, total)
	}
	b.StopTimer()
	inner.Close()
}
