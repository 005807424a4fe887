package vless

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	crand "crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"math/big"
	"math/rand/v2"
	"net"
	"sync"
	"testing"
	"time"

	utls "github.com/refraction-networking/utls"
	"github.com/xtls/reality"
)

var (
	certOnce sync.Once
	testCert tls.Certificate
)

func serverCert(t testing.TB) tls.Certificate {
	certOnce.Do(func() {
		key, err := ecdsa.GenerateKey(elliptic.P256(), crand.Reader)
		if err != nil {
			panic(err)
		}
		tmpl := &x509.Certificate{
			SerialNumber: big.NewInt(1),
			DNSNames:     []string{"example.com"},
			NotBefore:    time.Now().Add(-time.Hour),
			NotAfter:     time.Now().Add(time.Hour),
		}
		der, err := x509.CreateCertificate(crand.Reader, tmpl, tmpl, &key.PublicKey, key)
		if err != nil {
			panic(err)
		}
		testCert = tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
	})
	return testCert
}

func serverTLSConfig(t testing.TB) *tls.Config {
	return &tls.Config{Certificates: []tls.Certificate{serverCert(t)}, MinVersion: tls.VersionTLS13}
}

func clientTLSConfig() *tls.Config {
	return &tls.Config{InsecureSkipVerify: true, ServerName: "example.com", MinVersion: tls.VersionTLS13}
}

// trickleTLS delivers the outer TLS plaintext one byte per Read: the Vision unpadder must cope.
type trickleTLS struct{ *tls.Conn }

func (c *trickleTLS) visionInternals() (*tlsInternals, error) { return findTLSInternals(c.Conn) }

func (c *trickleTLS) Read(p []byte) (int, error) { return c.Conn.Read(p[:min(len(p), 1)]) }

// Outer conn kinds: the client TLS implementation (the server is crypto/tls).
var outerKinds = []string{"crypto/tls", "utls", "reality", "trickle"}

// outerPair returns a handshaken outer TLS 1.3 pair over loopback TCP.
func outerPair(t testing.TB, kind string, serverCfg *tls.Config) (client, server net.Conn) {
	t.Helper()
	return outerPairWrapped(t, kind, serverCfg, nil)
}

// outerPairWrapped is outerPair with the server's TCP conn wrapped by wrap (if not nil).
func outerPairWrapped(t testing.TB, kind string, serverCfg *tls.Config, wrap func(net.Conn) net.Conn) (client, server net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	type res struct {
		c   net.Conn
		err error
	}
	ch := make(chan res, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			ch <- res{nil, err}
			return
		}
		if wrap != nil {
			c = wrap(c)
		}
		s := tls.Server(c, serverCfg)
		err = s.Handshake()
		ch <- res{s, err}
	}()
	raw, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	var cerr error
	switch kind {
	case "crypto/tls", "trickle":
		c := tls.Client(raw, clientTLSConfig())
		cerr = c.Handshake()
		client = c
		if kind == "trickle" {
			client = &trickleTLS{c}
		}
	case "utls":
		c := utls.UClient(raw, &utls.Config{InsecureSkipVerify: true, ServerName: "example.com"}, utls.HelloChrome_Auto)
		cerr = c.Handshake()
		client = c
	case "reality":
		c := reality.Client(raw, &reality.Config{InsecureSkipVerify: true, ServerName: "example.com", MinVersion: reality.VersionTLS13})
		cerr = c.Handshake()
		client = c
	default:
		t.Fatalf("unknown kind %q", kind)
	}
	r := <-ch
	if cerr != nil || r.err != nil {
		t.Fatalf("%s handshake: client %v, server %v", kind, cerr, r.err)
	}
	t.Cleanup(func() { client.Close(); r.c.Close() })
	return client, r.c
}

// state reads the conn's switches under its locks.
type connState struct{ rDirect, wDirect, rPlain, padding bool }

func (c *Conn) state() connState {
	c.rmu.Lock()
	defer c.rmu.Unlock()
	c.wmu.Lock()
	defer c.wmu.Unlock()
	return connState{c.rDirect, c.wDirect.Load(), c.rPlain, c.pad.padding}
}

// randomData returns n deterministic pseudo-random bytes.
func randomData(n int, seed uint64) []byte {
	r := rand.NewChaCha8([32]byte{byte(seed), byte(seed >> 8)})
	b := make([]byte, n)
	r.Read(b)
	return b
}

