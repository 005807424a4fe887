package censorlab

import (
	"fmt"
	"sync"
	"time"
)

// TLSInTLS looks for a TLS handshake carried inside an outer TLS connection
// (Xue et al., "Fingerprinting Obfuscated Proxy Traffic with Encapsulated
// TLS Handshakes", USENIX Security 2024; the "Trojan-killer" heuristic),
// anywhere in the connection: it follows the outer TLS record headers of
// both directions for the whole flow and, after the client's first
// application-data record (its Finished), groups the client's
// application-data records into flights (records with no server data
// between them). Sliding over every three consecutive flights
// C_k, S_k, C_k+1 it flags the flow when
//
//	C_k   holds an inner-ClientHello-sized record (HelloMin..HelloMax bytes) that is its
//	      largest, in at most flightRecordsMax records (a proxy's own header may precede it),
//	S_k   is a handshake-sized server flight (ServerFlightMin..ServerFlightMax bytes), and
//	C_k+1 starts with a Finished-sized record (SmallMin..SmallMax bytes: CCS and Finished
//	      of the inner handshake plus the outer and proxy framing)
//	      sent within FinishedGap of the server flight's last record (the inner client
//	      answers at once; a person reading a page does not).
//
// Calibration (on the benign controls, never on Burrow; each bound below was
// needed by a control): sliding over the whole connection, the bare size
// triple (flight total 200..3000 B, server >= 400 B, next record 20..170 B)
// flags both controls — an HTTP/2 page's first request flight (preface
// record, then a 300-560 B HEADERS record), the page's first 16-78 KiB, then
// Chrome's SETTINGS ACK (26 B). So: the server flight is capped at
// ServerFlightMax (a handshake, not a page); the hello-sized record must be
// the flight's largest, and the flight short; and the Finished-sized record
// starts at 40 B, above HTTP/2's control frames as outer records (SETTINGS
// ACK 26 B, WINDOW_UPDATE 30 B, PING 34 B). Later (1 run in ~10), a page's
// first request flight (a 337 B HEADERS record), the first 24,944 B of the
// document, then a 53 B HEADERS for a subresource the preload scanner found
// matched too: so the hello-sized record starts at 529 B, a ClientHello's
// least (browsers and uTLS pad theirs to at least 512 B, RFC 7685; a 2026
// hello with a post-quantum key share is 1.2-1.9 KB) plus the outer
// record's tag, and the server flight is capped at 20 KiB, well above any
// common site's handshake flight (its certificate chain) and below most
// first flights of a page. Any inner TLS 1.3 handshake still makes the
// pattern unless something reshapes it.
//
// What it cannot see: packet timing finer than the relay's reads, and round
// trips (every party of the lab is on one host, so the inner handshake's
// extra round trip to the destination, which Xue et al. also use, is
// invisible here).
type TLSInTLS struct {
	// FinishedGap is the longest pause between the server flight and the
	// inner Finished. Default 1s (stretched by Budget).
	FinishedGap time.Duration

	mu    sync.Mutex
	flows map[uint64]*tlsTrack // guarded by mu
}

// Record-size bounds of the pattern, outer record payload bytes (inner record
// plus 17-22 bytes of outer AEAD overhead).
const (
	innerHelloMin    = 512 + 17
	innerHelloMax    = 3000
	serverFlightMin  = 400
	serverFlightMax  = 20 << 10
	innerSmallMin    = 40
	innerSmallMax    = 170
	flightRecordsMax = 4
)

// recordScanner follows TLS record headers through a byte stream.
type recordScanner struct {
	hdr  [5]byte
	nhdr int
	skip int  // body bytes of the current record still to pass
	bad  bool // not a TLS record stream
	n    int  // records seen
}

// feed consumes p and calls rec for every record header completed.
func (s *recordScanner) feed(p []byte, rec func(typ byte, n int)) {
	for len(p) > 0 && !s.bad {
		if s.skip > 0 {
			k := min(s.skip, len(p))
			s.skip -= k
			p = p[k:]
			continue
		}
		k := copy(s.hdr[s.nhdr:], p)
		s.nhdr += k
		p = p[k:]
		if s.nhdr < 5 {
			return
		}
		s.nhdr = 0
		typ, n := s.hdr[0], int(s.hdr[3])<<8|int(s.hdr[4])
		if typ < 20 || typ > 23 || s.hdr[1] != 3 || n > 16384+2048 {
			s.bad = true
			return
		}
		s.skip = n
		s.n++
		rec(typ, n)
	}
}

