package vless

import (
	"errors"
	"fmt"
	"io"
)

// Refusal is why a Burrow server refused a request whose REALITY handshake succeeded: the
// user is unknown, revoked, expired or over quota. It travels in the response header's
// addons as protobuf field RefusalField (varint), which Xray-core's clients skip as an
// unknown field: to them the refused connection ends right after an ordinary response
// header, as if the destination had closed it. Xray-core's servers never send it.
//
//	00 03 c0 3e 04, then close      version 0, 3 bytes of addons: field 1000, varint 4 (quota)
type Refusal uint32

// RefusalField is the protobuf field number of the refusal reason in the response addons.
// Xray-core's Addons message uses fields 1 and 2; 1000 stays clear of its future ones.
const RefusalField = 1000

// Refusal reasons. Zero is no refusal.
const (
	RefusedUnknownUser Refusal = 1 // the link's key is not the server's (rotated or removed)
	RefusedRevoked     Refusal = 2
	RefusedExpired     Refusal = 3
	RefusedQuota       Refusal = 4 // the user's traffic quota is used up
)

// String says what the user of the refused link should know.
func (r Refusal) String() string {
	switch r {
	case RefusedUnknownUser:
		return "this link's key is unknown to the server (rotated or removed); ask for a new link"
	case RefusedRevoked:
		return "access revoked"
	case RefusedExpired:
		return "access expired"
	case RefusedQuota:
		return "quota used up"
	}
	return fmt.Sprintf("refusal %d", uint32(r))
}

// ErrRefused matches every *RefusedError (errors.Is).
var ErrRefused = errors.New("vless: refused by the server")

// RefusedError is what a client conn's Read returns when the server's response header
// carries a refusal; the server closes the connection behind it.
type RefusedError struct{ Reason Refusal }

func (e *RefusedError) Error() string { return "server refused the connection: " + e.Reason.String() }

// Is makes errors.Is(err, ErrRefused) true.
func (e *RefusedError) Is(target error) bool { return target == ErrRefused }

// SOCKSReply is the SOCKS5 reply for a refused connection: "connection not allowed by
// ruleset" (a real reply, rather than a success followed by an empty stream).
func (e *RefusedError) SOCKSReply() byte { return 0x02 }

// HTTPStatus is the HTTP proxy's answer for a refused connection: 403 Forbidden.
func (e *RefusedError) HTTPStatus() int { return 403 }

// WriteRefusal writes the response header of a refused request (version 0, addons holding
// reason) to w. The caller closes the connection after it.
func WriteRefusal(w io.Writer, reason Refusal) error {
	b := appendRefusal([]byte{Version, 0}, reason)
	b[1] = byte(len(b) - 2)
	_, err := w.Write(b)
	return err
}

// appendRefusal appends protobuf field RefusalField (varint) holding r to b.
func appendRefusal(b []byte, r Refusal) []byte {
	b = appendUvarint(b, RefusalField<<3) // wire type 0 (varint) in the low 3 bits
	return appendUvarint(b, uint64(r))
}

func appendUvarint(b []byte, v uint64) []byte {
	for v >= 0x80 {
		b = append(b, byte(v)|0x80)
		v >>= 7
	}
	return append(b, byte(v))
}

// StatusDest is the destination of a status request: a TCP request (any flow) by which a
// Burrow client that was refused asks whether the server accepts its link again. A Burrow
// server answers it with a bare response header (accepted) or a refusal, then closes; it
// dials nothing. No real destination has port 0, nor a name under .invalid (RFC 6761).
var StatusDest = Addr{Host: "status.burrow.invalid"}

// IsStatus reports whether req is a status request.
func (r *Request) IsStatus() bool {
	return r.Command == CommandTCP && r.Dest.Host == StatusDest.Host && r.Dest.Port == StatusDest.Port
}

// WriteAccepted writes the response header of an accepted request that carries no payload:
// the answer to a status request.
func WriteAccepted(w io.Writer) error {
	_, err := w.Write(responseHeader)
	return err
}
