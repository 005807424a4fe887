package camo

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"io"
	"log"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"
)

// Test fixtures for the server tests: a real TLS 1.3 HTTPS cover site on
// loopback, a variant that resets junk, and a running Server in front of it.

const srvCoverName = "cover.example"

// srvCoverTimeout is the test cover's read timeout: junk that does not
// complete a request is dropped after it, as a real server does after its
// (much longer) timeout.
const srvCoverTimeout = time.Second

const srvCoverPage = "<html><body>An ordinary website.</body></html>\n"

var srvCert = sync.OnceValues(func() (tls.Certificate, error) {
	// RSA so that handshake record sizes do not vary with signature length.
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return tls.Certificate{}, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(42),
		Subject:      pkix.Name{CommonName: srvCoverName},
		DNSNames:     []string{srvCoverName},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return tls.Certificate{}, err
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, nil
})

// srvStartCover starts an HTTPS site on loopback and returns its address.
// With resetJunk, a connection whose first byte is not 0x16 is reset
// (SO_LINGER 0) instead of being handed to TLS.
func srvStartCover(t *testing.T, resetJunk bool) string {
	t.Helper()
	cert, err := srvCert()
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var l net.Listener = ln
	if resetJunk {
		l = &srvJunkResetListener{Listener: ln}
	}
	hs := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/html")
			io.WriteString(w, srvCoverPage)
		}),
		ReadHeaderTimeout: srvCoverTimeout,
		ReadTimeout:       srvCoverTimeout,
		IdleTimeout:       srvCoverTimeout,
		TLSConfig:         &tls.Config{Certificates: []tls.Certificate{cert}},
		ErrorLog:          log.New(io.Discard, "", 0),
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		hs.ServeTLS(l, "", "")
	}()
	t.Cleanup(func() {
		hs.Close()
		<-done
	})
	return ln.Addr().String()
}

// srvJunkResetListener resets connections whose first byte is not a TLS
// handshake record, like servers that drop junk with a reset.
type srvJunkResetListener struct{ net.Listener }

func (l *srvJunkResetListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		c.SetReadDeadline(time.Now().Add(srvCoverTimeout))
		b := make([]byte, 1)
		if _, err := io.ReadFull(c, b); err != nil || b[0] != 0x16 {
			c.(*net.TCPConn).SetLinger(0)
			c.Close()
			continue
		}
		c.SetReadDeadline(time.Time{})
		return &srvPrefixConn{Conn: c, prefix: b}, nil
	}
}

type srvPrefixConn struct {
	net.Conn
	prefix []byte
}

func (c *srvPrefixConn) Read(p []byte) (int, error) {
	if len(c.prefix) > 0 {
		n := copy(p, c.prefix)
		c.prefix = c.prefix[n:]
		return n, nil
	}
	return c.Conn.Read(p)
}

// srvHarness is a running Server with an accept loop. Authenticated
// connections are echoed. The result of each Handshake is recorded under
// the client's address.
type srvHarness struct {
	addr    string
	srv     *Server
	pub     []byte
	shortID []byte

	mu      sync.Mutex
	results map[string]error // guarded by mu; key: client address
}

func srvStart(t *testing.T, cover string) *srvHarness {
	t.Helper()
	return srvStartWrapped(t, cover, nil)
}

// srvStartWrapped is srvStart whose echo runs on wrap(conn) (if not nil),
// the conn Handshake returned.
func srvStartWrapped(t *testing.T, cover string, wrap func(net.Conn) net.Conn) *srvHarness {
	t.Helper()
	priv, pub, err := GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	h := &srvHarness{pub: pub, shortID: []byte{0xab, 0xcd}, results: make(map[string]error)}
	h.srv, err = NewServer(ServerConfig{
		PrivateKey:   priv,
		ShortIDs:     [][]byte{h.shortID, {1, 2, 3, 4, 5, 6, 7, 8}},
		ServerNames:  []string{srvCoverName},
		Cover:        cover,
		fallbackIdle: 20 * time.Second,
		Logger:       slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug})),
	})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	h.addr = ln.Addr().String()
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Go(func() {
				tc, err := h.srv.Handshake(ctx, c.(*net.TCPConn))
				h.mu.Lock()
				h.results[c.RemoteAddr().String()] = err
				h.mu.Unlock()
				if err != nil {
					return
				}
				if wrap != nil {
					tc = wrap(tc)
				}
				context.AfterFunc(ctx, func() { tc.Close() })
				io.Copy(tc, tc)
				tc.Close()
			})
		}
	})
	t.Cleanup(func() {
		ln.Close()
		cancel()
		srvWait(t, &wg, "Handshake goroutines after cancel")
		// The detection logs to t; it must end before t does.
		select {
		case <-h.srv.recordSizes:
		case <-time.After(srvWaitTimeout):
			t.Errorf("record-size detection still running after %v", srvWaitTimeout)
		}
	})
	return h
}

