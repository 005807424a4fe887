package vless

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"reflect"
	"unsafe"
)

// ErrVisionTransport is returned by the first Read/Write of a Vision conn whose outer conn is
// not TLS 1.3 of a supported implementation (crypto/tls, utls, REALITY).
var ErrVisionTransport = errors.New("vless: " + FlowVision + " needs an outer TLS 1.3 conn (crypto/tls, utls or REALITY)")

// tlsInternals are the parts of a crypto/tls-shaped Conn that Vision's direct copy needs:
//
//   - raw: the conn under TLS (field "conn"), which direct data is written to and read from;
//   - input: decrypted plaintext of the current record not yet returned by Read (field "input");
//   - rawInput: bytes read from raw but not yet decrypted (field "rawInput") — after the peer
//     switched to direct, these are the first direct bytes.
//
// crypto/tls.Conn, utls.Conn (embedded as *Conn in utls.UConn) and reality.Conn share this
// layout. Go offers no API for the last two, so, like Xray-core, we find the fields by name
// with reflect and address them with unsafe offsets. The field types are checked, so a
// library that renames or retypes them makes Vision fail with ErrVisionTransport instead of
// corrupting memory. This package imports none of those modules.
type tlsInternals struct {
	raw      net.Conn
	input    *bytes.Reader
	rawInput *bytes.Buffer
}

var (
	typeBytesReader = reflect.TypeFor[bytes.Reader]()
	typeBytesBuffer = reflect.TypeFor[bytes.Buffer]()
	typeNetConn     = reflect.TypeFor[net.Conn]()
)

// findTLSInternals walks c (a pointer to a TLS conn struct, or to a struct embedding one,
// e.g. *utls.UConn) and returns its internals. It also insists on TLS 1.3 when c reports a
// ConnectionState with a Version field, as Xray does.
func findTLSInternals(c net.Conn) (*tlsInternals, error) {
	if v, ok := tlsVersion(c); ok && v != 0x0304 {
		return nil, fmt.Errorf("%w: outer TLS version %#04x", ErrVisionTransport, v)
	}
	v := reflect.ValueOf(c)
	for depth := 0; depth < 4; depth++ {
		if v.Kind() == reflect.Interface {
			v = v.Elem()
		}
		if v.Kind() != reflect.Pointer || v.IsNil() || v.Elem().Kind() != reflect.Struct {
			break
		}
		base := v.UnsafePointer()
		t := v.Elem().Type()
		var in, rin, cf *reflect.StructField
		var embedded *reflect.StructField
		for i := 0; i < t.NumField(); i++ {
			f := t.Field(i)
			switch {
			case f.Name == "input" && f.Type == typeBytesReader:
				in = &f
			case f.Name == "rawInput" && f.Type == typeBytesBuffer:
				rin = &f
			case f.Name == "conn" && f.Type == typeNetConn:
				cf = &f
			case f.Anonymous && embedded == nil &&
				(f.Type.Kind() == reflect.Interface || f.Type.Kind() == reflect.Pointer && f.Type.Elem().Kind() == reflect.Struct):
				embedded = &f
			}
		}
		if in != nil && rin != nil && cf != nil {
			raw := *(*net.Conn)(unsafe.Add(base, cf.Offset))
			if raw == nil {
				break
			}
			return &tlsInternals{
				raw:      raw,
				input:    (*bytes.Reader)(unsafe.Add(base, in.Offset)),
				rawInput: (*bytes.Buffer)(unsafe.Add(base, rin.Offset)),
			}, nil
		}
		if embedded == nil {
			break
		}
		// reflect.NewAt gives a readable view of an unexported embedded field.
		v = reflect.NewAt(embedded.Type, unsafe.Add(base, embedded.Offset)).Elem()
	}
	return nil, fmt.Errorf("%w: %T", ErrVisionTransport, c)
}

// tlsVersion calls c.ConnectionState().Version if c has such a method (the three TLS
// implementations each have their own ConnectionState type).
func tlsVersion(c net.Conn) (uint16, bool) {
	m := reflect.ValueOf(c).MethodByName("ConnectionState")
	if !m.IsValid() || m.Type().NumIn() != 0 || m.Type().NumOut() != 1 {
		return 0, false
	}
	cs := m.Call(nil)[0]
	if cs.Kind() != reflect.Struct {
		return 0, false
	}
	f := cs.FieldByName("Version")
	if !f.IsValid() || f.Kind() != reflect.Uint16 {
		return 0, false
	}
	return uint16(f.Uint()), true
}