// writeChunks writes data in random-sized pieces.
func writeChunks(w io.Writer, data []byte, seed uint64) error {
	r := rand.New(rand.NewPCG(seed, 1))
	for len(data) > 0 {
		n := min(len(data), 1+r.IntN(64<<10))
		if _, err := w.Write(data[:n]); err != nil {
			return err
		}
		data = data[n:]
	}
	return nil
}

// TestVisionNonTLS (a): non-TLS payloads cross both ways intact; padding ends, never direct.
func TestVisionNonTLS(t *testing.T) {
	for _, kind := range outerKinds {
		t.Run(kind, func(t *testing.T) {
			size := 4 << 20
			if kind == "trickle" {
				size = 512 << 10
			}
			co, so := outerPair(t, kind, serverTLSConfig(t))
			cc := ClientConn(co, &Request{UUID: testUUID, Flow: FlowVision, Command: CommandTCP, Dest: Addr{Host: "example.com", Port: 80}}).(*Conn)

			srv := make(chan *Conn, 1)
			go func() { // echo server
				req, err := ReadRequest(so)
				if err != nil {
					t.Errorf("ReadRequest: %v", err)
					close(srv)
					return
				}
				sc := ServerConn(so, req).(*Conn)
				if _, err := io.Copy(sc, sc); err != nil {
					t.Errorf("server echo: %v", err)
				}
				sc.CloseWrite()
				srv <- sc
			}()

			data := randomData(size, 1)
			go func() {
				if err := writeChunks(cc, data, 2); err != nil {
					t.Errorf("client write: %v", err)
				}
				cc.CloseWrite()
			}()
			h := sha256.New()
			n, err := io.Copy(h, cc)
			if err != nil || n != int64(size) {
				t.Fatalf("client read %d bytes, %v; want %d, nil", n, err, size)
			}
			if got, want := h.Sum(nil), sha256.Sum256(data); !bytes.Equal(got, want[:]) {
				t.Fatalf("echoed SHA-256 %x, want %x", got, want)
			}
			sc := <-srv
			if sc == nil {
				t.FailNow()
			}
			for name, c := range map[string]*Conn{"client": cc, "server": sc} {
				st := c.state()
				if st.rDirect || st.wDirect || !st.rPlain || st.padding {
					t.Errorf("%s state %+v, want padding ended, plain reads, no direct", name, st)
				}
			}
		})
	}
}

// innerTarget starts a TCP server speaking inner TLS 1.3, in request/response turns like HTTP:
// it receives up bytes, sends one byte "g", waits for one byte "a", sends down bytes, reports
// the SHA-256 of what it received, and waits for the client's close. (Vision goes direct at a
// write made only of whole TLS records; a relay reading a target that streams without pause
// can keep seeing records cut by its reads and, as in Xray, stay padded.)
func innerTarget(t *testing.T, down []byte, up int) (addr string, got <-chan [32]byte) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	ch := make(chan [32]byte, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		s := tls.Server(c, serverTLSConfig(t))
		buf := make([]byte, up)
		if _, err := io.ReadFull(s, buf); err != nil {
			t.Errorf("target read: %v", err)
		}
		ch <- sha256.Sum256(buf)
		var ack [1]byte
		if _, err := s.Write([]byte("g")); err != nil {
			t.Errorf("target write: %v", err)
		}
		if _, err := io.ReadFull(s, ack[:]); err != nil || ack[0] != 'a' {
			t.Errorf("target read ack = %q, %v", ack[:], err)
		}
		if err := writeChunks(s, down, 3); err != nil {
			t.Errorf("target write: %v", err)
		}
		io.Copy(io.Discard, s) // until the client closes
	}()
	return ln.Addr().String(), ch
}

