package links

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/netip"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Values of the VLESS fields this package accepts.
const (
	SecurityReality = "reality"
	EncryptionNone  = "none"
	FlowVision      = "xtls-rprx-vision"
	TypeTCP         = "tcp"
	TypeRaw         = "raw" // Xray's newer name for tcp; same wire format
)

// MaxLinkLen bounds the links ParseVLESS reads.
const MaxLinkLen = 8 << 10

// VLESS is a parsed vless:// link for REALITY over TCP.
type VLESS struct {
	UUID        [16]byte
	Host        string // domain or IP address, without brackets
	Port        uint16
	SNI         string
	Fingerprint string // lowercase; "" = the client's default
	PublicKey   []byte // 32 bytes, X25519
	ShortID     []byte // 0..8 bytes; nil when empty
	Flow        string // "" or FlowVision
	Type        string // TypeTCP, TypeRaw or TypeXHTTP
	SpiderX     string
	Name        string
	Security    string     // SecurityReality
	Encryption  string     // EncryptionNone
	Extra       url.Values // unknown parameters that change nothing we speak; nil if none
	XHTTP       *XHTTP     // type=xhttp parameters; nil for tcp
	// TCPMux says the server is Burrow's and carries TCP streams inside
	// mux.cool on a Vision connection (tcpmux=1, Burrow only; other
	// clients ignore it). Burrow's client then sends plain-text streams
	// as sessions of an open connection instead of a handshake each.
	TCPMux bool
}

// Error is a link that could not be parsed: Part names the piece that is
// wrong ("uuid", "host", "pbk", …) and Reason says why.
type Error struct {
	Part, Reason string
}

func (e *Error) Error() string {
	if e.Part == "" {
		return "link: " + e.Reason
	}
	return "link: " + e.Part + ": " + e.Reason
}

func bad(part, format string, args ...any) error {
	return &Error{Part: part, Reason: fmt.Sprintf(format, args...)}
}

// ParseVLESS parses a vless:// link (surrounding spaces are ignored). The
// error, an *Error, says which part is wrong.
func ParseVLESS(s string) (*VLESS, error) {
	s = strings.TrimSpace(s)
	if len(s) > MaxLinkLen {
		return nil, bad("", "%d bytes is too long (at most %d)", len(s), MaxLinkLen)
	}
	const scheme = "vless://"
	if len(s) < len(scheme) || !strings.EqualFold(s[:len(scheme)], scheme) {
		return nil, bad("", "must start with vless://")
	}
	s = s[len(scheme):]
	rest, frag, _ := strings.Cut(s, "#")
	for i := 0; i < len(rest); i++ {
		if c := rest[i]; c <= ' ' || c == 0x7f {
			return nil, bad("", "space or control character at byte %d", len(scheme)+i)
		}
	}
	authority, query, _ := strings.Cut(rest, "?")
	authority, path, _ := strings.Cut(authority, "/")
	if path != "" {
		return nil, bad("path", "must be empty or /")
	}
	l := &VLESS{}
	userinfo, hostport, ok := cutLast(authority, "@")
	if !ok {
		return nil, bad("uuid", "missing (want vless://UUID@host:port)")
	}
	var err error
	if l.UUID, err = parseUUID(userinfo); err != nil {
		return nil, err
	}
	if l.Host, l.Port, err = parseHostPort(hostport); err != nil {
		return nil, err
	}
	if err := l.parseQuery(query); err != nil {
		return nil, err
	}
	if l.Name, err = url.PathUnescape(frag); err != nil {
		return nil, bad("name", "bad percent-encoding")
	}
	if err := checkText("name", l.Name, 256); err != nil {
		return nil, err
	}
	return l, nil
}

func cutLast(s, sep string) (before, after string, found bool) {
	if i := strings.LastIndex(s, sep); i >= 0 {
		return s[:i], s[i+len(sep):], true
	}
	return "", s, false
}

