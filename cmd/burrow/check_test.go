package main

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"math/big"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/burrow-vpn/burrow/internal/links"
)

func TestCheckCommand(t *testing.T) {
	d := deploy(t, false)
	link, err := links.ParseVLESS(d.link)
	if err != nil {
		t.Fatal(err)
	}
	server := net.JoinHostPort(link.Host, strconv.Itoa(int(link.Port)))
	var out bytes.Buffer
	err = run(context.Background(), []string{"check", server, "--sni", "cover.test", "--cover", d.cover.Addr, "--timeout", "1500ms"}, &out, &out)
	if err != nil {
		t.Fatalf("burrow check against our server: %v; want success\n%s", err, out.String())
	}
	if !strings.Contains(out.String(), "looks like its cover") {
		t.Errorf("burrow check output lacks the verdict:\n%s", out.String())
	}

	// A plain crypto/tls server with its own certificate is flagged.
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), DNSNames: []string{"cover.test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				c.SetDeadline(time.Now().Add(5 * time.Second))
				c.Read(make([]byte, 1024))
			}()
		}
	}()
	out.Reset()
	err = run(context.Background(), []string{"check", ln.Addr().String(), "--sni", "cover.test", "--cover", d.cover.Addr, "--timeout", "1500ms"}, &out, &out)
	var ee exitError
	if !errors.As(err, &ee) || ee.code != 1 {
		t.Fatalf("burrow check against a plain TLS server: %v, want exit status 1\n%s", err, out.String())
	}
	if !strings.Contains(out.String(), "[FLAG]") || !strings.Contains(out.String(), "advice:") {
		t.Errorf("burrow check output lacks a flagged finding with advice:\n%s", out.String())
	}
}
