package control

import (
	"crypto/ed25519"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"
)

// TokenScheme is the join token's URL scheme.
const TokenScheme = "burrow-node"

// Token is what a node needs to join the fleet, printed on one line by
// `burrow control node-token NAME`:
//
//	burrow-node://SEED@HOST:PORT?role=ROLE&pbk=KEY&sid=SHORTID&sni=NAME&fp=FP&cid=CONTROLKEY#NODENAME
//
//	SEED      43 base64url characters: the node's Ed25519 private key seed
//	          (32 bytes), its secret. The control plane keeps only the
//	          public key, so a lost token is replaced (--rekey), not reprinted.
//	HOST:PORT the control plane's camouflaged endpoint
//	role      exit or relay
//	pbk       the endpoint's REALITY X25519 public key, base64url (as a link's pbk)
//	sid       16 hex digits: the node's own REALITY short ID at the endpoint
//	sni       a server name the endpoint's cover answers for
//	fp        the browser whose ClientHello the node sends
//	cid       the control plane's Ed25519 identity public key, base64url
//	NODENAME  the node's name (informative; the key identifies the node)
//
// The token is a credential: whoever holds it can act as the node until it
// is revoked (`burrow control node-token NAME --revoke`) or rekeyed.
type Token struct {
	Name        string
	Role        Role
	Addr        string             // control endpoint HOST:PORT
	Key         ed25519.PrivateKey // the node's identity
	PublicKey   []byte             // endpoint's REALITY X25519 key, 32 bytes
	ShortID     [8]byte
	SNI         string
	Fingerprint string
	Control     ed25519.PublicKey // the control plane's identity
}

// ErrToken is wrapped by every ParseToken error.
var ErrToken = errors.New("not a valid node join token")

// NewToken makes node n's join token; n must come from CreateNode or
// RekeyNode (it carries the private key).
func NewToken(c *Config, n *Node) (*Token, error) {
	if n.PrivateKey == nil {
		return nil, errors.New("control: token: the node's private key is gone; rekey the node for a new token")
	}
	_, port, _ := net.SplitHostPort(c.Listen)
	pub, _ := decode32(c.PublicKey)
	return &Token{Name: n.Name, Role: n.Role, Addr: net.JoinHostPort(c.PublicAddr, port), Key: n.PrivateKey,
		PublicKey: pub, ShortID: n.ShortID, SNI: c.ServerNames[0], Fingerprint: c.Fingerprint,
		Control: c.Identity().Public().(ed25519.PublicKey)}, nil
}

// String returns the token's one-line form.
func (t *Token) String() string {
	q := url.Values{}
	q.Set("role", string(t.Role))
	q.Set("pbk", b64(t.PublicKey))
	q.Set("sid", hex.EncodeToString(t.ShortID[:]))
	q.Set("sni", t.SNI)
	q.Set("fp", t.Fingerprint)
	q.Set("cid", b64(t.Control))
	u := url.URL{Scheme: TokenScheme, User: url.User(b64(t.Key.Seed())), Host: t.Addr, RawQuery: q.Encode(), Fragment: t.Name}
	return u.String()
}

// Redacted describes the token without its secret, for logs.
func (t *Token) Redacted() string { return fmt.Sprintf("%s node %q at %s", t.Role, t.Name, t.Addr) }

// ParseToken reads a token printed by `burrow control node-token`.
func ParseToken(s string) (*Token, error) {
	bad := func(format string, args ...any) (*Token, error) {
		return nil, fmt.Errorf("%w: %s (get one with `burrow control node-token NAME` on the control plane)", ErrToken, fmt.Sprintf(format, args...))
	}
	s = strings.TrimSpace(s)
	if len(s) > 2048 {
		return bad("%d bytes long", len(s))
	}
	u, err := url.Parse(s)
	if err != nil || u.Scheme != TokenScheme {
		return bad("want a %s:// URL", TokenScheme)
	}
	t := &Token{Name: u.Fragment, Addr: u.Host}
	if u.User == nil {
		return bad("no node key")
	}
	seed, err := decode32(u.User.Username())
	if err != nil {
		return bad("node key: %v", err)
	}
	t.Key = ed25519.NewKeyFromSeed(seed)
	host, port, err := net.SplitHostPort(t.Addr)
	if p, perr := strconv.Atoi(port); err != nil || host == "" || perr != nil || p < 1 || p > 65535 {
		return bad("address %.80q is not HOST:PORT", t.Addr)
	}
	q := u.Query()
	if t.Role, err = ParseRole(q.Get("role")); err != nil {
		return bad("%v", err)
	}
	if t.PublicKey, err = decode32(q.Get("pbk")); err != nil {
		return bad("pbk: %v", err)
	}
	if b, err := hex.DecodeString(q.Get("sid")); err != nil || len(b) != len(t.ShortID) {
		return bad("sid: want 16 hex digits")
	} else {
		copy(t.ShortID[:], b)
	}
	if t.SNI = q.Get("sni"); t.SNI == "" || len(t.SNI) > 253 || strings.ContainsAny(t.SNI, " /:") {
		return bad("sni %.80q is not a DNS name", t.SNI)
	}
	if t.Fingerprint = q.Get("fp"); t.Fingerprint == "" {
		t.Fingerprint = "chrome"
	}
	cid, err := decode32(q.Get("cid"))
	if err != nil {
		return bad("cid: %v", err)
	}
	t.Control = cid
	return t, nil
}