func parseUUID(s string) ([16]byte, error) {
	var u [16]byte
	if strings.Contains(s, ":") {
		return u, bad("uuid", "must be the UUID alone, without a password")
	}
	if len(s) != 36 {
		return u, bad("uuid", "want 36 characters in the 8-4-4-4-12 hex form, got %d (free-form Xray ids are not supported)", len(s))
	}
	if s[8] != '-' || s[13] != '-' || s[18] != '-' || s[23] != '-' {
		return u, bad("uuid", "want the 8-4-4-4-12 hex form with dashes")
	}
	h := s[0:8] + s[9:13] + s[14:18] + s[19:23] + s[24:]
	if _, err := hex.Decode(u[:], []byte(h)); err != nil {
		return [16]byte{}, bad("uuid", "not hexadecimal")
	}
	return u, nil
}

func parseHostPort(s string) (string, uint16, error) {
	var host, port string
	if strings.HasPrefix(s, "[") {
		end := strings.Index(s, "]")
		if end < 0 {
			return "", 0, bad("host", "missing ] after IPv6 address")
		}
		host = s[1:end]
		rest := s[end+1:]
		if !strings.HasPrefix(rest, ":") {
			return "", 0, bad("port", "missing (want [IPv6]:port)")
		}
		port = rest[1:]
		a, err := netip.ParseAddr(host)
		if err != nil || !a.Is6() || a.Zone() != "" {
			return "", 0, bad("host", "%q in brackets is not an IPv6 address", host)
		}
	} else {
		var ok bool
		host, port, ok = cutLast(s, ":")
		if !ok {
			return "", 0, bad("port", "missing (want host:port)")
		}
		if strings.Contains(host, ":") {
			return "", 0, bad("host", "an IPv6 address must be in brackets, like [2001:db8::1]:443")
		}
		if host == "" {
			return "", 0, bad("host", "empty")
		}
		if _, err := netip.ParseAddr(host); err != nil && !validDomain(host) {
			return "", 0, bad("host", "%.80q is neither an IP address nor a domain name", host)
		}
	}
	if port == "" || strings.TrimLeft(port, "0123456789") != "" {
		return "", 0, bad("port", "%.20q is not a number", port)
	}
	p, err := strconv.ParseUint(port, 10, 16)
	if err != nil || p == 0 {
		return "", 0, bad("port", "%.20q is not in 1..65535", port)
	}
	return host, uint16(p), nil
}

// validDomain accepts ASCII host names: dot-separated labels of letters,
// digits, '-' and '_', each 1..63 bytes, 253 in all, not all digits at the
// end (that would be a malformed IP address).
func validDomain(s string) bool {
	s = strings.TrimSuffix(s, ".")
	if s == "" || len(s) > 253 {
		return false
	}
	labels := strings.Split(s, ".")
	for _, label := range labels {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_') {
				return false
			}
		}
	}
	last := labels[len(labels)-1]
	return strings.TrimLeft(last, "0123456789") != ""
}

// checkText refuses invalid UTF-8, control characters and more than max bytes.
func checkText(part, s string, max int) error {
	if len(s) > max {
		return bad(part, "%d bytes is too long (at most %d)", len(s), max)
	}
	if !utf8.ValidString(s) {
		return bad(part, "not valid UTF-8")
	}
	for _, r := range s {
		if unicode.IsControl(r) {
			return bad(part, "contains control character %U", r)
		}
	}
	return nil
}

