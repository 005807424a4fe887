package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"
)

const (
	modeDownload = 'D'
	modeEcho     = 'E'

	requestLen  = 9
	patternSize = 1 << 20
)

// sink serves the sink protocol described in the package doc.
type sink struct {
	pattern []byte      // patternSize random bytes, written over and over
	tlsConf *tls.Config // for the inner-TLS sink
}

func newSink() (*sink, error) {
	p := make([]byte, patternSize)
	rand.Read(p)
	cert, err := selfSigned("sink.test")
	if err != nil {
		return nil, err
	}
	return &sink{
		pattern: p,
		tlsConf: &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS13},
	}, nil
}

func runSink(args []string) error {
	fs := flag.NewFlagSet("sink", flag.ExitOnError)
	plain := fs.String("plain", "127.0.0.1:0", "plain sink address")
	tlsAddr := fs.String("tls", "127.0.0.1:0", "inner-TLS sink address")
	cover := fs.String("cover", "", "cover site address (TLS 1.3 HTTPS, cert for -sni); empty = none")
	sni := fs.String("sni", "cover.test", "cover site name")
	fs.Parse(args)

	s, err := newSink()
	if err != nil {
		return err
	}
	lp, err := net.Listen("tcp", *plain)
	if err != nil {
		return err
	}
	lt, err := net.Listen("tcp", *tlsAddr)
	if err != nil {
		return err
	}
	go s.serve(lp, false)
	go s.serve(lt, true)
	if *cover != "" {
		lc, err := net.Listen("tcp", *cover)
		if err != nil {
			return err
		}
		go func() {
			if err := serveCover(lc, *sni); err != nil {
				fmt.Fprintln(os.Stderr, "cover:", err)
			}
		}()
	}
	fmt.Printf("sink plain=%s tls=%s\n", lp.Addr(), lt.Addr())
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	<-ctx.Done()
	return nil
}

// serve accepts until l is closed; one goroutine per connection.
func (s *sink) serve(l net.Listener, overTLS bool) error {
	for {
		c, err := l.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return err
			}
			fmt.Fprintln(os.Stderr, "sink: accept:", err)
			time.Sleep(10 * time.Millisecond)
			continue
		}
		go func() {
			defer c.Close()
			if overTLS {
				tc := tls.Server(c, s.tlsConf)
				c.SetDeadline(time.Now().Add(30 * time.Second))
				if err := tc.Handshake(); err != nil {
					return
				}
				c.SetDeadline(time.Time{})
				s.handle(tc)
				tc.Close()
				return
			}
			s.handle(c)
		}()
	}
}

// handle runs one request of the sink protocol on c.
func (s *sink) handle(c net.Conn) {
	var req [requestLen]byte
	c.SetReadDeadline(time.Now().Add(30 * time.Second))
	if _, err := io.ReadFull(c, req[:]); err != nil {
		return
	}
	c.SetReadDeadline(time.Time{})
	switch req[0] {
	case modeDownload:
		n := binary.BigEndian.Uint64(req[1:])
		for n > 0 {
			k := min(n, uint64(len(s.pattern)))
			if _, err := c.Write(s.pattern[:k]); err != nil {
				return
			}
			n -= k
		}
	case modeEcho:
		buf := make([]byte, 4096)
		for {
			k, err := c.Read(buf)
			if k > 0 {
				if _, werr := c.Write(buf[:k]); werr != nil {
					return
				}
			}
			if err != nil {
				return
			}
		}
	}
}

// serveCover runs a small HTTPS site (TLS 1.3, HTTP/1.1 and h2) that REALITY
// servers can borrow handshakes from.
func serveCover(l net.Listener, sni string) error {
	cert, err := selfSigned(sni)
	if err != nil {
		return err
	}
	srv := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/html; charset=utf-8")
			io.WriteString(w, "<!doctype html><title>cover</title><p>An ordinary site.</p>\n")
		}),
		TLSConfig:         &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS13},
		ReadHeaderTimeout: 10 * time.Second,
	}
	return srv.ServeTLS(l, "", "")
}

// selfSigned returns a fresh ECDSA P-256 certificate for name.
func selfSigned(name string) (tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: name},
		DNSNames:     []string{name},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(30 * 24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("self-signed certificate: %w", err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, nil
}