// TestVisionInnerTLS (b): an inner TLS 1.3 conn through ClientConn → ServerConn → relay →
// target moves several MiB each way, both sides switch to direct copy, and the server relay's
// io.Copy to and from the target *net.TCPConn takes the raw-socket path.
func TestVisionInnerTLS(t *testing.T) {
	for _, kind := range outerKinds {
		t.Run(kind, func(t *testing.T) {
			size := 3 << 20
			down, up := randomData(size, 4), randomData(size, 5)
			target, targetGot := innerTarget(t, down, size)

			co, so := outerPair(t, kind, serverTLSConfig(t))
			cc := ClientConn(co, &Request{UUID: testUUID, Flow: FlowVision, Command: CommandTCP, Dest: Addr{Host: "example.com", Port: 443}}).(*Conn)

			srv := make(chan *Conn, 1)
			go func() { // VLESS server relaying to the target
				req, err := ReadRequest(so)
				if err != nil {
					t.Errorf("ReadRequest: %v", err)
					close(srv)
					return
				}
				sc := ServerConn(so, req).(*Conn)
				defer func() { srv <- sc }()
				tc, err := net.Dial("tcp", target)
				if err != nil {
					t.Errorf("dial target: %v", err)
					return
				}
				defer tc.Close()
				done := make(chan struct{})
				go func() {
					io.Copy(tc, sc) // sc.WriteTo(tc)
					tc.(*net.TCPConn).CloseWrite()
					close(done)
				}()
				io.Copy(sc, tc) // tc.WriteTo(sc) → sc.ReadFrom
				sc.CloseWrite()
				<-done
				sc.Close()
			}()

			inner := tls.Client(cc, clientTLSConfig())
			go func() {
				if err := writeChunks(inner, up, 6); err != nil {
					t.Errorf("inner client write: %v", err)
				}
			}()
			buf := make([]byte, size)
			if _, err := io.ReadFull(inner, buf[:1]); err != nil || buf[0] != 'g' {
				t.Fatalf("inner client read turn = %q, %v", buf[:1], err)
			}
			if _, err := inner.Write([]byte("a")); err != nil {
				t.Fatalf("inner client write ack: %v", err)
			}
			if _, err := io.ReadFull(inner, buf); err != nil {
				t.Fatalf("inner client read: %v", err)
			}
			if got, want := sha256.Sum256(buf), sha256.Sum256(down); got != want {
				t.Errorf("downlink SHA-256 %x, want %x", got, want)
			}
			if got, want := <-targetGot, sha256.Sum256(up); got != want {
				t.Errorf("uplink SHA-256 %x, want %x", got, want)
			}
			inner.Close()
			sc := <-srv
			if sc == nil {
				t.FailNow()
			}
			for name, c := range map[string]*Conn{"client": cc, "server": sc} {
				if st := c.state(); !st.rDirect || !st.wDirect {
					t.Errorf("%s state %+v, want direct reads and writes", name, st)
				}
				c.rmu.Lock()
				held := c.tin.rawInput.Cap()
				c.rmu.Unlock()
				if held != 0 {
					t.Errorf("%s: the outer TLS conn's read buffer holds %d bytes after Vision went direct, want 0 (released)", name, held)
				}
				if r, w := c.directRead.Load(), c.directWritten.Load(); r < int64(size)/2 || w < int64(size)/2 {
					t.Errorf("%s moved %d bytes read, %d written on the raw conn; want most of %d", name, r, w, size)
				}
			}
			if sc.rawWriteTo.Load() == 0 || sc.rawReadFrom.Load() == 0 {
				t.Errorf("server relay raw-socket copies: WriteTo %d, ReadFrom %d bytes; want both > 0",
					sc.rawWriteTo.Load(), sc.rawReadFrom.Load())
			}
		})
	}
}

func TestVisionNeedsTLS13(t *testing.T) {
	cfg := serverTLSConfig(t)
	cfg.MinVersion, cfg.MaxVersion = tls.VersionTLS12, tls.VersionTLS12
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err == nil {
			s := tls.Server(c, cfg)
			s.Handshake()
			io.Copy(io.Discard, s)
			s.Close()
		}
	}()
	raw, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	c := tls.Client(raw, &tls.Config{InsecureSkipVerify: true})
	if err := c.Handshake(); err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	cc := ClientConn(c, &Request{UUID: testUUID, Flow: FlowVision, Command: CommandTCP, Dest: Addr{Host: "a", Port: 1}})
	if _, err := cc.Write([]byte("x")); !errors.Is(err, ErrVisionTransport) {
		t.Errorf("Write over TLS 1.2 = %v, want ErrVisionTransport", err)
	}
	// A conn that is not TLS at all.
	p1, p2 := net.Pipe()
	defer p1.Close()
	defer p2.Close()
	sc := ServerConn(p1, &Request{UUID: testUUID, Flow: FlowVision, Command: CommandTCP})
	if _, err := sc.Read(make([]byte, 1)); !errors.Is(err, ErrVisionTransport) {
		t.Errorf("Read over net.Pipe = %v, want ErrVisionTransport", err)
	}
}