func (l *VLESS) parseQuery(query string) error {
	q, err := url.ParseQuery(query)
	if err != nil {
		return bad("query", "%v", err)
	}
	one := func(key string) (string, error) {
		v := q[key]
		delete(q, key)
		if len(v) > 1 {
			return "", bad(key, "given %d times", len(v))
		}
		if len(v) == 0 {
			return "", nil
		}
		return v[0], nil
	}
	var v string
	if v, err = one("encryption"); err != nil {
		return err
	}
	if v != "" && v != EncryptionNone {
		return bad("encryption", "%.40q is not supported; want none", v)
	}
	l.Encryption = EncryptionNone

	if v, err = one("security"); err != nil {
		return err
	}
	if v == "" {
		return bad("security", "missing; want security=reality")
	}
	if !strings.EqualFold(v, SecurityReality) {
		return bad("security", "%.40q is not supported; want reality", v)
	}
	l.Security = SecurityReality

	if l.SNI, err = one("sni"); err != nil {
		return err
	}
	if l.SNI == "" {
		return bad("sni", "missing; REALITY needs the cover site's server name")
	}
	if _, err := netip.ParseAddr(l.SNI); err == nil || !validDomain(l.SNI) {
		return bad("sni", "%.80q is not a domain name", l.SNI)
	}

	if v, err = one("fp"); err != nil {
		return err
	}
	l.Fingerprint = strings.ToLower(v)
	if _, err := FingerprintBrowser(l.Fingerprint); err != nil {
		return bad("fp", "%v", err)
	}

	if v, err = one("pbk"); err != nil {
		return err
	}
	if v == "" {
		return bad("pbk", "missing; want the server's X25519 public key")
	}
	if len(v) != 43 {
		return bad("pbk", "must be 43 characters of base64url (a 32-byte X25519 key), got %d", len(v))
	}
	// Decoded as Xray decodes it (trailing bits are not checked).
	key, err := base64.RawURLEncoding.DecodeString(v)
	if err != nil || len(key) != 32 {
		return bad("pbk", "not base64url (want A-Z a-z 0-9 - _ as xray x25519 prints the key)")
	}
	if bytes.Equal(key, make([]byte, 32)) {
		return bad("pbk", "is all zeros")
	}
	l.PublicKey = key

	if v, err = one("sid"); err != nil {
		return err
	}
	if len(v) > 16 || len(v)%2 != 0 {
		return bad("sid", "must be an even number of hex digits, at most 16, got %d", len(v))
	}
	sid, err := hex.DecodeString(v)
	if err != nil {
		return bad("sid", "not hexadecimal")
	}
	if len(sid) > 0 {
		l.ShortID = sid
	}

	if l.SpiderX, err = one("spx"); err != nil {
		return err
	}
	if l.SpiderX != "" && !strings.HasPrefix(l.SpiderX, "/") {
		return bad("spx", "must start with /")
	}
	if err := checkText("spx", l.SpiderX, 1024); err != nil {
		return err
	}

	if l.Flow, err = one("flow"); err != nil {
		return err
	}
	if l.Flow != "" && l.Flow != FlowVision {
		return bad("flow", "%.40q is not supported; want xtls-rprx-vision or none", l.Flow)
	}

	if l.Type, err = one("type"); err != nil {
		return err
	}
	switch l.Type {
	case "":
		l.Type = TypeTCP
	case TypeTCP, TypeRaw:
	case TypeXHTTP:
		if err := l.parseXHTTP(one); err != nil {
			return err
		}
	default:
		return bad("type", "%.40q transport is not supported yet; want tcp (or raw) or xhttp", l.Type)
	}

	if v, err = one("tcpmux"); err != nil {
		return err
	}
	switch v {
	case "", "0":
	case "1":
		if l.Type == TypeXHTTP || l.Flow != FlowVision {
			return bad("tcpmux", "only applies to type=tcp with flow=xtls-rprx-vision")
		}
		l.TCPMux = true
	default:
		return bad("tcpmux", "want 1 or 0")
	}

	if ht := q["headerType"]; len(ht) > 1 || len(ht) == 1 && ht[0] != "" && ht[0] != "none" {
		return bad("headerType", "only none is supported (HTTP header obfuscation changes the wire format)")
	}
	delete(q, "")
	for k, vs := range q {
		if err := checkText("query", k, 256); err != nil {
			return err
		}
		for _, v := range vs {
			if err := checkText(k, v, 2048); err != nil {
				return err
			}
		}
	}
	if len(q) > 0 {
		l.Extra = q
	}
	return nil
}

