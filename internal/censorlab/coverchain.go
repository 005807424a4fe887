package censorlab

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"math/big"
	"time"
)

// The lab's cover serves one small self-signed certificate, so a TLS 1.3
// server flight to the cover is about 1.8 KB. A large real site sends a
// leaf with dozens of names and two intermediates: 4-6 KB. A REALITY server
// sizes its handshake like its cover's, and every connection pays it before
// it carries a byte, so the cover's chain decides how much a connection can
// carry below a freeze. With Config.CoverChain the lab's cover serves such
// a chain (cdnChain).

// cdnNames is how many names the large chain's leaf carries besides its own.
const cdnNames = 40

// cdnChain returns a certificate for name shaped like a large site's: an
// RSA-2048 leaf naming name and cdnNames more hosts, signed by an RSA-2048
// intermediate, which a cross-signed RSA-4096 intermediate signs in turn
// (the root that signs that one is not sent, as real servers do not send
// theirs).
func cdnChain(name string) (tls.Certificate, error) {
	// The root signs itself: its template is its own parent.
	rootTmpl := caTemplate("Northwind Lab Root CA", 1)
	root, err := issue(rootTmpl, 4096, rootTmpl, nil)
	if err != nil {
		return tls.Certificate{}, err
	}
	cross, err := issue(caTemplate("Northwind Lab Global Root R2", 2), 4096, root.cert, root.key)
	if err != nil {
		return tls.Certificate{}, err
	}
	mid, err := issue(caTemplate("Northwind Lab TLS Issuing CA 07", 3), 2048, cross.cert, cross.key)
	if err != nil {
		return tls.Certificate{}, err
	}
	names := []string{name}
	for i := range cdnNames {
		names = append(names, fmt.Sprintf("static-%02d.%s", i, name))
	}
	leaf, err := issue(&x509.Certificate{
		SerialNumber: big.NewInt(4),
		Subject:      pkix.Name{CommonName: name, Organization: []string{"Northwind Ceramics"}, Country: []string{"NL"}},
		DNSNames:     names,
		NotBefore:    time.Now().Add(-time.Hour), NotAfter: time.Now().Add(90 * 24 * time.Hour),
		KeyUsage:    x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}, 2048, mid.cert, mid.key)
	if err != nil {
		return tls.Certificate{}, err
	}
	return tls.Certificate{Certificate: [][]byte{leaf.cert.Raw, mid.cert.Raw, cross.cert.Raw}, PrivateKey: leaf.key, Leaf: leaf.cert}, nil
}

type issued struct {
	cert *x509.Certificate
	key  *rsa.PrivateKey
}

// issue makes an RSA key of bits and a certificate from tmpl for it, signed
// by parent's key (nil: its own, for a root).
func issue(tmpl *x509.Certificate, bits int, parent *x509.Certificate, parentKey *rsa.PrivateKey) (issued, error) {
	key, err := rsa.GenerateKey(rand.Reader, bits)
	if err != nil {
		return issued{}, err
	}
	if parentKey == nil {
		parentKey = key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &key.PublicKey, parentKey)
	if err != nil {
		return issued{}, err
	}
	cert, err := x509.ParseCertificate(der)
	return issued{cert, key}, err
}

func caTemplate(cn string, serial int64) *x509.Certificate {
	return &x509.Certificate{
		SerialNumber: big.NewInt(serial),
		Subject:      pkix.Name{CommonName: cn, Organization: []string{"Northwind Lab Trust Services"}, Country: []string{"NL"}},
		NotBefore:    time.Now().Add(-time.Hour), NotAfter: time.Now().Add(365 * 24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true, IsCA: true,
	}
}
