// Package tlshello reads and parses a TLS ClientHello from untrusted bytes,
// without answering it. The REALITY server (internal/camo) uses it to decide,
// before anything is sent back, whether a connection is one of our clients or
// must be handed byte for byte to the cover site; the fingerprint functions
// (JA3/JA4) use the same parsed form.
//
// It depends only on golang.org/x/crypto/cryptobyte. It does not validate
// cryptography, negotiate anything or keep state.
//
// Wire format (RFC 8446 §4.1.2). A ClientHello arrives in one or more TLS
// records; the handshake message may be split across records:
//
//	record:    | 0x16 | 0x03 0x01 or 0x03 0x03 | length (2, 1..16384) | fragment ... |
//
//	handshake: | type 0x01 | length (3) | body ...                              |
//
//	body:      | legacy_version (2) | random (32) | session_id_len (1) | session_id (0..32) |
//	           | cipher_suites_len (2) | suites (2 each) | compression_len (1) | methods |
//	           | extensions_len (2) | { type (2) | length (2) | data } ...              |
//
// In Raw (which starts at the handshake type byte) the session ID of a
// 32-byte session ID therefore sits at Raw[39:71]; SessionIDOffset says so
// for every hello.
//
// Parsed extensions:
//
//	0x0000 server_name          | list_len (2) | { name_type (1) | len (2) | name } ...
//	0x000a supported_groups     | len (2) | group (2) ...
//	0x000b ec_point_formats     | len (1) | format (1) ...
//	0x000d signature_algorithms | len (2) | scheme (2) ...
//	0x0010 ALPN                 | len (2) | { len (1) | protocol } ...
//	0x002b supported_versions   | len (1) | version (2) ...
//	0x0033 key_share            | len (2) | { group (2) | len (2) | key_exchange } ...
//
// Other extensions are kept, in wire order, in Extensions only.
package tlshello

import (
	"errors"
	"fmt"

	"golang.org/x/crypto/cryptobyte"
)

// Extension is one ClientHello extension as it appeared on the wire.
type Extension struct {
	Type uint16
	Data []byte // slice into ClientHello.Raw
}

// KeyShare is one entry of the key_share extension.
type KeyShare struct {
	Group uint16
	Data  []byte // slice into ClientHello.Raw
}

// ClientHello is a parsed ClientHello handshake message. All byte slices
// point into Raw; callers that modify Raw see the change in them.
type ClientHello struct {
	Raw                 []byte // the full handshake message (type byte 1 + 3-byte length + body), no record header
	Version             uint16 // legacy_version
	Random              []byte // 32 bytes
	SessionID           []byte // 0..32 bytes (slice into Raw)
	SessionIDOffset     int    // offset of SessionID within Raw
	CipherSuites        []uint16
	CompressionMethods  []byte
	Extensions          []Extension // in wire order
	ServerName          string
	SupportedVersions   []uint16
	SupportedGroups     []uint16
	SignatureAlgorithms []uint16
	ALPN                []string
	KeyShares           []KeyShare
	ECPointFormats      []byte
}

// Extension type codes that Parse understands.
const (
	extServerName          uint16 = 0
	extSupportedGroups     uint16 = 10
	extECPointFormats      uint16 = 11
	extSignatureAlgorithms uint16 = 13
	extALPN                uint16 = 16
	extSupportedVersions   uint16 = 43
	extKeyShare            uint16 = 51
)

const typeClientHello = 1

// ErrMalformed is returned (wrapped) for bytes that are not a well-formed
// ClientHello.
var ErrMalformed = errors.New("tlshello: malformed ClientHello")

func malformed(what string) error {
	return fmt.Errorf("%w: %s", ErrMalformed, what)
}

