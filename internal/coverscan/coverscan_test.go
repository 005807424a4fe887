package coverscan

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"math/big"
	mrand "math/rand/v2"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"
)

// ca is a test certificate authority.
type ca struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pool *x509.CertPool
}

func newCA(t *testing.T) *ca {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "coverscan test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	c, _ := x509.ParseCertificate(der)
	pool := x509.NewCertPool()
	pool.AddCert(c)
	return &ca{cert: c, key: key, pool: pool}
}

// leaf issues a certificate for names, signed by the CA (or by itself).
func (a *ca) leaf(t *testing.T, self bool, names ...string) tls.Certificate {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(mrand.Int64()), Subject: pkix.Name{CommonName: names[0]}, DNSNames: names,
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	parent, signer := a.cert, a.key
	if self {
		parent, signer = tmpl, key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &key.PublicKey, signer)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// serve runs a TLS server on ap until the test ends.
func serve(t *testing.T, ap string, cfg *tls.Config) error {
	ln, err := tls.Listen("tcp", ap, cfg)
	if err != nil {
		return err
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				c.(*tls.Conn).Handshake()
				c.Read(make([]byte, 1))
			}()
		}
	}()
	return nil
}

// TestScanFindsTheNeighbour: a block with one site of each kind; Scan
// reports each with the right verdict, the usable neighbours first, and
// leaves out what does not speak TLS and the server's own address.
func TestScanFindsTheNeighbour(t *testing.T) {
	a := newCA(t)
	// A block of loopback of its own per run, so two runs side by side
	// do not meet.
	base := netip.AddrFrom4([4]byte{127, 66, byte(mrand.IntN(250) + 1), 0})
	at := func(i byte) netip.Addr { b := base.As4(); b[3] = i; return netip.AddrFrom4(b) }
	h2 := []string{"h2", "http/1.1"}
	sites := []struct {
		host byte
		cfg  *tls.Config
	}{
		{1, &tls.Config{Certificates: []tls.Certificate{a.leaf(t, false, "good.test")}, NextProtos: h2}},
		{2, &tls.Config{Certificates: []tls.Certificate{a.leaf(t, false, "far.test")}, NextProtos: h2}},
		{3, &tls.Config{Certificates: []tls.Certificate{a.leaf(t, false, "old.test")}, NextProtos: h2, MaxVersion: tls.VersionTLS12}},
		{4, &tls.Config{Certificates: []tls.Certificate{a.leaf(t, false, "noh2.test")}}},
		{5, &tls.Config{Certificates: []tls.Certificate{a.leaf(t, true, "self.test")}, NextProtos: h2}},
		// The shortest name does not resolve; the next one is the site's.
		{6, &tls.Config{Certificates: []tls.Certificate{a.leaf(t, false, "x.test", "shop.multi.test", "*.multi.test")}, NextProtos: h2}},
		// Its name resolves here and to a CDN elsewhere.
		{7, &tls.Config{Certificates: []tls.Certificate{a.leaf(t, false, "cdn.test")}, NextProtos: h2}},
		// Only a wildcard of a top-level domain: no name to send.
		{8, &tls.Config{Certificates: []tls.Certificate{a.leaf(t, false, "*.test")}, NextProtos: h2}},
		{9, &tls.Config{Certificates: []tls.Certificate{a.leaf(t, false, "me.test")}, NextProtos: h2}}, // the server itself
	}
	// One port for every address: the first site's, free on the others
	// as a rule (tried again on another if not).
	var port uint16
	for try := 0; ; try++ {
		ln, err := net.Listen("tcp", netip.AddrPortFrom(at(1), 0).String())
		if err != nil {
			t.Skipf("no 127.66.0.0/16 on lo here: %v", err)
		}
		port = uint16(ln.Addr().(*net.TCPAddr).Port)
		ln.Close()
		ok := true
		for _, s := range sites {
			if err := serve(t, netip.AddrPortFrom(at(s.host), port).String(), s.cfg); err != nil {
				ok = false
				break
			}
		}
		if ok {
			break
		}
		if try == 5 {
			t.Fatal("no port free on every test address")
		}
	}
	names := map[string][]netip.Addr{
		"good.test": {at(1)}, "far.test": {netip.MustParseAddr("10.9.9.9")}, "old.test": {at(3)}, "noh2.test": {at(4)},
		"self.test": {at(5)}, "shop.multi.test": {at(6), netip.MustParseAddr("2001:db8::6")}, "me.test": {at(9)},
		"cdn.test": {at(7), netip.MustParseAddr("10.9.9.7")},
	}
	block := netip.PrefixFrom(base, 28)
	got, err := Scan(context.Background(), Config{
		Block: block, Port: port, Skip: []netip.Addr{at(9)}, Roots: a.pool, Timeout: 10 * time.Second,
		Resolve: func(_ context.Context, host string) ([]netip.Addr, error) {
			if a, ok := names[host]; ok {
				return a, nil
			}
			return nil, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range got {
		t.Logf("%v %s tls13=%v h2=%v trusted=%v in=%v hs=%d problem=%q", s.Addr, s.Name, s.TLS13, s.H2, s.Trusted, s.InNetwork, s.Handshake, s.Problem)
	}
	want := map[byte]string{ // host → a part of the problem ("" suitable)
		1: "", 6: "", 2: "not all in the server's network", 3: "no TLS 1.3", 4: "no HTTP/2", 5: "does not verify",
		7: "not all in the server's network", 8: "names no host a client could send",
	}
	if len(got) != len(want) {
		t.Fatalf("found %d sites, want %d (the closed address and the server's own left out)", len(got), len(want))
	}
	for i, s := range got {
		problem, ok := want[s.Addr.Addr().As4()[3]]
		if !ok {
			t.Errorf("found %v, which is not a site to report", s.Addr)
			continue
		}
		if problem == "" && !s.Suitable() || problem != "" && !strings.Contains(s.Problem, problem) {
			t.Errorf("%v: problem %q, want %q", s.Addr, s.Problem, problem)
		}
		if i < 2 && !s.Suitable() {
			t.Errorf("position %d is %v, which is not suitable: the suitable come first", i, s.Addr)
		}
		if s.Suitable() && (s.Handshake <= 0 || !s.TLS13 || !s.H2 || !s.Trusted || !s.InNetwork) {
			t.Errorf("%v is suitable with %+v", s.Addr, s)
		}
	}
	for _, s := range got {
		if s.Addr.Addr() == at(6) && s.Name != "shop.multi.test" {
			t.Errorf("the multi-name site got name %q, want the one that resolves (shop.multi.test)", s.Name)
		}
	}
}

func TestScanRefusesBadBlocks(t *testing.T) {
	for _, b := range []string{"10.0.0.0/16", "2001:db8::/120"} {
		_, err := Scan(context.Background(), Config{Block: netip.MustParsePrefix(b)})
		if err == nil {
			t.Errorf("Scan(%s) took it", b)
		}
	}
	if _, err := Scan(context.Background(), Config{}); err == nil {
		t.Error("Scan with no block took it")
	}
}

func TestCandidates(t *testing.T) {
	for _, tt := range []struct{ names, want []string }{
		{[]string{"www.example.com", "example.com"}, []string{"example.com", "www.example.com"}},
		{[]string{"*.example.com"}, []string{"example.com"}},
		{[]string{"*.example.com", "example.com"}, []string{"example.com"}},
		{[]string{"*.com"}, nil},
		{[]string{"a.t", "bb.t", "ccc.t", "dddd.t", "eeeee.t"}, []string{"a.t", "bb.t", "ccc.t", "dddd.t"}},
	} {
		if got := candidates(tt.names); fmt.Sprint(got) != fmt.Sprint(tt.want) {
			t.Errorf("candidates(%v) = %v, want %v", tt.names, got, tt.want)
		}
	}
}

// A cancelled scan returns what it found and the context's error.
func TestScanCancelled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := Scan(ctx, Config{Block: netip.MustParsePrefix("127.66.255.0/24"), Port: 9})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err %v, want context.Canceled", err)
	}
}

// A site slow to answer a hello that names it is reported as slow, not as
// lacking TLS 1.3.
func TestScanSlowSite(t *testing.T) {
	a := newCA(t)
	base := netip.AddrFrom4([4]byte{127, 68, byte(mrand.IntN(250) + 1), 0})
	site := netip.AddrPortFrom(base.Next(), 0)
	stall := make(chan struct{})
	defer close(stall)
	cfg := &tls.Config{Certificates: []tls.Certificate{a.leaf(t, false, "slow.test")}, NextProtos: []string{"h2"},
		GetConfigForClient: func(h *tls.ClientHelloInfo) (*tls.Config, error) {
			if h.ServerName != "" {
				<-stall
			}
			return nil, nil
		}}
	ln, err := tls.Listen("tcp", site.String(), cfg)
	if err != nil {
		t.Skipf("no 127.68.0.0/16 on lo here: %v", err)
	}
	ln.Close()
	site = netip.MustParseAddrPort(ln.Addr().String())
	if err := serve(t, site.String(), cfg); err != nil {
		t.Fatal(err)
	}
	// The budget: many times what a handshake takes on this machine now.
	start := time.Now()
	c, err := tls.Dial("tcp", site.String(), &tls.Config{InsecureSkipVerify: true})
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	timeout := max(time.Second, 20*time.Since(start))
	got, err := Scan(context.Background(), Config{Block: netip.PrefixFrom(site.Addr(), 32), Port: site.Port(), Roots: a.pool, Timeout: timeout,
		Resolve: func(context.Context, string) ([]netip.Addr, error) { return []netip.Addr{site.Addr()}, nil }})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || !strings.Contains(got[0].Problem, "no answer for slow.test within") {
		t.Fatalf("got %+v, want the site reported as slow", got)
	}
}
