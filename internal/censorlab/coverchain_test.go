package censorlab

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"testing"

	"github.com/burrow-vpn/burrow/internal/camo"
	"github.com/burrow-vpn/burrow/internal/coversite"
)

// TestCDNChainHandshake checks the large chain: each certificate signed by
// the next, and a TLS 1.3 server flight of a large real site's size (4-6 KB)
// where the small self-signed one is under 2 KB.
func TestCDNChainHandshake(t *testing.T) {
	small, err := selfSigned(CoverSNI)
	if err != nil {
		t.Fatal(err)
	}
	large, err := cdnChain(CoverSNI)
	if err != nil {
		t.Fatal(err)
	}
	var certs []*x509.Certificate
	for _, der := range large.Certificate {
		c, err := x509.ParseCertificate(der)
		if err != nil {
			t.Fatal(err)
		}
		certs = append(certs, c)
	}
	for i := 0; i+1 < len(certs); i++ {
		if err := certs[i].CheckSignatureFrom(certs[i+1]); err != nil {
			t.Errorf("certificate %d (%s) is not signed by the next: %v", i, certs[i].Subject.CommonName, err)
		}
	}
	if err := certs[0].VerifyHostname(CoverSNI); err != nil {
		t.Error(err)
	}
	flight := func(cert tls.Certificate) int64 {
		site, err := coversite.StartWith("127.0.0.1:0", coversite.Options{Cert: &cert}, CoverSNI)
		if err != nil {
			t.Fatal(err)
		}
		defer site.Close()
		hs, err := camo.CoverHandshake(context.Background(), nil, site.Addr, CoverSNI)
		if err != nil {
			t.Fatal(err)
		}
		return hs
	}
	s, l := flight(small), flight(large)
	t.Logf("server flight: %d bytes with the small certificate, %d with the large chain", s, l)
	if s > 2000 {
		t.Errorf("small certificate: server flight %d bytes, want under 2000", s)
	}
	if l < 4000 || l > 6500 {
		t.Errorf("large chain: server flight %d bytes, want 4000-6500", l)
	}
	// burrow check: the small cover is fine, the large one gets a warning.
	if f := handshakeFinding(s); f.Severity != SevOK {
		t.Errorf("a %d-byte handshake: %+v, want ok", s, f)
	}
	if f := handshakeFinding(l); f.Severity != SevWarn || f.Advice == "" {
		t.Errorf("a %d-byte handshake: %+v, want a warning with advice", l, f)
	}
}
