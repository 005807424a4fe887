package vless

import (
	"bytes"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"reflect"
	"sync"
	"unsafe"

	utls "github.com/refraction-networking/utls"
	"github.com/xtls/reality"
)

// ErrVisionTransport is returned by the first Read/Write of a Vision conn whose outer conn is
// not TLS 1.3 of a supported implementation (crypto/tls, utls, REALITY), or whose
// implementation no longer has the read buffers Vision takes over (see tlsInternals).
var ErrVisionTransport = errors.New("vless: " + FlowVision + " needs an outer TLS 1.3 conn (crypto/tls, utls or REALITY)")

// tlsInternals are the parts of the outer TLS conn that Vision's direct copy needs:
//
//   - raw: the conn under TLS, which direct data is written to and read from (NetConn());
//   - input: decrypted plaintext of the current record not yet returned by Read;
//   - rawInput: bytes read from raw but not yet decrypted: after the peer switched to
//     direct, these are the first direct bytes.
//
// crypto/tls.Conn, utls.Conn and reality.Conn (both forks of crypto/tls) offer NetConn but
// no way to take the buffered bytes, so input and rawInput are reached as Xray-core reaches
// them: by their field names, through the accessors below. Each accessor looks its field up
// once and checks its name and type; if a library renamed or retyped one, Vision fails with
// ErrVisionTransport naming the field instead of corrupting memory, and
// TestTLSFieldLayout fails. docs/internals.md lists every such access.
type tlsInternals struct {
	raw      net.Conn
	input    *bytes.Reader
	rawInput *bytes.Buffer
}

// The private fields Vision reads, one accessor each.
var (
	tlsInput        = newPrivateField[tls.Conn, bytes.Reader]("input")
	tlsRawInput     = newPrivateField[tls.Conn, bytes.Buffer]("rawInput")
	utlsInput       = newPrivateField[utls.Conn, bytes.Reader]("input")
	utlsRawInput    = newPrivateField[utls.Conn, bytes.Buffer]("rawInput")
	realityInput    = newPrivateField[reality.Conn, bytes.Reader]("input")
	realityRawInput = newPrivateField[reality.Conn, bytes.Buffer]("rawInput")
)

// visionOuter is implemented by this package's test doubles of an outer TLS conn; the
// unexported method keeps every other type out.
type visionOuter interface {
	visionInternals() (*tlsInternals, error)
}

// findTLSInternals returns the internals of c, which must be a *tls.Conn, *utls.UConn,
// *utls.Conn or *reality.Conn that negotiated TLS 1.3, as Xray requires.
func findTLSInternals(c net.Conn) (*tlsInternals, error) {
	var (
		version uint16
		tin     = &tlsInternals{}
		err     error
	)
	switch tc := c.(type) {
	case visionOuter:
		return tc.visionInternals()
	case *tls.Conn:
		version, tin.raw = tc.ConnectionState().Version, tc.NetConn()
		tin.input, tin.rawInput, err = readBuffers(tc, tlsInput, tlsRawInput)
	case *utls.UConn:
		version, tin.raw = tc.ConnectionState().Version, tc.NetConn()
		tin.input, tin.rawInput, err = readBuffers(tc.Conn, utlsInput, utlsRawInput)
	case *utls.Conn:
		version, tin.raw = tc.ConnectionState().Version, tc.NetConn()
		tin.input, tin.rawInput, err = readBuffers(tc, utlsInput, utlsRawInput)
	case *reality.Conn:
		version, tin.raw = tc.ConnectionState().Version, tc.NetConn()
		tin.input, tin.rawInput, err = readBuffers(tc, realityInput, realityRawInput)
	default:
		return nil, fmt.Errorf("%w: %T", ErrVisionTransport, c)
	}
	switch {
	case err != nil:
		return nil, fmt.Errorf("%w: %w", ErrVisionTransport, err)
	case version != tls.VersionTLS13:
		return nil, fmt.Errorf("%w: outer TLS version %#04x", ErrVisionTransport, version)
	case tin.raw == nil:
		return nil, fmt.Errorf("%w: %T has no underlying conn", ErrVisionTransport, c)
	}
	return tin, nil
}

// readBuffers returns c's input and rawInput fields.
func readBuffers[T any](c *T, input privateField[T, bytes.Reader], rawInput privateField[T, bytes.Buffer]) (*bytes.Reader, *bytes.Buffer, error) {
	in, err := input.of(c)
	if err != nil {
		return nil, nil, err
	}
	raw, err := rawInput.of(c)
	if err != nil {
		return nil, nil, err
	}
	return in, raw, nil
}

// privateField is the unexported field name, of type F, of another module's struct T.
// Its offset is looked up by name on first use and the field's type checked, so a
// different layout yields an error, never a pointer to the wrong memory.
type privateField[T, F any] struct {
	offset func() (uintptr, error)
}

func newPrivateField[T, F any](name string) privateField[T, F] {
	return privateField[T, F]{offset: sync.OnceValues(func() (uintptr, error) {
		return fieldOffset(reflect.TypeFor[T](), name, reflect.TypeFor[F]())
	})}
}

// check reports whether T still has the field, with type F.
func (f privateField[T, F]) check() error {
	_, err := f.offset()
	return err
}

// of returns a pointer to the field in *c.
func (f privateField[T, F]) of(c *T) (*F, error) {
	off, err := f.offset()
	if err != nil {
		return nil, err
	}
	return (*F)(unsafe.Add(unsafe.Pointer(c), off)), nil
}

// fieldOffset returns the offset of the field name of struct t, which must be t's own
// (not promoted from an embedded struct) and of type want.
func fieldOffset(t reflect.Type, name string, want reflect.Type) (uintptr, error) {
	where := t.PkgPath() + "." + t.Name()
	if t.Kind() != reflect.Struct {
		return 0, fmt.Errorf("%s is a %s, want a struct with field %s %s", where, t.Kind(), name, want)
	}
	f, ok := t.FieldByName(name)
	switch {
	case !ok:
		return 0, fmt.Errorf("%s has no field %s (want type %s): the library's layout changed", where, name, want)
	case len(f.Index) != 1:
		return 0, fmt.Errorf("%s.%s is promoted from an embedded field, want a field of %s itself: the library's layout changed", where, name, where)
	case f.Type != want:
		return 0, fmt.Errorf("%s.%s has type %s, want %s: the library's layout changed", where, name, f.Type, want)
	}
	return f.Offset, nil
}
