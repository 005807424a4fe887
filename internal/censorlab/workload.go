package censorlab

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/big"
	mrand "math/rand/v2"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Site is the destination every system carries the workload to: a TLS
// server with its own certificate (so each system's traffic carries an
// inner TLS connection, as a user's HTTPS does) speaking a line protocol:
//
//	DOWN n\n        server sends n bytes of the "down" stream, then closes
//	UP id n\n ...   client sends n bytes of the "up" stream; server answers "OK\n"
//	ECHO k\n        k times: client sends len(2) | request; server answers 1000 bytes derived from it
type Site struct {
	Addr string
	Name string

	cfg  *tls.Config
	pool *x509.CertPool
	ln   net.Listener
	wg   sync.WaitGroup

	mu      sync.Mutex
	uploads map[string]*atomic.Int64 // guarded by mu; intact bytes received per upload id
}

// StartSite listens on addr and serves until Close.
func StartSite(addr string) (*Site, error) {
	const name = "site.test"
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), DNSNames: []string{name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, err
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	pool.AddCert(leaf)
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("censorlab: site: %w", err)
	}
	s := &Site{Addr: ln.Addr().String(), Name: name, pool: pool, ln: ln, uploads: map[string]*atomic.Int64{},
		cfg: &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}}}}
	s.wg.Go(s.acceptLoop)
	return s, nil
}

// Close stops the site and waits for its connections.
func (s *Site) Close() error {
	err := s.ln.Close()
	s.wg.Wait()
	return err
}

// ClientTLS is the config a workload client uses towards the site.
func (s *Site) ClientTLS() *tls.Config {
	return &tls.Config{ServerName: s.Name, RootCAs: s.pool}
}

func (s *Site) acceptLoop() {
	for {
		c, err := s.ln.Accept()
		if err != nil {
			return
		}
		s.wg.Go(func() { s.serveConn(c) })
	}
}

// siteIdle is how long the site waits on a connection that moves nothing
// before it drops it; the workloads give up much sooner (DefaultIdle).
const siteIdle = time.Minute

// serveConn serves one connection and closes it. A connection that moves
// is served however long it takes: a sweep point carries 32 MiB through a
// freeze at 8 KiB in minutes on a loaded machine, and a deadline on the
// whole connection (one minute, stretched by Budget) cut such downloads
// short, which the sweep counted as tries the transport needed.
func (s *Site) serveConn(c net.Conn) {
	defer c.Close()
	s.serve(tls.Server(&idleConn{Conn: c, idle: Budget(siteIdle)}, s.cfg))
}

func (s *Site) counter(id string) *atomic.Int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := s.uploads[id]
	if n == nil {
		n = new(atomic.Int64)
		s.uploads[id] = n
	}
	return n
}

func (s *Site) serve(c *tls.Conn) {
	br := bufio.NewReader(io.LimitReader(c, 1<<30))
	line, err := br.ReadString('\n')
	if err != nil {
		return
	}
	f := strings.Fields(line)
	switch {
	case len(f) == 2 && f[0] == "DOWN":
		n, _ := strconv.ParseInt(f[1], 10, 64)
		io.Copy(c, io.LimitReader(newStream("down"), n))
		c.CloseWrite()
		io.Copy(io.Discard, c)
	case len(f) == 3 && f[0] == "UP":
		n, _ := strconv.ParseInt(f[2], 10, 64)
		got := s.counter(f[1])
		if _, err := io.Copy(&verifier{want: newStream("up"), n: got}, io.LimitReader(br, n)); err == nil && got.Load() == n {
			io.WriteString(c, "OK\n")
		}
	case len(f) == 2 && f[0] == "ECHO":
		k, _ := strconv.Atoi(f[1])
		for range k {
			var l [2]byte
			if _, err := io.ReadFull(br, l[:]); err != nil {
				return
			}
			req := make([]byte, binary.BigEndian.Uint16(l[:]))
			if _, err := io.ReadFull(br, req); err != nil {
				return
			}
			if _, err := c.Write(echoAnswer(req)); err != nil {
				return
			}
		}
	}
}

