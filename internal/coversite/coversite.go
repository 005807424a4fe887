// Package coversite runs a small, ordinary HTTPS site on a local address: a
// stand-in for the real cover site when Burrow runs without the internet (the
// demo, tests, the censor lab). It speaks TLS 1.3 with X25519 under a
// self-signed certificate for the names it is given, serves a few static
// pages, and answers junk the way Go's net/http does.
package coversite

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
	"log"
	"math/big"
	"net"
	"net/http"
	"time"
)

// Site is a running cover site.
type Site struct {
	// Addr is the host:port it listens on.
	Addr string
	// Cert is its certificate (self-signed), for tests that compare chains.
	Cert *x509.Certificate

	srv *http.Server
	ln  net.Listener
}

// Page is the body of "/".
const Page = `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Northwind Ceramics</title></head>
<body><h1>Northwind Ceramics</h1><p>Hand-thrown stoneware from a small studio. Orders reopen in spring.</p>
<p><a href="/about">About the studio</a></p></body></html>
`

// Start listens on addr ("127.0.0.1:0" for any port) and serves until Close.
func Start(addr string, names ...string) (*Site, error) {
	return StartWith(addr, Options{}, names...)
}

// Options extend a site beyond its few pages (the censor lab's benign
// controls browse a bigger one). The zero value is the plain site.
type Options struct {
	// Handler, when set, serves every path the site's own pages do not.
	Handler http.Handler
	// Cert, when set, is the site's certificate instead of a fresh
	// self-signed one, so that two instances are the same site to a prober.
	Cert *tls.Certificate
}

// StartWith is Start with options.
func StartWith(addr string, opt Options, names ...string) (*Site, error) {
	if len(names) == 0 {
		names = []string{"cover.test"}
	}
	var cert tls.Certificate
	var leaf *x509.Certificate
	var err error
	if opt.Cert != nil {
		cert = *opt.Cert
		leaf, err = x509.ParseCertificate(cert.Certificate[0])
	} else {
		cert, leaf, err = selfSigned(names)
	}
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("coversite: listen %s: %w", addr, err)
	}
	mux := http.NewServeMux()
	if opt.Handler != nil {
		mux.Handle("/", opt.Handler)
	}
	mux.HandleFunc("/{$}", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		fmt.Fprint(w, Page)
	})
	mux.HandleFunc("/about", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		fmt.Fprint(w, "<!doctype html><title>About</title><p>Two potters, one kiln, since 2009.</p>\n")
	})
	srv := &http.Server{
		Handler: mux,
		TLSConfig: &tls.Config{
			Certificates:     []tls.Certificate{cert},
			MinVersion:       tls.VersionTLS12,
			CurvePreferences: []tls.CurveID{tls.X25519MLKEM768, tls.X25519, tls.CurveP256},
			NextProtos:       []string{"h2", "http/1.1"},
		},
		ReadHeaderTimeout: 20 * time.Second,
		IdleTimeout:       60 * time.Second,
		ErrorLog:          log.New(discard{}, "", 0),
	}
	s := &Site{Addr: ln.Addr().String(), Cert: leaf, srv: srv, ln: ln}
	go srv.ServeTLS(ln, "", "")
	return s, nil
}

// Close stops the site.
func (s *Site) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if err := s.srv.Shutdown(ctx); err != nil && !errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	return s.srv.Close()
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }

func selfSigned(names []string) (tls.Certificate, *x509.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, nil, err
	}
	serial, _ := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: names[0], Organization: []string{"Northwind Ceramics"}},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(90 * 24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		DNSNames:     names,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return tls.Certificate{}, nil, err
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return tls.Certificate{}, nil, err
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, leaf, nil
}