// flight is one client flight and the server's answer to it.
type flight struct {
	bytes, records, first, largest int
	server                         int       // server app-data bytes after it
	serverLast                     time.Time // when the server's last record of the answer was seen
	start                          time.Time
}

// tlsTrack is one flow's state: the last three flights, a sliding window.
type tlsTrack struct {
	up, down    recordScanner
	outerDone   bool // the client's first application-data record (Finished) passed
	win         []flight
	lastClient  bool // the last app-data record was the client's
	decided     bool
	matchReason string
	gap         time.Duration
}

func (*TLSInTLS) Name() string       { return "tls-in-tls" }
func (*TLSInTLS) Open(*Flow) Verdict { return Verdict{} }

func (m *TLSInTLS) Close(f *Flow) {
	m.mu.Lock()
	delete(m.flows, f.ID)
	m.mu.Unlock()
}

func (m *TLSInTLS) Data(f *Flow, dir Dir, p []byte) Verdict {
	if f.Network != "tcp" {
		return Verdict{}
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.flows == nil {
		m.flows = map[uint64]*tlsTrack{}
	}
	t := m.flows[f.ID]
	if t == nil {
		start := f.Seen(Up)
		if len(start) < 3 && dir == Up {
			return Verdict{} // too early to tell; the scanner starts once it is TLS
		}
		gap := m.FinishedGap
		if gap == 0 {
			gap = time.Second
		}
		t = &tlsTrack{gap: Budget(gap)}
		if len(start) < 3 || start[0] != 0x16 || start[1] != 3 {
			t.decided = true // not TLS: nothing to follow
		} else {
			t.up.feed(start[:len(start)-len(p)], func(typ byte, n int) { t.clientRecord(typ, n, time.Now()) })
		}
		m.flows[f.ID] = t
	}
	if t.decided {
		return Verdict{}
	}
	now := time.Now()
	if dir == Up {
		t.up.feed(p, func(typ byte, n int) { t.clientRecord(typ, n, now) })
	} else {
		t.down.feed(p, func(typ byte, n int) { t.serverRecord(typ, n, now) })
	}
	if t.matchReason != "" {
		t.decided = true
		return Verdict{Action: Reset, Reason: t.matchReason}
	}
	if t.up.bad || t.down.bad {
		t.decided = true
	}
	return Verdict{}
}

func (t *tlsTrack) clientRecord(typ byte, n int, now time.Time) {
	if typ != 23 {
		return
	}
	if !t.outerDone {
		t.outerDone = true // the outer Finished
		return
	}
	if !t.lastClient || len(t.win) == 0 {
		if len(t.win) == 3 {
			t.win = append(t.win[:0], t.win[1:]...)
		}
		t.win = append(t.win, flight{first: n, start: now})
		t.lastClient = true
		t.check()
	}
	cur := &t.win[len(t.win)-1]
	cur.bytes += n
	cur.records++
	cur.largest = max(cur.largest, n)
}

func (t *tlsTrack) serverRecord(typ byte, n int, now time.Time) {
	if typ != 23 || len(t.win) == 0 {
		return
	}
	cur := &t.win[len(t.win)-1]
	cur.server += n
	cur.serverLast = now
	t.lastClient = false
}

// check looks at C_k, S_k (the previous flight and its answer) and the first
// record of C_k+1, which just started.
func (t *tlsTrack) check() {
	if len(t.win) < 2 {
		return
	}
	c, next := t.win[len(t.win)-2], t.win[len(t.win)-1]
	hello := c.largest >= innerHelloMin && c.largest <= innerHelloMax && c.records <= flightRecordsMax
	server := c.server >= serverFlightMin && c.server <= serverFlightMax
	finished := next.first >= innerSmallMin && next.first <= innerSmallMax && next.start.Sub(c.serverLast) <= t.gap
	if hello && server && finished {
		t.matchReason = fmt.Sprintf("inner TLS handshake: client %d B (record %d B), server %d B, client %d B %v later",
			c.bytes, c.largest, c.server, next.first, next.start.Sub(c.serverLast).Round(time.Millisecond))
	}
}
