package xhttp

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"io"
	"math/big"
	"net"
	"testing"
	"time"
)

// TestFinConnWriteInFlight: closing a pooled TLS connection whose peer
// stopped reading, while a write is stuck in it, returns (the write is
// ended by a deadline) instead of waiting for the write forever: a TLS
// CloseWrite takes the lock the stuck write holds.
func TestFinConnWriteInFlight(t *testing.T) {
	cert := testCert(t)
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	srv := tls.Server(b, &tls.Config{Certificates: []tls.Certificate{cert}})
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
	hc := newFinConn(cli)
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

// tlsPair returns a client and server TLS connection over real TCP.
func tlsPair(t *testing.T) (cli *tls.Conn, srv *tls.Conn) {
	t.Helper()
	cert := testCert(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	a, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	b, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	srv = tls.Server(b, &tls.Config{Certificates: []tls.Certificate{cert}})
	hs := make(chan error, 1)
	go func() { hs <- srv.Handshake() }()
	cli = tls.Client(a, &tls.Config{InsecureSkipVerify: true, ServerName: "x.test"})
	if err := cli.Handshake(); err != nil {
		t.Fatal(err)
	}
	if err := <-hs; err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close(); b.Close() })
	return cli, srv
}

// TestFinConnWaitsForTCPFin: the server's close_notify ends the TLS stream,
// but the connection is gone for an observer only when the server's TCP
// FIN has come too; through a relay the two travel apart. Gone must wait
// for the FIN (a connection freed at the close_notify let the lab count 5
// connections with a cap of 4 through a relay).
func TestFinConnWaitsForTCPFin(t *testing.T) {
	cli, srv := tlsPair(t)
	fc := newFinConn(cli)
	fc.Close() // our close_notify and FIN
	if _, err := io.ReadAll(srv); err != nil {
		t.Fatalf("server read: %v", err)
	}
	srv.CloseWrite() // the server's close_notify, its FIN held back
	if _, err := io.ReadAll(fc); err != nil {
		t.Fatalf("client read: %v", err)
	}
	select {
	case <-fc.Gone():
		t.Fatal("gone at the server's close_notify, before its TCP FIN")
	default:
	}
	srv.NetConn().(*net.TCPConn).CloseWrite() // now the FIN
	select {
	case <-fc.Gone():
	case <-time.After(finWait / 2):
		t.Fatal("not gone after the server's FIN")
	}
}

// testCert returns a self-signed certificate for x.test.
func testCert(t *testing.T) tls.Certificate {
	t.Helper()
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
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}
