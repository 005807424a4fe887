// Package relaylink is the wire format between an entry relay (burrow
// relay) and an exit (burrow server): the relay token an exit hands out, and
// the header that opens every stream the relay carries. It imports nothing
// else of Burrow's; internal/relay and internal/server both use it.
//
// # Token
//
// One line, printed by `burrow server relay-token NAME` on the exit:
//
//	burrow-relay://SECRET@HOST:PORT?pbk=KEY&sid=SHORTID&sni=NAME&cover=HOST:PORT&fp=FP#RELAYNAME
//
//	SECRET   32 hex digits: the relay's credential (16 bytes)
//	HOST:PORT the exit's public address
//	pbk      the exit's X25519 public key, base64url without padding (a link's pbk)
//	sid      16 hex digits: the relay's own REALITY short ID (not a user's)
//	sni      a server name the exit accepts (its cover's)
//	cover    the exit's cover site, HOST:PORT (the relay shows it to probers
//	         when all exits are down and it has no cover of its own)
//	fp       the browser whose ClientHello the relay sends (default chrome)
//
// # The leg
//
// The relay opens REALITY connections to the exit with the token's sid, sni
// and pbk, and carries XHTTP (internal/transport/xhttp: HTTP/2, a pool of
// at most a few connections rotated under a byte budget) on them. The
// exit knows a relay by its short ID. Each client TCP connection the relay
// accepts becomes one XHTTP session, which starts with this header and then
// carries the client's bytes unchanged, both ways:
//
//	| 'B' 'R' 'L' | ver=1 | kind (1) | secret (16) | n (1) | SNI (n) | m (1) | COVER (m) | k (1) | ADDR (k) |
//
//	kind 1  a client connection: the client's bytes follow (its REALITY
//	        ClientHello first); the exit accepts them as a fresh connection.
//	kind 2  a health probe: the exit answers one byte, ProbeOK, and ends.
//	kind 3  a client connection whose exit the relay does not know (a fleet
//	        relay fronting exits of different keys): the client's
//	        ClientHello follows, and the exit answers one byte first:
//	        AskYes, the hello authenticates to it (a client of this exit)
//	        and the stream goes on as kind 1; AskNo, it does not, and the
//	        stream ends (the relay asks the next exit, and sends a hello no
//	        exit takes, a prober's, as kind 1 to an exit, whose cover answers).
//	SNI, COVER  the relay's own cover ("" and "" for the exit's): the exit
//	        uses them as server name and cover for this stream's REALITY
//	        accept, so probers through the relay see the relay's cover.
//	ADDR    the relay's public HOST:PORT (its own, which links through it
//	        carry), so `burrow user show --via` on the exit finds its SNI.
//
// The header names no client: no address, no port, nothing about the user.
package relaylink

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"strconv"
	"strings"
)

// Scheme is the token's URL scheme.
const Scheme = "burrow-relay"

// Token is what a relay needs to reach one exit.
type Token struct {
	Name        string   // the relay's name on the exit
	Addr        string   // the exit's HOST:PORT
	PublicKey   [32]byte // the exit's X25519 public key
	ShortID     [8]byte  // the relay's REALITY short ID
	SNI         string   // a server name the exit accepts
	Cover       string   // the exit's cover, HOST:PORT
	Fingerprint string   // ClientHello to send; "" means chrome
	Secret      [16]byte // the relay's credential
}

// String encodes t as one line. It holds the credential: print it only to
// the operator.
func (t *Token) String() string {
	q := url.Values{}
	q.Set("pbk", base64.RawURLEncoding.EncodeToString(t.PublicKey[:]))
	q.Set("sid", hex.EncodeToString(t.ShortID[:]))
	q.Set("sni", t.SNI)
	q.Set("cover", t.Cover)
	if t.Fingerprint != "" {
		q.Set("fp", t.Fingerprint)
	}
	u := url.URL{Scheme: Scheme, User: url.User(hex.EncodeToString(t.Secret[:])), Host: t.Addr, RawQuery: q.Encode(), Fragment: t.Name}
	return u.String()
}

// Redacted is t for logs: the exit and the relay's name, no credential.
func (t *Token) Redacted() string { return fmt.Sprintf("%s (relay %q)", t.Addr, t.Name) }

// ErrToken is wrapped by every ParseToken error.
var ErrToken = errors.New("not a valid relay token")

// ParseToken reads a token printed by `burrow server relay-token`.
func ParseToken(s string) (*Token, error) {
	bad := func(format string, args ...any) (*Token, error) {
		return nil, fmt.Errorf("%w: %s (get a fresh one with `burrow server relay-token NAME` on the exit)", ErrToken, fmt.Sprintf(format, args...))
	}
	s = strings.TrimSpace(s)
	if !strings.HasPrefix(s, Scheme+"://") {
		return bad("it must start with %s://", Scheme)
	}
	u, err := url.Parse(s)
	if err != nil {
		return bad("%v", err)
	}
	t := &Token{Name: u.Fragment, Addr: u.Host}
	if u.User == nil {
		return bad("no credential before @")
	}
	if b, err := hex.DecodeString(u.User.Username()); err != nil || len(b) != len(t.Secret) {
		return bad("the credential must be 32 hex digits")
	} else {
		copy(t.Secret[:], b)
	}
	if err := validHostPort(t.Addr); err != nil {
		return bad("exit address %q: %v", t.Addr, err)
	}
	q := u.Query()
	for k := range q {
		switch k {
		case "pbk", "sid", "sni", "cover", "fp":
		default:
			return bad("unknown field %.20q", k)
		}
	}
	if b, err := base64.RawURLEncoding.DecodeString(q.Get("pbk")); err != nil || len(b) != len(t.PublicKey) {
		return bad("pbk must be a 32-byte key in base64url")
	} else {
		copy(t.PublicKey[:], b)
	}
	if b, err := hex.DecodeString(q.Get("sid")); err != nil || len(b) != len(t.ShortID) {
		return bad("sid must be 16 hex digits")
	} else {
		copy(t.ShortID[:], b)
	}
	if t.Name == "" || len(t.Name) > 64 || strings.IndexFunc(t.Name, func(r rune) bool { return r < 0x20 || r == 0x7f }) >= 0 {
		return bad("the relay's name after # must be 1-64 printable characters")
	}
	t.SNI, t.Cover, t.Fingerprint = q.Get("sni"), q.Get("cover"), q.Get("fp")
	if !validName(t.SNI) {
		return bad("sni %.80q is not a server name", t.SNI)
	}
	if err := validHostPort(t.Cover); err != nil {
		return bad("cover %.80q: %v", t.Cover, err)
	}
	return t, nil
}

