package camo

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestLibraryInternals is the guard on the private fields camo reaches
// (internals.go, docs/internals.md): it fails, naming the library's type,
// the field and the type camo expects, as soon as an upgrade of utls or
// reality renames, retypes or moves one.
func TestLibraryInternals(t *testing.T) {
	for _, f := range []interface{ check() error }{
		utlsHand, utlsInput, utlsRawInput, utlsPeerCertificates, utlsActiveCertHandles,
		realityHand, realityInput, realityRawInput,
	} {
		if err := f.check(); err != nil {
			t.Errorf("%v; idle conns keep that field's memory (see docs/internals.md)", err)
		}
	}
}

// activeCert stands in for utls's unexported type of the same name.
type activeCert struct{}

// TestFieldCheckerCatchesLayoutChanges checks the checker itself on structs
// shaped like a library after a change.
func TestFieldCheckerCatchesLayoutChanges(t *testing.T) {
	type conn struct {
		hand    bytes.Buffer
		handles []*activeCert
	}
	// Structs shaped like a library's conn after a change; their fields are
	// read only through the checker.
	//lint:ignore U1000 read through reflection
	type renamed struct{ handBuf bytes.Buffer }
	type retyped struct {
		hand    []byte
		handles []*int
	}
	//lint:ignore U1000 read through reflection
	type inner struct{ hand bytes.Buffer }
	//lint:ignore U1000 read through reflection
	type promoted struct{ inner }
	for _, tt := range []struct {
		name string
		err  error
		want string // in the error; "" for no error
	}{
		{"same layout", newPrivateField[conn, bytes.Buffer]("hand").check(), ""},
		{"same opaque", newOpaqueField[conn]("handles", "[]*camo.activeCert").check(), ""},
		{"renamed", newPrivateField[renamed, bytes.Buffer]("hand").check(), "camo.renamed has no field hand (want type bytes.Buffer)"},
		{"retyped", newPrivateField[retyped, bytes.Buffer]("hand").check(), "camo.retyped.hand has type []uint8, want bytes.Buffer"},
		{"promoted", newPrivateField[promoted, bytes.Buffer]("hand").check(), "camo.promoted.hand is promoted from an embedded field"},
		{"opaque retyped", newOpaqueField[retyped]("handles", "[]*camo.activeCert").check(), "camo.retyped.handles has type []*int, want []*camo.activeCert"},
		{"opaque renamed", newOpaqueField[renamed]("handles", "[]*camo.activeCert").check(), "camo.renamed has no field handles"},
		{"opaque from another package", newOpaqueField[conn]("hand", "bytes.Buffer").check(), "camo.conn.hand has type bytes.Buffer, want bytes.Buffer (declared in github.com/burrow-vpn/burrow/internal/camo)"},
	} {
		switch {
		case tt.want == "" && tt.err != nil:
			t.Errorf("%s: check() = %v, want nil", tt.name, tt.err)
		case tt.want != "" && (tt.err == nil || !strings.Contains(tt.err.Error(), tt.want)):
			t.Errorf("%s: check() = %v, want an error containing %q", tt.name, tt.err, tt.want)
		}
	}

	// Accessors of a changed layout hand out errors, not pointers, and
	// leave the struct alone.
	r := &retyped{hand: []byte{1}, handles: []*int{new(int)}}
	if p, err := newPrivateField[retyped, bytes.Buffer]("hand").of(r); p != nil || err == nil {
		t.Errorf("of(retyped) = %v, %v; want nil and an error", p, err)
	}
	if err := newOpaqueField[retyped]("handles", "[]*camo.activeCert").clear(r); err == nil || len(r.handles) != 1 {
		t.Errorf("clear(retyped) = %v, handles %v; want an error and the handles kept", err, r.handles)
	}
	c := &conn{handles: []*activeCert{{}}}
	if err := newOpaqueField[conn]("handles", "[]*camo.activeCert").clear(c); err != nil || c.handles != nil {
		t.Errorf("clear(conn) = %v, handles %v; want nil and no handles", err, c.handles)
	}
	if p, err := newPrivateField[conn, bytes.Buffer]("hand").of(c); err != nil || p != &c.hand {
		t.Errorf("of(conn) = %p, %v; want %p (&c.hand), nil", p, err, &c.hand)
	}
}

// TestRecordLensReadByReality is the guard on reality's record-size cache:
// sizes stored under recordLensKey must come back from reality.Server as
// fake records of exactly those sizes after an authenticated handshake. If
// reality changed the key or the value it expects, it would not find them
// and would sleep in its handshake, so the echo below fails.
func TestRecordLensReadByReality(t *testing.T) {
	srvCheckNoLeaks(t)
	cover := srvStartCover(t, false)
	want := []int{777, 1111} // lengths, header included; none of the handshake's
	for _, c := range alpnClasses {
		key := recordLensKey(cover, srvCoverName, c.class)
		if !claimRecordLens(key) {
			t.Fatalf("record sizes for %q already claimed", key)
		}
		storeRecordLens(key, want)
	}
	h := srvStart(t, cover)

	raw, err := net.Dial("tcp", h.addr)
	if err != nil {
		t.Fatal(err)
	}
	rec := &readRecorder{Conn: raw}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	tc, err := Client(ctx, rec, ClientConfig{ServerName: srvCoverName, PublicKey: h.pub, ShortID: h.shortID})
	if err != nil {
		raw.Close()
		t.Fatalf("Client = %v", err)
	}
	defer tc.Close()
	if err := srvEcho(tc, []byte("ping")); err != nil {
		t.Fatalf("echo after the handshake = %v: reality.Server did not finish it; does it still read the cover's record sizes under %q with an []int value?",
			err, recordLensKey(cover, srvCoverName, "2"))
	}
	lens, err := recordLengths(rec.bytes())
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for i := range len(lens) - len(want) + 1 {
		found = found || slices.Equal(lens[i:i+len(want)], want)
	}
	if !found {
		t.Errorf("server sent records of lengths %v, want the stored %v among them: reality no longer uses the sizes camo stores", lens, want)
	}
}

// recordLengths returns the lengths, header included, of the TLS records
// that make up b.
func recordLengths(b []byte) ([]int, error) {
	var lens []int
	for len(b) > 0 {
		if len(b) < 5 {
			return lens, fmt.Errorf("%d bytes after records of lengths %v, want a whole record", len(b), lens)
		}
		n := 5 + int(binary.BigEndian.Uint16(b[3:5]))
		if n > len(b) {
			return lens, fmt.Errorf("record of %d bytes with %d left, after records of lengths %v", n, len(b), lens)
		}
		lens, b = append(lens, n), b[n:]
	}
	return lens, nil
}

// readRecorder records everything read from it.
type readRecorder struct {
	net.Conn
	mu   sync.Mutex
	read []byte
}

func (c *readRecorder) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.mu.Lock()
	c.read = append(c.read, p[:n]...)
	c.mu.Unlock()
	return n, err
}

func (c *readRecorder) bytes() []byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	return bytes.Clone(c.read)
}