// echoAnswer is the 1000-byte answer to an ECHO request.
func echoAnswer(req []byte) []byte {
	sum := sha256.Sum256(req)
	return bytes.Repeat(sum[:], 32)[:1000]
}

// newStream returns the deterministic byte stream named seed.
func newStream(seed string) io.Reader {
	var k [32]byte
	copy(k[:], seed)
	return mrand.NewChaCha8(k)
}

// verifier counts bytes written to it while they match want.
type verifier struct {
	want io.Reader
	n    *atomic.Int64
	bad  bool
	buf  []byte
}

func (v *verifier) Write(p []byte) (int, error) {
	if v.bad {
		return 0, errors.New("censorlab: corrupted stream")
	}
	if cap(v.buf) < len(p) {
		v.buf = make([]byte, len(p))
	}
	w := v.buf[:len(p)]
	io.ReadFull(v.want, w)
	for i := range p {
		if p[i] != w[i] {
			v.n.Add(int64(i))
			v.bad = true
			return i, errors.New("censorlab: corrupted stream")
		}
	}
	v.n.Add(int64(len(p)))
	return len(p), nil
}

// Workload is what every cell moves through its system. The zero value
// means the defaults.
type Workload struct {
	Download  int64 // bytes from the site on one connection; default 4 MiB
	Upload    int64 // bytes to the site on one connection; default 256 KiB
	Exchanges int   // short request/answer exchanges; default 50
	Conns     int   // connections the exchanges are spread over; default 4
	// Idle is how long a connection may move nothing before it has failed (a
	// freeze); default DefaultIdle, on a quiet machine: Run stretches it by
	// Budget.
	Idle time.Duration
}

// DefaultIdle is the workload's default Idle. A browser waits far longer
// before it gives up on a connection; this leaves a transport that
// recovers from a freeze (XHTTP: a stall window of 1.5-3 s, a probe of at
// least 3 s, a resume on a fresh connection: 4.5-6 s, docs/adaptive.md)
// room to do so on a loaded machine. (It was 1.5 s, and a loaded run then
// failed burrow-xhttp's byte-budget cell, whose floor is every byte, 14 KB
// short.)
const DefaultIdle = 10 * time.Second

func (w Workload) withDefaults() Workload {
	if w.Download == 0 {
		w.Download = 4 << 20
	}
	if w.Upload == 0 {
		w.Upload = 256 << 10
	}
	if w.Exchanges == 0 {
		w.Exchanges = 50
	}
	if w.Conns == 0 {
		w.Conns = 4
	}
	if w.Idle == 0 {
		w.Idle = DefaultIdle
	}
	return w
}

const echoRequest, echoResponse = 100, 1000

// Expected is the number of bytes a fully successful run delivers.
func (w Workload) Expected() int64 {
	w = w.withDefaults()
	return w.Download + w.Upload + int64(w.Exchanges)*(echoRequest+echoResponse)
}

// Tally is the outcome of one workload run.
type Tally struct {
	Expected, Delivered int64
	Errors              []string // the first error of each part that failed
}

var uploadID atomic.Int64

