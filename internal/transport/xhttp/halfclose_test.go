package xhttp

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"math/big"
	"net"
	"testing"
	"time"
)

// TestHalfClosingWriteInFlight: closing a pooled TLS connection whose peer
// stopped reading, while a write is stuck in it, returns (the write is
// ended by a deadline) instead of waiting for the write forever: a TLS
// CloseWrite takes the lock the stuck write holds.
func TestHalfClosingWriteInFlight(t *testing.T) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), DNSNames: []string{"x.test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	srv := tls.Server(b, &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}})
	hs := make(chan error, 1)
	go func() { hs <- srv.Handshake() }()
	cli := tls.Client(a, &tls.Config{InsecureSkipVerify: true, ServerName: "x.test"})
	if err := cli.Handshake(); err != nil {
		t.Fatal(err)
	}
	if err := <-hs; err != nil {
		t.Fatal(err)
	}
	// The server reads nothing more: a write of 1 MiB blocks in the pipe.
	hc := newHalfClosing(cli)
	writing := make(chan struct{})
	wrote := make(chan error, 1)
	go func() {
		close(writing)
		_, err := hc.Write(make([]byte, 1<<20))
		wrote <- err
	}()
	<-writing
	closed := make(chan struct{})
	go func() {
		hc.Close()
		hc.Close()
		close(closed)
	}()
	select {
	case <-closed:
	case <-time.After(30 * time.Second):
		t.Fatal("Close waited for a write stuck in a connection whose peer stopped reading")
	}
	select {
	case <-wrote:
	case <-time.After(30 * time.Second):
		t.Fatal("the stuck write did not end after Close")
	}
}
