//go:build unix

package camo

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

var preAuthConns = flag.Int("preauthconns", 2000, "idle pre-auth connections BenchmarkIdlePreAuth holds (capped by RLIMIT_NOFILE: four descriptors each in one process)")

// BenchmarkIdlePreAuth holds -preauthconns connections that have sent
// nothing yet (a flood, or probers waiting) and, while they are held,
// times one authenticated client's handshake and echo per op; afterwards a
// prober must still get the cover's certificate and page. It reports what
// the server holds per idle pre-auth conn: heap and stacks with the
// connections through the server, less the same number straight to the
// cover (the client and cover sides, in this process too).
func BenchmarkIdlePreAuth(b *testing.B) {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		b.Fatal(err)
	}
	lim.Cur = lim.Max
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		b.Fatal(err)
	}
	n := min(*preAuthConns, int(lim.Cur-256)/4)
	cover, coverAccepted := benchCover(b)
	priv, pub, err := GenerateKey()
	if err != nil {
		b.Fatal(err)
	}
	srv, err := NewServer(ServerConfig{PrivateKey: priv, ShortIDs: [][]byte{{7}}, ServerNames: []string{srvCoverName},
		Cover: cover, fallbackIdle: 10 * time.Minute})
	if err != nil {
		b.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	defer func() { cancel(); ln.Close(); wg.Wait() }()
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Go(func() {
				if tc, err := srv.Handshake(ctx, c.(*net.TCPConn)); err == nil {
					io.Copy(tc, tc)
					tc.Close()
				}
			})
		}
	})
	cfg := ClientConfig{ServerName: srvCoverName, PublicKey: pub, ShortID: []byte{7}}
	authed := func() error {
		raw, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			return err
		}
		defer raw.Close()
		hctx, hcancel := context.WithTimeout(ctx, 30*time.Second)
		defer hcancel()
		tc, err := Client(hctx, raw, cfg)
		if err != nil {
			return err
		}
		defer tc.Close()
		return srvEcho(tc, []byte("ping"))
	}
	if err := authed(); err != nil { // warm up: record-size detection, tables
		b.Fatal(err)
	}
	<-coverAccepted

	hold := func(addr string) []net.Conn {
		conns := make([]net.Conn, n)
		for i := range conns {
			if conns[i], err = net.Dial("tcp", addr); err != nil {
				b.Fatalf("idle conn %d: %v", i, err)
			}
		}
		for range n { // each reached the cover
			<-coverAccepted
		}
		return conns
	}
	release := func(conns []net.Conn) {
		for _, c := range conns {
			c.Close()
		}
	}
	base := idleMemStats()
	direct := hold(cover)
	mDirect := idleMemStats()
	release(direct)

	conns := hold(ln.Addr().String())
	defer release(conns)
	b.ResetTimer()
	for b.Loop() {
		if err := authed(); err != nil {
			b.Fatalf("authenticated client with %d idle pre-auth conns held: %v", n, err)
		}
	}
	b.StopTimer()
	if err := benchProbe(ln.Addr().String()); err != nil {
		b.Fatalf("prober with %d idle pre-auth conns held: %v", n, err)
	}
	mServer := idleMemStats()
	per := func(m idleMem) float64 {
		return (float64(m.HeapInuse+m.StackInuse) - float64(base.HeapInuse+base.StackInuse)) / float64(n)
	}
	b.ReportMetric(per(mServer)-per(mDirect), "B/idle-conn")
	b.ReportMetric(float64(mServer.goroutines-mDirect.goroutines)/float64(n), "goroutines/idle-conn")
	b.ReportMetric(float64(n), "idle-conns")
}

// benchCover is a TLS cover site whose idle connections live long; it
// signals each accepted connection.
func benchCover(b *testing.B) (string, <-chan struct{}) {
	cert, err := srvCert()
	if err != nil {
		b.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	accepted := make(chan struct{}, 1<<16)
	hs := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, srvCoverPage) }),
		ConnState: func(_ net.Conn, s http.ConnState) {
			if s == http.StateNew {
				accepted <- struct{}{}
			}
		},
		ReadHeaderTimeout: 10 * time.Minute,
		TLSConfig:         &tls.Config{Certificates: []tls.Certificate{cert}},
		ErrorLog:          log.New(io.Discard, "", 0),
	}
	done := make(chan struct{})
	go func() { defer close(done); hs.ServeTLS(ln, "", "") }()
	b.Cleanup(func() { hs.Close(); <-done })
	return ln.Addr().String(), accepted
}

// benchProbe visits addr as a browser without a key would: it must get
// the cover's certificate and page.
func benchProbe(addr string) error {
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: 30 * time.Second}, "tcp", addr,
		&tls.Config{ServerName: srvCoverName, InsecureSkipVerify: true})
	if err != nil {
		return err
	}
	defer c.Close()
	cert, err := srvCert()
	if err != nil {
		return err
	}
	if !bytes.Equal(c.ConnectionState().PeerCertificates[0].Raw, cert.Certificate[0]) {
		return errors.New("certificate is not the cover's")
	}
	c.SetDeadline(time.Now().Add(30 * time.Second))
	io.WriteString(c, "GET / HTTP/1.1\r\nHost: "+srvCoverName+"\r\nConnection: close\r\n\r\n")
	page, err := io.ReadAll(c)
	if !bytes.Contains(page, []byte(srvCoverPage)) {
		return io.ErrUnexpectedEOF
	}
	return err
}

// TestCoverDialOutOfFiles: when the process has no descriptor left to
// reach the cover, the client waits (as at a busy site) instead of being
// reset, and gets the cover's answer once one is free.
func TestCoverDialOutOfFiles(t *testing.T) {
	cover := srvStartCover(t, false)
	priv, _, err := GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	var failures atomic.Int32
	var d net.Dialer
	srv, err := NewServer(ServerConfig{PrivateKey: priv, ShortIDs: [][]byte{{7}}, ServerNames: []string{srvCoverName}, Cover: cover,
		DialCover: func(ctx context.Context, network, addr string) (net.Conn, error) {
			if failures.Add(1) <= 3 {
				return nil, &net.OpError{Op: "dial", Net: network, Err: os.NewSyscallError("socket", syscall.EMFILE)}
			}
			return d.DialContext(ctx, network, addr)
		}})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	handled := make(chan error, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			handled <- err
			return
		}
		_, err = srv.Handshake(t.Context(), c.(*net.TCPConn))
		handled <- err
	}()
	if err := benchProbe(ln.Addr().String()); err != nil {
		t.Errorf("prober while the server was out of descriptors: %v, want the cover's page", err)
	}
	if err := <-handled; !errors.Is(err, ErrFallback) {
		t.Errorf("Handshake = %v, want ErrFallback", err)
	}
}