// Parse parses one ClientHello handshake message (type byte, 3-byte length,
// body; no record header). The length must match len(msg) exactly. Parse
// never panics and never reads beyond msg.
func Parse(msg []byte) (*ClientHello, error) {
	s := cryptobyte.String(msg)
	var typ uint8
	var body cryptobyte.String
	if !s.ReadUint8(&typ) || !s.ReadUint24LengthPrefixed(&body) || !s.Empty() {
		return nil, malformed("handshake header")
	}
	if typ != typeClientHello {
		return nil, malformed(fmt.Sprintf("handshake type %d is not ClientHello", typ))
	}
	h := &ClientHello{Raw: msg}
	var random, sid cryptobyte.String
	if !body.ReadUint16(&h.Version) || !body.ReadBytes((*[]byte)(&random), 32) {
		return nil, malformed("version or random")
	}
	h.Random = random
	if !body.ReadUint8LengthPrefixed(&sid) || len(sid) > 32 {
		return nil, malformed("session id")
	}
	h.SessionID = sid
	h.SessionIDOffset = 4 + 2 + 32 + 1
	var suites cryptobyte.String
	if !body.ReadUint16LengthPrefixed(&suites) || len(suites)%2 != 0 {
		return nil, malformed("cipher suites")
	}
	h.CipherSuites = make([]uint16, 0, len(suites)/2)
	for !suites.Empty() {
		var v uint16
		suites.ReadUint16(&v)
		h.CipherSuites = append(h.CipherSuites, v)
	}
	var comp cryptobyte.String
	if !body.ReadUint8LengthPrefixed(&comp) {
		return nil, malformed("compression methods")
	}
	h.CompressionMethods = comp
	if body.Empty() {
		return h, nil // no extensions at all (TLS 1.0-style hello)
	}
	var exts cryptobyte.String
	if !body.ReadUint16LengthPrefixed(&exts) || !body.Empty() {
		return nil, malformed("extensions block")
	}
	seen := make(map[uint16]bool)
	for !exts.Empty() {
		var typ uint16
		var data cryptobyte.String
		if !exts.ReadUint16(&typ) || !exts.ReadUint16LengthPrefixed(&data) {
			return nil, malformed("extension header")
		}
		if seen[typ] {
			return nil, malformed(fmt.Sprintf("duplicate extension %d", typ))
		}
		seen[typ] = true
		h.Extensions = append(h.Extensions, Extension{Type: typ, Data: data})
		if err := h.parseExtension(typ, data); err != nil {
			return nil, err
		}
	}
	return h, nil
}

func (h *ClientHello) parseExtension(typ uint16, data cryptobyte.String) error {
	var ok bool
	switch typ {
	case extServerName:
		ok = h.parseServerName(data)
	case extSupportedGroups:
		h.SupportedGroups, ok = readUint16List(data)
	case extECPointFormats:
		var l cryptobyte.String
		ok = data.ReadUint8LengthPrefixed(&l) && data.Empty()
		h.ECPointFormats = l
	case extSignatureAlgorithms:
		h.SignatureAlgorithms, ok = readUint16List(data)
	case extALPN:
		ok = h.parseALPN(data)
	case extSupportedVersions:
		var l cryptobyte.String
		ok = data.ReadUint8LengthPrefixed(&l) && data.Empty() && len(l)%2 == 0
		for ok && !l.Empty() {
			var v uint16
			l.ReadUint16(&v)
			h.SupportedVersions = append(h.SupportedVersions, v)
		}
	case extKeyShare:
		ok = h.parseKeyShares(data)
	default:
		return nil
	}
	if !ok {
		return malformed(fmt.Sprintf("extension %d", typ))
	}
	return nil
}

func readUint16List(data cryptobyte.String) ([]uint16, bool) {
	var l cryptobyte.String
	if !data.ReadUint16LengthPrefixed(&l) || !data.Empty() || len(l)%2 != 0 {
		return nil, false
	}
	out := make([]uint16, 0, len(l)/2)
	for !l.Empty() {
		var v uint16
		l.ReadUint16(&v)
		out = append(out, v)
	}
	return out, true
}

func (h *ClientHello) parseServerName(data cryptobyte.String) bool {
	var list cryptobyte.String
	if !data.ReadUint16LengthPrefixed(&list) || !data.Empty() || list.Empty() {
		return false
	}
	for !list.Empty() {
		var nameType uint8
		var name cryptobyte.String
		if !list.ReadUint8(&nameType) || !list.ReadUint16LengthPrefixed(&name) {
			return false
		}
		if nameType != 0 {
			continue
		}
		if h.ServerName != "" || len(name) == 0 {
			return false // two host names, or an empty one
		}
		h.ServerName = string(name)
	}
	return true
}

func (h *ClientHello) parseALPN(data cryptobyte.String) bool {
	var list cryptobyte.String
	if !data.ReadUint16LengthPrefixed(&list) || !data.Empty() || list.Empty() {
		return false
	}
	for !list.Empty() {
		var proto cryptobyte.String
		if !list.ReadUint8LengthPrefixed(&proto) || proto.Empty() {
			return false
		}
		h.ALPN = append(h.ALPN, string(proto))
	}
	return true
}

func (h *ClientHello) parseKeyShares(data cryptobyte.String) bool {
	var list cryptobyte.String
	if !data.ReadUint16LengthPrefixed(&list) || !data.Empty() {
		return false
	}
	for !list.Empty() {
		var group uint16
		var key cryptobyte.String
		if !list.ReadUint16(&group) || !list.ReadUint16LengthPrefixed(&key) || key.Empty() {
			return false
		}
		h.KeyShares = append(h.KeyShares, KeyShare{Group: group, Data: key})
	}
	return true
}
