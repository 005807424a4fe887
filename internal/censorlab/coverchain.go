package censorlab

import (
	"crypto"
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
	root, err := rsa.GenerateKey(rand.Reader, 4096)
	if err != nil {
		return tls.Certificate{}, err
	}
	rootTmpl := caTemplate("Northwind Lab Root CA", 1)
	rootDER, err := x509.CreateCertificate(rand.Reader, rootTmpl, rootTmpl, &root.PublicKey, root)
	if err != nil {
		return tls.Certificate{}, err
	}
	rootCert, _ := x509.ParseCertificate(rootDER)
	cross, err := rsa.GenerateKey(rand.Reader, 4096)
	if err != nil {
		return tls.Certificate{}, err
	}
	crossDER, crossCert, err := sign(caTemplate("Northwind Lab Global Root R2", 2), &cross.PublicKey, rootCert, root)
	if err != nil {
		return tls.Certificate{}, err
	}
	mid, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return tls.Certificate{}, err
	}
	midDER, midCert, err := sign(caTemplate("Northwind Lab TLS Issuing CA 07", 3), &mid.PublicKey, crossCert, cross)
	if err != nil {
		return tls.Certificate{}, err
	}
	leaf, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return tls.Certificate{}, err
	}
	names := []string{name}
	for i := range cdnNames {
		names = append(names, fmt.Sprintf("static-%02d.%s", i, name))
	}
	leafTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(4),
		Subject:      pkix.Name{CommonName: name, Organization: []string{"Northwind Ceramics"}, Country: []string{"NL"}},
		DNSNames:     names,
		NotBefore:    time.Now().Add(-time.Hour), NotAfter: time.Now().Add(90 * 24 * time.Hour),
		KeyUsage:    x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	leafDER, leafCert, err := sign(leafTmpl, &leaf.PublicKey, midCert, mid)
	if err != nil {
		return tls.Certificate{}, err
	}
	return tls.Certificate{Certificate: [][]byte{leafDER, midDER, crossDER}, PrivateKey: leaf, Leaf: leafCert}, nil
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

// sign issues tmpl for pub under parent.
func sign(tmpl *x509.Certificate, pub crypto.PublicKey, parent *x509.Certificate, key crypto.Signer) ([]byte, *x509.Certificate, error) {
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, pub, key)
	if err != nil {
		return nil, nil, err
	}
	c, err := x509.ParseCertificate(der)
	return der, c, err
}
