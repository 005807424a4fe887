package camo

import (
	"bytes"
	"crypto/x509"
	"fmt"
	"reflect"
	"sync"
	"unsafe"

	utls "github.com/refraction-networking/utls"
	"github.com/xtls/reality"
)

// This file holds every access camo makes to state that utls and reality do
// not offer through their APIs; docs/internals.md lists them with the reasons
// and what happens when a library changes. TestLibraryInternals fails, naming
// the type and field, when an upgrade changes one of them.

// Private fields of established conns, dropped after the handshake to keep
// idle conns small (release.go). Each is looked up by name once and its type
// checked: if a library renamed or retyped one, the accessor returns an
// error, the field is kept (costing memory, nothing else) and
// TestLibraryInternals fails.
var (
	utlsHand              = newPrivateField[utls.Conn, bytes.Buffer]("hand")
	utlsInput             = newPrivateField[utls.Conn, bytes.Reader]("input")
	utlsRawInput          = newPrivateField[utls.Conn, bytes.Buffer]("rawInput")
	utlsPeerCertificates  = newPrivateField[utls.Conn, []*x509.Certificate]("peerCertificates")
	utlsActiveCertHandles = newOpaqueField[utls.Conn]("activeCertHandles", "[]*tls.activeCert")
	realityHand           = newPrivateField[reality.Conn, bytes.Buffer]("hand")
	realityInput          = newPrivateField[reality.Conn, bytes.Reader]("input")
	realityRawInput       = newPrivateField[reality.Conn, bytes.Buffer]("rawInput")
)

// privateField is the unexported field name, of type F, of another module's
// struct T. Its offset is looked up on first use and the field's type
// checked, so a different layout yields an error, never a pointer to the
// wrong memory. (internal/vless has its own copy: camo and vless import
// nothing else of ours.)
type privateField[T, F any] struct {
	offset func() (uintptr, error)
}

func newPrivateField[T, F any](name string) privateField[T, F] {
	want := reflect.TypeFor[F]()
	return privateField[T, F]{offset: sync.OnceValues(func() (uintptr, error) {
		return fieldOffset(reflect.TypeFor[T](), name, want.String(), func(t reflect.Type) bool { return t == want })
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

// opaqueField is an unexported field of T whose type is itself unexported
// (so it cannot be named here); it is recognised by its type's name and
// package, and can only be set to its zero value.
type opaqueField[T any] struct {
	field func() (reflect.StructField, error)
}

// newOpaqueField returns the field name of T whose type prints as typ and
// whose named types all come from T's package.
func newOpaqueField[T any](name, typ string) opaqueField[T] {
	t := reflect.TypeFor[T]()
	return opaqueField[T]{field: sync.OnceValues(func() (reflect.StructField, error) {
		_, err := fieldOffset(t, name, typ+" (declared in "+t.PkgPath()+")", func(ft reflect.Type) bool {
			return ft.String() == typ && namedIn(ft, t.PkgPath())
		})
		if err != nil {
			return reflect.StructField{}, err
		}
		f, _ := t.FieldByName(name)
		return f, nil
	})}
}

func (f opaqueField[T]) check() error {
	_, err := f.field()
	return err
}

// clear sets the field of *c to its zero value.
func (f opaqueField[T]) clear(c *T) error {
	sf, err := f.field()
	if err != nil {
		return err
	}
	reflect.NewAt(sf.Type, unsafe.Add(unsafe.Pointer(c), sf.Offset)).Elem().SetZero()
	return nil
}

// namedIn reports whether the named type at the bottom of t's pointers,
// slices and arrays is declared in package pkg.
func namedIn(t reflect.Type, pkg string) bool {
	for t.Name() == "" && (t.Kind() == reflect.Pointer || t.Kind() == reflect.Slice || t.Kind() == reflect.Array) {
		t = t.Elem()
	}
	return t.PkgPath() == pkg
}

// fieldOffset returns the offset of the field name of struct t, which must
// be t's own (not promoted from an embedded struct) and of a type ok accepts
// (described by want).
func fieldOffset(t reflect.Type, name, want string, ok func(reflect.Type) bool) (uintptr, error) {
	where := t.PkgPath() + "." + t.Name()
	if t.Kind() != reflect.Struct {
		return 0, fmt.Errorf("%s is a %s, want a struct with field %s %s", where, t.Kind(), name, want)
	}
	f, found := t.FieldByName(name)
	switch {
	case !found:
		return 0, fmt.Errorf("%s has no field %s (want type %s): the library's layout changed", where, name, want)
	case len(f.Index) != 1:
		return 0, fmt.Errorf("%s.%s is promoted from an embedded field, want a field of %s itself: the library's layout changed", where, name, where)
	case !ok(f.Type):
		return 0, fmt.Errorf("%s.%s has type %s, want %s: the library's layout changed", where, name, f.Type, want)
	}
	return f.Offset, nil
}

// reality.GlobalPostHandshakeRecordsLens is reality's exported but
// undocumented cache of the sizes of the records a cover sends right after
// its handshake. After an authenticated handshake reality.Server looks up
// recordLensKey(cover, SNI, class of the client's ALPN) and sends fake
// records of those sizes; while the value is not an []int it sleeps 5 s and
// looks again, without end. We fill the cache ourselves (recordsizes.go)
// with the same protocol reality's own detector uses: false while a
// measurement runs, then the sizes ([]int{} for "none"). The helpers below
// are the only code that touches the map.

// recordLensKey is reality's key for the sizes of cover's post-handshake
// records for sni and an ALPN class (alpnClass).
func recordLensKey(cover, sni, class string) string { return cover + " " + sni + " " + class }

// alpnClass is reality's class of a client's ALPN list in recordLensKey
// (reality.Server's own derivation, copied).
func alpnClass(alpn []string) string {
	switch {
	case len(alpn) == 0:
		return "0"
	case alpn[0] == "h2":
		return "2"
	default:
		return "1"
	}
}

// claimRecordLens marks key as being measured; false if it already is, or
// is known.
func claimRecordLens(key string) bool {
	_, loaded := reality.GlobalPostHandshakeRecordsLens.LoadOrStore(key, false)
	return !loaded
}

// storeRecordLens records the measured sizes under key.
func storeRecordLens(key string, lens []int) {
	reality.GlobalPostHandshakeRecordsLens.Store(key, lens)
}

// giveUpRecordLens records "no records" under key unless sizes are known.
func giveUpRecordLens(key string) {
	reality.GlobalPostHandshakeRecordsLens.CompareAndSwap(key, false, []int{})
	reality.GlobalPostHandshakeRecordsLens.LoadOrStore(key, []int{})
}

// recordLens returns the sizes known under key; ok is false while they are
// unknown or being measured.
func recordLens(key string) (lens []int, ok bool) {
	v, _ := reality.GlobalPostHandshakeRecordsLens.Load(key)
	lens, ok = v.([]int)
	return lens, ok
}
