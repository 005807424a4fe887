package camo

import (
	"bytes"

	utls "github.com/refraction-networking/utls"
	"github.com/xtls/reality"
)

// A proxied connection spends most of its life idle, and a browser keeps
// many open, so what an established TLS conn holds matters. utls and
// reality (like crypto/tls) keep after the handshake buffers and objects
// that only the handshake used: the handshake message buffer and the
// record read buffer, grown to the size of the largest handshake flight,
// and on the client the server's certificate (REALITY's temporary one, which
// Client checked itself). Neither library offers a way to drop them, so the
// functions below do it through the accessors in internals.go. Measured
// with TestIdleConnMemory (Go 1.26, amd64), each saves per idle conn, client
// and server together: the handshake buffer 3.3 KB, the read buffer 4.2 KB
// (while Vision pads), the peer certificate 2.2 KB, of about 11 KB left.
//
// They are safe only on a conn whose handshake is complete and that no other
// goroutine uses yet: Client and Server.Handshake call them just before they
// return the conn. A field the library no longer has is kept (costing
// memory, nothing else); TestLibraryInternals reports it.

// releaseClient drops what a client conn keeps of its handshake, its peer
// certificates included (ConnectionState().PeerCertificates is empty
// afterwards).
func releaseClient(uc *utls.UConn) {
	c := uc.Conn
	releaseBuffers(c, utlsHand, utlsInput, utlsRawInput)
	// The leaf was checked in VerifyPeerCertificate; utls reads the peer
	// certificates only during the handshake (and for session resumption,
	// which Client disables). Dropping the cache handles as well lets utls's
	// certificate cache forget this unique certificate; either alone frees
	// nothing.
	if certs, err := utlsPeerCertificates.of(c); err == nil && utlsActiveCertHandles.check() == nil {
		*certs = nil
		utlsActiveCertHandles.clear(c)
	}
}

// releaseServer drops what a server conn keeps of its handshake.
func releaseServer(c *reality.Conn) {
	releaseBuffers(c, realityHand, realityInput, realityRawInput)
}

// releaseBuffers drops c's handshake message buffer, and replaces its
// record read buffer by a right-sized copy of what it holds (the server may
// already have the client's first data records there), or by nothing. The
// plaintext reader points into the read buffer, so that happens only when
// it is drained.
func releaseBuffers[T any](c *T, handF privateField[T, bytes.Buffer], inputF privateField[T, bytes.Reader], rawF privateField[T, bytes.Buffer]) {
	// Handshake messages are copied out of the records into hand; once the
	// handshake is done it is empty and only a post-handshake message
	// (which our peers do not send) would use it again.
	if hand, err := handF.of(c); err == nil && hand.Len() == 0 {
		*hand = bytes.Buffer{}
	}
	input, err := inputF.of(c)
	if err != nil || input.Len() > 0 {
		return
	}
	raw, err := rawF.of(c)
	if err != nil {
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
