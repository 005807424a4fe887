package camo

import (
	"bytes"
	"context"
	"net"
	"reflect"
	"testing"
	"time"

	utls "github.com/refraction-networking/utls"
	"github.com/xtls/reality"
)

// tlsBufferCaps returns the capacities of the handshake and record read
// buffers of conn (a *utls.Conn or *reality.Conn), and how many bytes the
// read buffer holds; ok is false if the
// library no longer has them under these names, which would silently turn
// releaseHandshake into a no-op.
func tlsBufferCaps(conn any) (hand, raw, pending int, ok bool) {
	s := reflect.ValueOf(conn).Elem()
	h := fieldPtr[bytes.Buffer](s, "hand")
	r := fieldPtr[bytes.Buffer](s, "rawInput")
	if h == nil || r == nil || fieldPtr[bytes.Reader](s, "input") == nil {
		return 0, 0, 0, false
	}
	return h.Cap(), r.Cap(), r.Len(), true
}

func TestHandshakeLeftoversReleased(t *testing.T) {
	srvCheckNoLeaks(t)
	cover := srvStartCover(t, false)
	priv, pub, err := GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	srv, err := NewServer(ServerConfig{PrivateKey: priv, ShortIDs: [][]byte{{9}}, ServerNames: []string{srvCoverName},
		Cover: cover, fallbackIdle: 20 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	type result struct {
		c   net.Conn
		err error
	}
	got := make(chan result, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			got <- result{nil, err}
			return
		}
		tc, err := srv.Handshake(context.Background(), c.(*net.TCPConn))
		got <- result{tc, err}
	}()
	raw, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	cc, err := Client(ctx, raw, ClientConfig{ServerName: srvCoverName, PublicKey: pub, ShortID: []byte{9}})
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	r := <-got
	if r.err != nil {
		t.Fatal(r.err)
	}
	sc := r.c
	defer sc.Close()

	uc := cc.(*utls.UConn)
	if n := len(uc.ConnectionState().PeerCertificates); n != 0 {
		t.Errorf("client keeps %d peer certificates after the handshake, want 0", n)
	}
	if ech := reflect.ValueOf(uc).Elem().FieldByName("ech"); !ech.IsValid() || !ech.IsNil() {
		t.Errorf("client's GREASE ECH extension: field found %v, released %v; want both", ech.IsValid(), ech.IsValid() && ech.IsNil())
	}
	for name, c := range map[string]any{"client": uc.Conn, "server": sc.(*reality.Conn)} {
		hand, raw, pending, ok := tlsBufferCaps(c)
		if !ok {
			t.Errorf("%s %T: hand/rawInput/input fields not found; releaseHandshake has nothing to release", name, c)
			continue
		}
		// Records that arrived with the last handshake flight stay, in a
		// buffer of their size.
		if hand != 0 || raw > pending {
			t.Errorf("%s keeps buffers after the handshake: hand %d bytes, rawInput %d for %d pending; want 0 and no more than pending",
				name, hand, raw, pending)
		}
	}

	// Both ends still work, in both directions.
	msg := []byte("after the release")
	go func() {
		b := make([]byte, len(msg))
		if _, err := sc.Read(b); err == nil {
			sc.Write(b)
		}
	}()
	if err := srvEcho(cc, msg); err != nil {
		t.Fatalf("echo after release: %v", err)
	}
}

func TestReleaseHandshakeFailsSafe(t *testing.T) {
	// Conns of another shape, or fields of other types, are left alone.
	type other struct {
		hand     []byte
		rawInput string
		input    *bytes.Reader
		ech      int
	}
	o := &other{hand: []byte{1}, rawInput: "x", input: bytes.NewReader([]byte{2}), ech: 3}
	for _, c := range []any{nil, 42, other{}, o, (*other)(nil), new(int)} {
		releaseHandshake(c, true)
		releaseClientHello(c)
	}
	if len(o.hand) != 1 || o.rawInput != "x" || o.input.Len() != 1 || o.ech != 3 {
		t.Errorf("releaseHandshake changed fields of an unknown type: %+v", o)
	}
	// A drained but grown read buffer is dropped; pending bytes are kept.
	type conn struct {
		hand     bytes.Buffer
		rawInput bytes.Buffer
		//lint:ignore U1000 reached through reflection, as in crypto/tls's Conn
		input bytes.Reader
	}
	c := &conn{}
	c.hand.Grow(4096)
	c.rawInput.Grow(8192)
	c.rawInput.WriteString("pending record")
	releaseHandshake(c, false)
	if c.hand.Cap() != 0 {
		t.Errorf("hand capacity %d after release, want 0", c.hand.Cap())
	}
	if got := c.rawInput.String(); got != "pending record" || c.rawInput.Cap() > 64 {
		t.Errorf("rawInput after release = %q (capacity %d), want the pending bytes in a small buffer", got, c.rawInput.Cap())
	}
}
