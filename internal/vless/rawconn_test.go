package vless

import (
	"bytes"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestTLSFieldLayout is the guard on the private fields Vision reads (docs/internals.md): it
// fails, naming the library's type, the field and the type Vision expects, as soon as an
// upgrade of Go, utls or reality renames, retypes or moves one.
func TestTLSFieldLayout(t *testing.T) {
	for _, f := range []interface{ check() error }{
		tlsInput, tlsRawInput, utlsInput, utlsRawInput, realityInput, realityRawInput,
	} {
		if err := f.check(); err != nil {
			t.Errorf("%v; Vision's direct copy no longer works over this library (see docs/internals.md)", err)
		}
	}
}

// TestFieldOffsetCatchesLayoutChanges checks the checker itself on structs shaped like a
// library after a change.
func TestFieldOffsetCatchesLayoutChanges(t *testing.T) {
	// Structs shaped like a library's conn before and after a change; their fields are
	// read only through the checker.
	//lint:ignore U1000 read through reflection
	type conn struct{ input bytes.Reader }
	//lint:ignore U1000 read through reflection
	type renamed struct{ in bytes.Reader }
	//lint:ignore U1000 read through reflection
	type retyped struct{ input *bytes.Reader }
	//lint:ignore U1000 read through reflection
	type inner struct{ input bytes.Reader }
	//lint:ignore U1000 read through reflection
	type promoted struct{ inner }
	readerType := "bytes.Reader"
	for _, tt := range []struct {
		name string
		err  error
		want string // in the error; "" for no error
	}{
		{"same layout", newPrivateField[conn, bytes.Reader]("input").check(), ""},
		{"renamed", newPrivateField[renamed, bytes.Reader]("input").check(), "vless.renamed has no field input (want type " + readerType + ")"},
		{"retyped", newPrivateField[retyped, bytes.Reader]("input").check(), "vless.retyped.input has type *bytes.Reader, want " + readerType},
		{"promoted", newPrivateField[promoted, bytes.Reader]("input").check(), "vless.promoted.input is promoted from an embedded field"},
		{"not a struct", newPrivateField[int, bytes.Reader]("input").check(), ".int is a int, want a struct"},
	} {
		switch {
		case tt.want == "" && tt.err != nil:
			t.Errorf("%s: check() = %v, want nil", tt.name, tt.err)
		case tt.want != "" && (tt.err == nil || !strings.Contains(tt.err.Error(), tt.want)):
			t.Errorf("%s: check() = %v, want an error containing %q", tt.name, tt.err, tt.want)
		}
	}

	// An accessor of a changed layout hands out an error, not a pointer.
	if p, err := newPrivateField[retyped, bytes.Reader]("input").of(&retyped{}); p != nil || err == nil {
		t.Errorf("of(retyped) = %v, %v; want nil and an error", p, err)
	}
	c := &conn{}
	c.input.Reset([]byte("abc"))
	p, err := newPrivateField[conn, bytes.Reader]("input").of(c)
	if err != nil || p != &c.input {
		t.Errorf("of(conn) = %p, %v; want %p (&c.input), nil", p, err, &c.input)
	}
}

// TestTLSInternalsOnRealConns reads the accessors on a real TLS 1.3 conn of each
// implementation over loopback. The server sends a record and then, on the raw conn, bytes
// as Vision's direct copy does, both in one TCP segment, so the client's TLS conn reads the
// direct bytes into rawInput with the record. After a 2-byte Read, input must hold the rest
// of the record's plaintext, and rawInput followed by raw must yield the direct bytes
// exactly: what Vision delivers when the peer goes direct.
func TestTLSInternalsOnRealConns(t *testing.T) {
	for _, kind := range []string{"crypto/tls", "utls", "reality"} {
		t.Run(kind, func(t *testing.T) {
			var held *heldConn
			co, so := outerPairWrapped(t, kind, serverTLSConfig(t), func(c net.Conn) net.Conn {
				held = &heldConn{Conn: c}
				return held
			})
			direct := []byte("direct bytes after the last record")
			held.hold()
			if _, err := so.Write([]byte("hello")); err != nil {
				t.Fatal(err)
			}
			if _, err := so.(*tls.Conn).NetConn().Write(direct); err != nil {
				t.Fatal(err)
			}
			if err := held.flush(); err != nil {
				t.Fatal(err)
			}

			tin, err := findTLSInternals(co)
			if err != nil {
				t.Fatalf("findTLSInternals(%T) = %v", co, err)
			}
			if _, ok := tin.raw.(*net.TCPConn); !ok || tin.raw.LocalAddr().String() != co.LocalAddr().String() {
				t.Errorf("raw = %T at %v, want the *net.TCPConn at %v", tin.raw, tin.raw.LocalAddr(), co.LocalAddr())
			}
			co.SetReadDeadline(time.Now().Add(10 * time.Second)) // a wrong rawInput must not hang the test
			b := make([]byte, 2)
			if _, err := io.ReadFull(co, b); err != nil || string(b) != "he" {
				t.Fatalf("Read = %q, %v; want \"he\"", b, err)
			}
			if rest, _ := io.ReadAll(tin.input); string(rest) != "llo" {
				t.Errorf("input holds %q after reading 2 of 5 bytes, want \"llo\"", rest)
			}
			got := bytes.Clone(tin.rawInput.Bytes())
			if len(got) > len(direct) {
				t.Fatalf("rawInput holds %q, more than the direct bytes %q", got, direct)
			}
			rest := make([]byte, len(direct)-len(got))
			if _, err := io.ReadFull(tin.raw, rest); err != nil {
				t.Fatalf("rawInput holds %q; reading the rest of %q from the raw conn: %v", got, direct, err)
			}
			if got = append(got, rest...); !bytes.Equal(got, direct) {
				t.Errorf("rawInput+raw = %q, want %q", got, direct)
			}
		})
	}
}

// heldConn keeps what is written to it between hold and flush, and writes it in one piece.
type heldConn struct {
	net.Conn
	mu      sync.Mutex
	holding bool
	buf     []byte
}

func (c *heldConn) hold() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.holding = true
}

func (c *heldConn) flush() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.holding = false
	_, err := c.Conn.Write(c.buf)
	c.buf = nil
	return err
}

func (c *heldConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.holding {
		c.buf = append(c.buf, p...)
		return len(p), nil
	}
	return c.Conn.Write(p)
}

func TestFindTLSInternalsRefusesOtherConns(t *testing.T) {
	p1, p2 := net.Pipe()
	defer p1.Close()
	defer p2.Close()
	for _, c := range []net.Conn{p1, struct{ *tls.Conn }{}} {
		if _, err := findTLSInternals(c); !errors.Is(err, ErrVisionTransport) {
			t.Errorf("findTLSInternals(%T) = %v, want ErrVisionTransport", c, err)
		}
	}
}
