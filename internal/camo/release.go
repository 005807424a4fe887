package camo

import (
	"bytes"
	"reflect"
	"unsafe"
)

// A proxied connection spends most of its life idle, and a browser keeps
// many open, so what an established TLS conn holds matters. utls and
// reality (like crypto/tls) keep after the handshake buffers and objects
// that only the handshake used: the handshake message buffer and the
// record read buffer, grown to the size of the largest handshake flight,
// and on the client the server's certificate (REALITY's temporary one, which
// Client checked itself) and the GREASE ECH extension of the ClientHello.
// Neither library offers a way to drop them, so releaseHandshake does it by
// name through reflection, the way internal/vless reaches the read buffers
// for Vision.
//
// It is safe only on a conn whose handshake is complete and that no other
// goroutine uses yet: Client and Server.Handshake call it just before they
// return the conn. Each field is checked for its name and type first; a
// library that renamed or retyped one keeps it (costing memory, nothing
// else).

// releaseHandshake drops what conn, a pointer to a utls.Conn or reality.Conn
// struct, keeps of its handshake. With client set it also drops the peer
// certificates (ConnectionState().PeerCertificates is empty afterwards).
func releaseHandshake(conn any, client bool) {
	v := reflect.ValueOf(conn)
	if v.Kind() != reflect.Pointer || v.IsNil() || v.Elem().Kind() != reflect.Struct {
		return
	}
	s := v.Elem()
	// Handshake messages are copied out of the records into hand; once the
	// handshake is done it is empty and only a post-handshake message
	// (which our peers do not send) would use it again.
	if hand := fieldPtr[bytes.Buffer](s, "hand"); hand != nil && hand.Len() == 0 {
		*hand = bytes.Buffer{}
	}
	releaseReadBuffer(s)
	if client {
		// The leaf was checked in VerifyPeerCertificate; utls reads the
		// peer certificates only during the handshake (and for session
		// resumption, which Client disables). Dropping the cache handles
		// lets utls's certificate cache forget this unique certificate.
		zeroField(s, "peerCertificates", reflect.Slice)
		zeroField(s, "activeCertHandles", reflect.Slice)
	}
}

// releaseReadBuffer replaces the record read buffer by a right-sized copy
// of what it holds (the server may already have the client's first data
// records there), or by nothing. The plaintext reader points into that
// buffer, so this happens only when it is drained.
func releaseReadBuffer(s reflect.Value) {
	input := fieldPtr[bytes.Reader](s, "input")
	raw := fieldPtr[bytes.Buffer](s, "rawInput")
	if input == nil || raw == nil || input.Len() > 0 {
		return
	}
	*input = bytes.Reader{}
	if raw.Len() == 0 {
		*raw = bytes.Buffer{}
		return
	}
	if raw.Cap() > 2*raw.Len() {
		*raw = *bytes.NewBuffer(bytes.Clone(raw.Bytes()))
	}
}

// releaseClientHello drops the GREASE ECH extension the ClientHello spec
// installed in u (a *utls.UConn; utls only ever writes the field back).
func releaseClientHello(u any) {
	v := reflect.ValueOf(u)
	if v.Kind() != reflect.Pointer || v.IsNil() || v.Elem().Kind() != reflect.Struct {
		return
	}
	zeroField(v.Elem(), "ech", reflect.Interface)
}

// fieldPtr returns a pointer to the field name of the addressable struct s
// if it has type T, else nil.
func fieldPtr[T any](s reflect.Value, name string) *T {
	f, ok := s.Type().FieldByName(name)
	if !ok || f.Type != reflect.TypeFor[T]() || len(f.Index) != 1 {
		return nil
	}
	return (*T)(unsafe.Add(unsafe.Pointer(s.UnsafeAddr()), f.Offset))
}

// zeroField sets the field name of the addressable struct s to its zero
// value if it is of kind k.
func zeroField(s reflect.Value, name string, k reflect.Kind) {
	f, ok := s.Type().FieldByName(name)
	if !ok || f.Type.Kind() != k || len(f.Index) != 1 {
		return
	}
	reflect.NewAt(f.Type, unsafe.Add(unsafe.Pointer(s.UnsafeAddr()), f.Offset)).Elem().SetZero()
}
