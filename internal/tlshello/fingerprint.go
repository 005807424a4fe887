package tlshello

import (
	"crypto/md5"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// isGREASE reports whether v is one of the sixteen RFC 8701 GREASE values
// (0x0a0a, 0x1a1a, ... 0xfafa). Both fingerprints ignore them wherever they
// appear, since a browser picks them at random per connection.
func isGREASE(v uint16) bool {
	return v&0x0f0f == 0x0a0a && v>>8 == v&0xff
}

// JA3 returns the JA3 fingerprint string of the hello and its MD5 hash (hex).
//
// The string is five comma-separated fields, each a dash-separated list of
// decimal numbers in wire order, GREASE removed:
//
//	legacy_version,ciphers,extensions,supported_groups,ec_point_formats
//
// JA3 keeps the extension order, so a Chrome ClientHello (which permutes its
// extensions per connection) has a different JA3 almost every time; JA4 is
// the stable key for comparing browsers.
func (h *ClientHello) JA3() (full string, hash string) {
	var b strings.Builder
	b.WriteString(strconv.Itoa(int(h.Version)))
	b.WriteByte(',')
	writeDecimal(&b, h.CipherSuites)
	b.WriteByte(',')
	exts := make([]uint16, 0, len(h.Extensions))
	for _, e := range h.Extensions {
		exts = append(exts, e.Type)
	}
	writeDecimal(&b, exts)
	b.WriteByte(',')
	writeDecimal(&b, h.SupportedGroups)
	b.WriteByte(',')
	for i, f := range h.ECPointFormats {
		if i > 0 {
			b.WriteByte('-')
		}
		b.WriteString(strconv.Itoa(int(f)))
	}
	full = b.String()
	sum := md5.Sum([]byte(full))
	return full, hex.EncodeToString(sum[:])
}

// writeDecimal writes vs without GREASE values as dash-separated decimals.
func writeDecimal(b *strings.Builder, vs []uint16) {
	first := true
	for _, v := range vs {
		if isGREASE(v) {
			continue
		}
		if !first {
			b.WriteByte('-')
		}
		first = false
		b.WriteString(strconv.Itoa(int(v)))
	}
}

// JA4 returns the FoxIO JA4 fingerprint of the hello, for TLS over TCP:
//
//	t 13 d 15 17 h2 _ 8daaf6152771 _ cb7bf5808d99
//	│ │  │ │  │  │    │              └ sha256("sorted extensions_signature algorithms")[:12]
//	│ │  │ │  │  │    └ sha256(sorted cipher suites)[:12]
//	│ │  │ │  │  └ first and last character of the first ALPN value ("00" if none)
//	│ │  │ │  └ number of extensions (SNI and ALPN included), at most 99
//	│ │  │ └ number of cipher suites, at most 99
//	│ │  └ "d" if the server_name extension is present, else "i"
//	│ └ highest supported_versions entry, else legacy_version
//	└ "t" for TCP
//
// GREASE values are ignored everywhere. Lists are 4-digit lower-case hex,
// comma-separated. The extension list omits server_name (0000) and ALPN
// (0010) and is sorted; the signature algorithms follow in wire order after
// an underscore (no underscore when there are none). An empty list hashes to
// "000000000000". Because the lists are sorted, Chrome's extension
// permutation does not change JA4.
func (h *ClientHello) JA4() string {
	a, ciphers, exts := h.ja4Parts()
	return a + "_" + ja4Hash(ciphers) + "_" + ja4Hash(exts)
}

// JA4R returns the raw (unhashed) JA4 — JA4_r in FoxIO's terms — so a
// mismatch can be read rather than guessed at.
func (h *ClientHello) JA4R() string {
	a, ciphers, exts := h.ja4Parts()
	return a + "_" + ciphers + "_" + exts
}

func (h *ClientHello) ja4Parts() (a, ciphers, exts string) {
	var cs []uint16
	for _, c := range h.CipherSuites {
		if !isGREASE(c) {
			cs = append(cs, c)
		}
	}
	var es []uint16
	sni := "i"
	count := 0
	for _, e := range h.Extensions {
		if isGREASE(e.Type) {
			continue
		}
		count++
		switch e.Type {
		case extServerName:
			sni = "d"
			continue
		case extALPN:
			continue
		}
		es = append(es, e.Type)
	}
	a = fmt.Sprintf("t%s%s%02d%02d%s", h.ja4Version(), sni, min(len(cs), 99), min(count, 99), h.ja4ALPN())

	slices.Sort(cs)
	slices.Sort(es)
	ciphers = hexList(cs)
	exts = hexList(es)
	var sigs []uint16
	for _, s := range h.SignatureAlgorithms {
		if !isGREASE(s) {
			sigs = append(sigs, s)
		}
	}
	if len(sigs) > 0 {
		exts += "_" + hexList(sigs)
	}
	return a, ciphers, exts
}

// ja4Version is the two-character version: the highest non-GREASE entry of
// supported_versions when the extension is present, else legacy_version.
func (h *ClientHello) ja4Version() string {
	v := h.Version
	hasExt := slices.ContainsFunc(h.Extensions, func(e Extension) bool { return e.Type == extSupportedVersions })
	if hasExt {
		v = 0
		for _, sv := range h.SupportedVersions {
			if !isGREASE(sv) && sv > v {
				v = sv
			}
		}
	}
	switch v {
	case 0x0304:
		return "13"
	case 0x0303:
		return "12"
	case 0x0302:
		return "11"
	case 0x0301:
		return "10"
	case 0x0300:
		return "s3"
	case 0x0200:
		return "s2"
	case 0x0100:
		return "s1"
	}
	return "00"
}

// ja4ALPN is the first and last character of the first ALPN value, "00"
// without one. If either is not an ASCII letter or digit, the first and last
// characters of the value's hex encoding are used instead.
func (h *ClientHello) ja4ALPN() string {
	if len(h.ALPN) == 0 || h.ALPN[0] == "" {
		return "00"
	}
	p := h.ALPN[0]
	first, last := p[0], p[len(p)-1]
	if !isAlnum(first) || !isAlnum(last) {
		x := hex.EncodeToString([]byte(p))
		return x[:1] + x[len(x)-1:]
	}
	return string([]byte{first, last})
}

func isAlnum(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z'
}

func hexList(vs []uint16) string {
	var b strings.Builder
	for i, v := range vs {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, "%04x", v)
	}
	return b.String()
}

// ja4Hash is the first 12 hex characters of sha256(s), or twelve zeros for
// an empty list.
func ja4Hash(s string) string {
	if s == "" {
		return "000000000000"
	}
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])[:12]
}