func validHostPort(s string) error {
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		return errors.New("want HOST:PORT")
	}
	if p, err := strconv.Atoi(port); err != nil || p < 1 || p > 65535 {
		return errors.New("port must be 1-65535")
	}
	if host == "" || len(host) > 253 || strings.ContainsAny(host, " /\t\r\n@?#") {
		return errors.New("bad host")
	}
	return nil
}

func validName(n string) bool {
	return n != "" && len(n) <= 253 && !strings.ContainsAny(n, " /:\t\r\n@?#")
}

// Stream kinds.
const (
	KindClient byte = 1 // a client connection's bytes follow
	KindProbe  byte = 2 // a health probe: the exit answers ProbeOK
	KindAsk    byte = 3 // a client connection, if its hello is this exit's
	KindTrunk  byte = 4 // the exit answers TrunkOK, then a trunk of client connections (package trunk)
)

// TrunkOK is the exit's one-byte answer to a KindTrunk stream. An exit
// that predates trunks closes the stream instead, and the relay opens one
// stream per client with it.
const TrunkOK byte = 0x7b

// The exit's one-byte answers to a KindAsk stream.
const (
	AskYes byte = 0xa1
	AskNo  byte = 0xa0
)

// ProbeOK is the exit's one-byte answer to a probe.
const ProbeOK byte = 0x5a

var magic = [4]byte{'B', 'R', 'L', 1}

// Header opens a stream.
type Header struct {
	Kind   byte
	Secret [16]byte
	SNI    string // the relay's cover's server name, or ""
	Cover  string // the relay's cover HOST:PORT, or ""
	Addr   string // the relay's public HOST:PORT, or ""
}

// Append encodes h after b.
func (h *Header) Append(b []byte) ([]byte, error) {
	if len(h.SNI) > 255 || len(h.Cover) > 255 || len(h.Addr) > 255 {
		return nil, errors.New("relaylink: cover name too long")
	}
	b = append(b, magic[:]...)
	b = append(b, h.Kind)
	b = append(b, h.Secret[:]...)
	b = append(b, byte(len(h.SNI)))
	b = append(b, h.SNI...)
	b = append(b, byte(len(h.Cover)))
	b = append(b, h.Cover...)
	b = append(b, byte(len(h.Addr)))
	return append(b, h.Addr...), nil
}

// ErrHeader is wrapped by ReadHeader's errors about the bytes read.
var ErrHeader = errors.New("relaylink: bad stream header")

// ReadHeader reads one header from r, reading nothing past it.
func ReadHeader(r io.Reader) (*Header, error) {
	var fixed [4 + 1 + 16 + 1]byte
	if _, err := io.ReadFull(r, fixed[:]); err != nil {
		return nil, fmt.Errorf("relaylink: read header: %w", err)
	}
	if !bytes.Equal(fixed[:4], magic[:]) {
		return nil, fmt.Errorf("%w: magic", ErrHeader)
	}
	h := &Header{Kind: fixed[4]}
	if h.Kind < KindClient || h.Kind > KindTrunk {
		return nil, fmt.Errorf("%w: kind %d", ErrHeader, h.Kind)
	}
	copy(h.Secret[:], fixed[5:21])
	sni := make([]byte, int(fixed[21])+1)
	if _, err := io.ReadFull(r, sni); err != nil {
		return nil, fmt.Errorf("relaylink: read header: %w", err)
	}
	cover := make([]byte, int(sni[len(sni)-1])+1)
	if _, err := io.ReadFull(r, cover); err != nil {
		return nil, fmt.Errorf("relaylink: read header: %w", err)
	}
	addr := make([]byte, int(cover[len(cover)-1]))
	if _, err := io.ReadFull(r, addr); err != nil {
		return nil, fmt.Errorf("relaylink: read header: %w", err)
	}
	h.SNI, h.Cover, h.Addr = string(sni[:len(sni)-1]), string(cover[:len(cover)-1]), string(addr)
	if h.Addr != "" && validHostPort(h.Addr) != nil {
		return nil, fmt.Errorf("%w: relay address %.80q", ErrHeader, h.Addr)
	}
	if (h.SNI == "") != (h.Cover == "") {
		return nil, fmt.Errorf("%w: a cover needs both a server name and an address", ErrHeader)
	}
	if h.SNI != "" && (!validName(h.SNI) || validHostPort(h.Cover) != nil) {
		return nil, fmt.Errorf("%w: cover %.80q / %.80q", ErrHeader, h.SNI, h.Cover)
	}
	return h, nil
}