// srvWaitTimeout bounds every wait in a test cleanup: a stuck goroutine
// fails the test with all stacks instead of hanging until the test binary's
// timeout. It is generous, for loaded CI machines.
const srvWaitTimeout = 15 * time.Second

// srvWait waits for wg, at most srvWaitTimeout; then it fails t with the
// stacks of all goroutines and returns (leaving the stuck ones behind).
func srvWait(t *testing.T, wg *sync.WaitGroup, what string) {
	t.Helper()
	done := make(chan struct{})
	go func() {
		wg.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(srvWaitTimeout):
		buf := make([]byte, 1<<20)
		t.Errorf("%s still running after %v:\n%s", what, srvWaitTimeout, buf[:runtime.Stack(buf, true)])
	}
}

// result waits for the Handshake result of the connection from local.
func (h *srvHarness) result(t *testing.T, local string) error {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		h.mu.Lock()
		err, ok := h.results[local]
		h.mu.Unlock()
		if ok {
			return err
		}
	}
	t.Fatalf("no Handshake result for %s", local)
	return nil
}

// srvRecordingConn records everything written to it.
type srvRecordingConn struct {
	net.Conn
	mu      sync.Mutex
	written bytes.Buffer
}

func (c *srvRecordingConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	c.written.Write(p)
	c.mu.Unlock()
	return c.Conn.Write(p)
}

// srvDialReality runs our REALITY client against h and returns the TLS conn
// and the client's first flight (the records carrying its ClientHello).
func srvDialReality(t *testing.T, h *srvHarness, cfg ClientConfig) (net.Conn, []byte, error) {
	t.Helper()
	c, err := net.Dial("tcp", h.addr)
	if err != nil {
		t.Fatal(err)
	}
	rec := &srvRecordingConn{Conn: c}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	// The client hello is written before any server byte is read, so the
	// bytes written up to the first read are the first flight.
	first := &srvFirstFlight{rec: rec}
	tc, err := Client(ctx, first, cfg)
	if err != nil {
		t.Logf("client failed; server's Handshake result: %v", h.result(t, c.LocalAddr().String()))
		c.Close()
		return nil, first.flight, err
	}
	t.Cleanup(func() { tc.Close() })
	return tc, first.flight, nil
}

// srvFirstFlight snapshots what was written before the first Read.
type srvFirstFlight struct {
	rec    *srvRecordingConn
	once   sync.Once
	flight []byte
}

func (f *srvFirstFlight) Read(p []byte) (int, error) {
	f.once.Do(func() {
		f.rec.mu.Lock()
		f.flight = bytes.Clone(f.rec.written.Bytes())
		f.rec.mu.Unlock()
	})
	return f.rec.Read(p)
}
func (f *srvFirstFlight) Write(p []byte) (int, error)        { return f.rec.Write(p) }
func (f *srvFirstFlight) Close() error                       { return f.rec.Close() }
func (f *srvFirstFlight) LocalAddr() net.Addr                { return f.rec.LocalAddr() }
func (f *srvFirstFlight) RemoteAddr() net.Addr               { return f.rec.RemoteAddr() }
func (f *srvFirstFlight) SetDeadline(t time.Time) error      { return f.rec.SetDeadline(t) }
func (f *srvFirstFlight) SetReadDeadline(t time.Time) error  { return f.rec.SetReadDeadline(t) }
func (f *srvFirstFlight) SetWriteDeadline(t time.Time) error { return f.rec.SetWriteDeadline(t) }

var errSrvNoEcho = errors.New("echo mismatch")

// srvEcho writes msg on c and reads it back.
func srvEcho(c net.Conn, msg []byte) error {
	c.SetDeadline(time.Now().Add(10 * time.Second))
	defer c.SetDeadline(time.Time{})
	if _, err := c.Write(msg); err != nil {
		return err
	}
	got := make([]byte, len(msg))
	if _, err := io.ReadFull(c, got); err != nil {
		return err
	}
	if !bytes.Equal(got, msg) {
		return errSrvNoEcho
	}
	return nil
}

// srvCheckNoLeaks fails t if, once everything else of t was cleaned up,
// goroutines of the server code are still running. Call it first in a
// test that is not parallel, so that its cleanup runs last.
func srvCheckNoLeaks(t *testing.T) {
	t.Cleanup(func() {
		var stacks string
		for deadline := time.Now().Add(3 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
			buf := make([]byte, 1<<20)
			stacks = string(buf[:runtime.Stack(buf, true)])
			if !strings.Contains(stacks, "internal/camo.(*flight)") && !strings.Contains(stacks, "internal/camo.(*Server)") &&
				!strings.Contains(stacks, "internal/camo.detectRecordSize(") {
				return
			}
		}
		t.Errorf("server goroutines still running after the test:\n%s", stacks)
	})
}
