package camo

import (
	"bytes"
	"context"
	"net"
	"testing"
	"time"

	utls "github.com/refraction-networking/utls"
	"github.com/xtls/reality"
)

// tlsBufferCaps returns the capacities of the handshake and record read
// buffers of c, and how many bytes the read buffer holds; ok is false if
// the library no longer has them (TestLibraryInternals says which).
func tlsBufferCaps[T any](c *T, handF privateField[T, bytes.Buffer], rawF privateField[T, bytes.Buffer]) (hand, raw, pending int, ok bool) {
	h, err1 := handF.of(c)
	r, err2 := rawF.of(c)
	if err1 != nil || err2 != nil {
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
	type caps struct {
		hand, raw, pending int
		ok                 bool
	}
	var bufs [2]caps
	bufs[0].hand, bufs[0].raw, bufs[0].pending, bufs[0].ok = tlsBufferCaps(uc.Conn, utlsHand, utlsRawInput)
	bufs[1].hand, bufs[1].raw, bufs[1].pending, bufs[1].ok = tlsBufferCaps(sc.(*reality.Conn), realityHand, realityRawInput)
	for i, name := range []string{"client", "server"} {
		c := bufs[i]
		if !c.ok {
			t.Errorf("%s: hand/rawInput fields not found; nothing is released", name)
			continue
		}
		// Records that arrived with the last handshake flight stay, in a
		// buffer of their size.
		if c.hand != 0 || c.raw > c.pending {
			t.Errorf("%s keeps buffers after the handshake: hand %d bytes, rawInput %d for %d pending; want 0 and no more than pending",
				name, c.hand, c.raw, c.pending)
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

// TestReleaseBuffers: a drained but grown read buffer is dropped, pending
// bytes are kept in a buffer of their size, and nothing is touched while
// plaintext is unread.
func TestReleaseBuffers(t *testing.T) {
	type conn struct {
		hand     bytes.Buffer
		rawInput bytes.Buffer
		input    bytes.Reader
	}
	handF := newPrivateField[conn, bytes.Buffer]("hand")
	inputF := newPrivateField[conn, bytes.Reader]("input")
	rawF := newPrivateField[conn, bytes.Buffer]("rawInput")
	c := &conn{}
	c.hand.Grow(4096)
	c.rawInput.Grow(8192)
	c.rawInput.WriteString("pending record")
	releaseBuffers(c, handF, inputF, rawF)
	if c.hand.Cap() != 0 {
		t.Errorf("hand capacity %d after release, want 0", c.hand.Cap())
	}
	if got := c.rawInput.String(); got != "pending record" || c.rawInput.Cap() > 64 {
		t.Errorf("rawInput after release = %q (capacity %d), want the pending bytes in a small buffer", got, c.rawInput.Cap())
	}

	c = &conn{}
	c.rawInput.Grow(8192)
	c.input.Reset([]byte("unread"))
	releaseBuffers(c, handF, inputF, rawF)
	if c.rawInput.Cap() < 8192 || c.input.Len() != len("unread") {
		t.Errorf("with unread plaintext: rawInput capacity %d, input %d bytes; want both kept", c.rawInput.Cap(), c.input.Len())
	}
}