// String returns the link in the form ParseVLESS reads, with the known
// parameters in the conventional order and Extra after them, sorted. It
// contains the user's UUID: do not log it (see Redacted).
func (l *VLESS) String() string {
	return l.format(formatUUID(l.UUID))
}

// Redacted returns the link with the UUID and short id replaced by x's, for logs.
func (l *VLESS) Redacted() string {
	c := *l
	if len(c.ShortID) > 0 {
		c.ShortID = nil
	}
	return c.format("xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx")
}

func (l *VLESS) format(uuid string) string {
	var b strings.Builder
	b.WriteString("vless://")
	b.WriteString(uuid)
	b.WriteByte('@')
	b.WriteString(net.JoinHostPort(l.Host, strconv.Itoa(int(l.Port))))
	enc := l.Encryption
	if enc == "" {
		enc = EncryptionNone
	}
	b.WriteString("?encryption=" + url.QueryEscape(enc))
	sec := l.Security
	if sec == "" {
		sec = SecurityReality
	}
	param := func(k, v string) {
		if v != "" {
			b.WriteString("&" + url.QueryEscape(k) + "=" + url.QueryEscape(v))
		}
	}
	param("security", sec)
	param("sni", l.SNI)
	param("fp", l.Fingerprint)
	param("pbk", base64.RawURLEncoding.EncodeToString(l.PublicKey))
	param("sid", hex.EncodeToString(l.ShortID))
	param("spx", l.SpiderX)
	param("flow", l.Flow)
	typ := l.Type
	if typ == "" {
		typ = TypeTCP
	}
	param("type", typ)
	l.formatXHTTP(param)
	if l.TCPMux {
		param("tcpmux", "1")
	}
	keys := make([]string, 0, len(l.Extra))
	for k := range l.Extra {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		for _, v := range l.Extra[k] {
			b.WriteString("&" + url.QueryEscape(k) + "=" + url.QueryEscape(v))
		}
	}
	if l.Name != "" {
		b.WriteByte('#')
		b.WriteString(escapeFragment(l.Name))
	}
	return b.String()
}

// escapeFragment percent-encodes every byte except RFC 3986 unreserved ones,
// so the name survives every client's decoder (none of them turns %20 into
// anything but a space).
func escapeFragment(s string) string {
	const hexdig = "0123456789ABCDEF"
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '.' || c == '_' || c == '~' {
			b.WriteByte(c)
		} else {
			b.WriteByte('%')
			b.WriteByte(hexdig[c>>4])
			b.WriteByte(hexdig[c&15])
		}
	}
	return b.String()
}

func formatUUID(u [16]byte) string {
	h := hex.EncodeToString(u[:])
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}

// LoadVLESS parses arg as a vless:// link, or, if it is not one, reads the
// file it names and parses the file's first non-empty line.
func LoadVLESS(arg string) (*VLESS, error) {
	t := strings.TrimSpace(arg)
	if len(t) >= 8 && strings.EqualFold(t[:8], "vless://") {
		return ParseVLESS(t)
	}
	if strings.Contains(t, "://") {
		return nil, bad("", "must start with vless://") // not echoed: it may hold a key
	}
	f, err := os.Open(arg)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, &Error{Reason: fmt.Sprintf("%.200q is neither a vless:// link nor an existing file", arg)}
	}
	if err != nil {
		return nil, fmt.Errorf("link: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, 1<<20))
	if err != nil {
		return nil, fmt.Errorf("link: %w", err)
	}
	data = bytes.TrimPrefix(data, []byte("\xef\xbb\xbf")) // UTF-8 byte order mark
	for line := range strings.Lines(string(data)) {
		if line = strings.TrimSpace(line); line != "" {
			l, err := ParseVLESS(line)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", arg, err)
			}
			return l, nil
		}
	}
	return nil, &Error{Reason: fmt.Sprintf("file %s holds no link", arg)}
}
