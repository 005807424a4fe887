package xhttp

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"math/big"
	"net/http"
	"strconv"
	"strings"
)

// Modes of the upload direction.
const (
	ModeAuto      = "auto" // packet-up (stream-one is not offered by this client)
	ModePacketUp  = "packet-up"
	ModeStreamUp  = "stream-up"
	ModeStreamOne = "stream-one" // server side only
)

// Sizes shared by both sides.
const (
	// MaxPostBytes is the largest packet-up body; Xray's servers refuse
	// more than 1,000,000 by default.
	MaxPostBytes = 1_000_000
	// RetainMax bounds the download bytes a server keeps unacknowledged
	// per session; writers block beyond it.
	RetainMax = 2 << 20
	// maxRange is the longest Range a client asks for.
	maxRange = 1 << 20
	// budgetTail is what a server keeps free on a budgeted connection for
	// frames it does not control (END_STREAM, WINDOW_UPDATE, PING acks,
	// the headers of responses still in flight).
	budgetTail = 600
	// recordPlain and recordOverhead model TLS 1.3 application records:
	// a record per ~1.2 KB written at first (Go's dynamic record sizing),
	// 22 bytes each (header, tag, content type).
	recordPlain    = 1200
	recordOverhead = 22
	// A download write on a connection that has carried less than
	// youngConn bytes is youngWriteMin–youngWriteMax bytes: one HTTP/2
	// DATA frame, which the client's HTTP/2 reader passes on only once
	// the whole frame is in. A censor's freeze in a connection's first
	// kilobytes (8 or 16 KiB) then strands at most that much: with the
	// 16 KiB frames of a large write it stranded everything after the
	// handshake, and before the client knows the budget it needs two such
	// freezes (~5 s each to find), so an application saw nothing for over
	// 10 s and gave up. Go's TLS sizes its records the same way, small
	// first (dynamic record sizing).
	youngConn     = 64 << 10
	youngWriteMin = 2 << 10
	youngWriteMax = 4 << 10
)

// NormalizePath returns p as Xray uses it: a leading and a trailing slash,
// without any query.
func NormalizePath(p string) string {
	p, _, _ = strings.Cut(p, "?")
	if !strings.HasPrefix(p, "/") {
		p = "/" + p
	}
	if !strings.HasSuffix(p, "/") {
		p += "/"
	}
	return p
}

// randBetween returns a uniformly random int in [lo, hi].
func randBetween(lo, hi int) int {
	if hi <= lo {
		return lo
	}
	n, err := rand.Int(rand.Reader, big.NewInt(int64(hi-lo+1)))
	if err != nil {
		return lo
	}
	return lo + int(n.Int64())
}

// newSessionID returns a random version-4 UUID string, as Xray uses.
func newSessionID() string {
	var b [16]byte
	rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	h := hex.EncodeToString(b[:])
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}

// isSessionID reports whether s has the 8-4-4-4-12 hex form.
func isSessionID(s string) bool {
	if len(s) != 36 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch i {
		case 8, 13, 18, 23:
			if c != '-' {
				return false
			}
		default:
			if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F') {
				return false
			}
		}
	}
	return true
}

// parsePath finds the session id and sequence number at the end of a
// request path: ".../SID/SEQ", ".../SID", or neither. The path prefix is not
// checked: REALITY already authenticated the connection.
func parsePath(p string) (sid string, seq uint64, hasSeq bool, err error) {
	p = strings.TrimSuffix(p, "/")
	last := p
	if i := strings.LastIndexByte(p, '/'); i >= 0 {
		last = p[i+1:]
		p = p[:i]
	} else {
		p = ""
	}
	if isSessionID(last) {
		return last, 0, false, nil
	}
	if last == "" || len(last) > 20 || strings.Trim(last, "0123456789") != "" {
		return "", 0, false, nil
	}
	prev := p
	if i := strings.LastIndexByte(p, '/'); i >= 0 {
		prev = p[i+1:]
	}
	if !isSessionID(prev) {
		return "", 0, false, nil
	}
	seq, err = strconv.ParseUint(last, 10, 64)
	if err != nil {
		return "", 0, false, fmt.Errorf("xhttp: bad seq %q", last)
	}
	return prev, seq, true, nil
}

// parseRange reads "bytes=START-END" (END optional). ok is false when the
// header is absent; err when it is malformed.
func parseRange(h string) (start, end int64, ok bool, err error) {
	if h == "" {
		return 0, 0, false, nil
	}
	spec, found := strings.CutPrefix(h, "bytes=")
	if !found {
		return 0, 0, false, fmt.Errorf("xhttp: range %q: want bytes=START-END", h)
	}
	a, b, found := strings.Cut(spec, "-")
	if !found {
		return 0, 0, false, fmt.Errorf("xhttp: range %q: want bytes=START-END", h)
	}
	start, err = strconv.ParseInt(a, 10, 64)
	if err != nil || start < 0 || start > 1<<60 {
		return 0, 0, false, fmt.Errorf("xhttp: range %q: bad start", h)
	}
	end = start + maxRange - 1
	if b != "" {
		end, err = strconv.ParseInt(b, 10, 64)
		if err != nil || end < start {
			return 0, 0, false, fmt.Errorf("xhttp: range %q: bad end", h)
		}
	}
	return start, end, true, nil
}

// paddingOK checks the x_padding of a request (in the Referer's query, or
// the URL's when there is no Referer), as Xray's server does, with the
// range widened to what either client sends.
func paddingOK(r *http.Request) bool {
	v := ""
	if ref := r.Header.Get("Referer"); ref != "" {
		_, q, _ := strings.Cut(ref, "?")
		v = queryValue(q, "x_padding")
	} else {
		v = r.URL.Query().Get("x_padding")
	}
	return len(v) >= minPadding && len(v) <= 4096
}

// queryValue returns the first value of key in a raw query, without
// unescaping (padding is plain X's).
func queryValue(q, key string) string {
	for q != "" {
		var kv string
		kv, q, _ = strings.Cut(q, "&")
		k, v, _ := strings.Cut(kv, "=")
		if k == key {
			return v
		}
	}
	return ""
}

// minPadding is the shortest padding either side sends.
const minPadding = 16