// Run opens all connections first, one after the other (one download, one
// upload, Conns for the exchanges, so they are open at the same time, as a
// browser's are), then moves the data on all of them at once, checking
// every byte.
func (w Workload) Run(ctx context.Context, site *Site, dial func(ctx context.Context) (net.Conn, error)) Tally {
	w = w.withDefaults()
	t := Tally{Expected: w.Expected()}
	var delivered atomic.Int64
	var mu sync.Mutex
	fail := func(part string, err error) {
		mu.Lock()
		t.Errors = append(t.Errors, part+": "+err.Error())
		mu.Unlock()
	}
	idle := Budget(w.Idle)
	n := 2 + w.Conns
	conns := make([]*tls.Conn, n)
	for i := range n { // one after the other, so which rule fires first does not depend on scheduling
		raw, err := dial(ctx)
		if err != nil {
			fail("dial", err)
			continue
		}
		tc := tls.Client(&idleConn{Conn: raw, idle: idle}, site.ClientTLS())
		if err := tc.HandshakeContext(ctx); err != nil {
			raw.Close()
			fail("inner TLS handshake", err)
			continue
		}
		conns[i] = tc
	}
	var wg sync.WaitGroup
	defer func() {
		for _, c := range conns {
			if c != nil {
				c.Close()
			}
		}
	}()
	stop := context.AfterFunc(ctx, func() {
		for _, c := range conns {
			if c != nil {
				c.NetConn().Close()
			}
		}
	})
	defer stop()
	if c := conns[0]; c != nil {
		wg.Go(func() {
			if err := download(c, w.Download, &delivered); err != nil {
				fail("download", err)
			}
		})
	}
	id := fmt.Sprintf("u%d", uploadID.Add(1))
	if c := conns[1]; c != nil {
		wg.Go(func() {
			if err := upload(c, id, w.Upload); err != nil {
				fail("upload", err)
			}
		})
	}
	per := (w.Exchanges + w.Conns - 1) / w.Conns
	left := w.Exchanges
	for i := range w.Conns {
		k := min(per, left)
		left -= k
		if c := conns[2+i]; c != nil && k > 0 {
			wg.Go(func() {
				if err := exchanges(c, i, k, &delivered); err != nil {
					fail("exchanges", err)
				}
			})
		}
	}
	wg.Wait()
	t.Delivered = delivered.Load() + site.counter(id).Load()
	return t
}

func download(c *tls.Conn, n int64, delivered *atomic.Int64) error {
	if _, err := fmt.Fprintf(c, "DOWN %d\n", n); err != nil {
		return err
	}
	_, err := io.Copy(&verifier{want: newStream("down"), n: delivered}, io.LimitReader(c, n))
	if err != nil {
		return err
	}
	return nil
}

func upload(c *tls.Conn, id string, n int64) error {
	if _, err := fmt.Fprintf(c, "UP %s %d\n", id, n); err != nil {
		return err
	}
	if _, err := io.Copy(c, io.LimitReader(newStream("up"), n)); err != nil {
		return err
	}
	ok := make([]byte, 3)
	if _, err := io.ReadFull(c, ok); err != nil || string(ok) != "OK\n" {
		return fmt.Errorf("no acknowledgement (%q, %v)", ok, err)
	}
	return nil
}

func exchanges(c *tls.Conn, conn, k int, delivered *atomic.Int64) error {
	if _, err := fmt.Fprintf(c, "ECHO %d\n", k); err != nil {
		return err
	}
	rng := mrand.New(mrand.NewPCG(uint64(conn), 7))
	req := make([]byte, 2+echoRequest)
	got := make([]byte, echoResponse)
	for range k {
		binary.BigEndian.PutUint16(req, echoRequest)
		for i := 2; i < len(req); i++ {
			req[i] = byte(rng.Uint32())
		}
		if _, err := c.Write(req); err != nil {
			return err
		}
		if _, err := io.ReadFull(c, got); err != nil {
			return err
		}
		if !bytes.Equal(got, echoAnswer(req[2:])) {
			return errors.New("wrong answer")
		}
		delivered.Add(echoRequest + echoResponse)
	}
	return nil
}

// idleConn fails a Read or Write that makes no progress for idle: the
// workload's way to notice a frozen connection.
type idleConn struct {
	net.Conn
	idle time.Duration
}

func (c *idleConn) Read(p []byte) (int, error) {
	c.Conn.SetReadDeadline(time.Now().Add(c.idle))
	return c.Conn.Read(p)
}

func (c *idleConn) Write(p []byte) (int, error) {
	c.Conn.SetWriteDeadline(time.Now().Add(c.idle))
	return c.Conn.Write(p)
}
