package camo

import (
	"context"
	"crypto/tls"
	"io"
	"net"
	"testing"
	"time"
)

// BenchmarkRecords moves data through an established REALITY conn over
// loopback: the client (utls) encrypts 64 KiB writes into TLS records, the
// server (reality) decrypts them. It measures the record layer both
// implementations give Burrow, per byte and per write.
func BenchmarkRecords(b *testing.B) {
	cert, err := srvCert()
	if err != nil {
		b.Fatal(err)
	}
	coverLn, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{cert}})
	if err != nil {
		b.Fatal(err)
	}
	defer coverLn.Close()
	go func() { // the cover: completes handshakes, then discards
		for {
			c, err := coverLn.Accept()
			if err != nil {
				return
			}
			go func() { io.Copy(io.Discard, c); c.Close() }()
		}
	}()
	priv, pub, err := GenerateKey()
	if err != nil {
		b.Fatal(err)
	}
	srv, err := NewServer(ServerConfig{PrivateKey: priv, ShortIDs: [][]byte{{1, 2}}, ServerNames: []string{srvCoverName},
		Cover: coverLn.Addr().String(), fallbackIdle: 20 * time.Second})
	if err != nil {
		b.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	got := make(chan int64, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			got <- 0
			return
		}
		tc, err := srv.Handshake(context.Background(), c.(*net.TCPConn))
		if err != nil {
			got <- 0
			return
		}
		n, _ := io.Copy(io.Discard, tc)
		tc.Close()
		got <- n
	}()
	raw, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	tc, err := Client(ctx, raw, ClientConfig{ServerName: srvCoverName, PublicKey: pub, ShortID: []byte{1, 2}})
	if err != nil {
		b.Fatal(err)
	}
	buf := make([]byte, 64<<10)
	b.SetBytes(int64(len(buf)))
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if _, err := tc.Write(buf); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	tc.Close()
	if n := <-got; n == 0 {
		b.Fatal("server received nothing")
	}
}
