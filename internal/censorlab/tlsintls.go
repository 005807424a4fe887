package censorlab

import (
	"fmt"
	"sync"
)

// TLSInTLS looks for the record-size pattern of a TLS handshake carried
// inside an outer TLS connection (Xue et al., USENIX Security 2024; the
// "Trojan-killer" heuristic). It follows the outer TLS record headers of
// both directions; after the client's first application-data record (its
// Finished) it groups the client's application-data records into flights
// (records with no server data between them) and flags the flow when
//
//	C1 = the client's first flight, inner-ClientHello-sized (HelloMin..HelloMax bytes),
//	S1 = the server's answer, a handshake flight (at least ServerFlightMin bytes),
//	C2 = the first record of the client's next flight, Finished-sized (SmallMin..SmallMax bytes).
//
// A tiny first exchange (a proxy's own request and reply, both under 100
// bytes) shifts the window by one flight. XTLS Vision pads the inner
// Finished to 900+ bytes, so C2 never looks small.
type TLSInTLS struct {
	mu    sync.Mutex
	flows map[uint64]*tlsTrack // guarded by mu
}

// Record-size bounds of the pattern, outer record payload bytes (inner record
// plus 17-22 bytes of outer AEAD overhead).
const (
	innerHelloMin   = 200
	innerHelloMax   = 3000
	serverFlightMin = 400
	innerSmallMin   = 20
	innerSmallMax   = 170
	preambleMax     = 100
	tlsTrackRecords = 24 // stop following after this many records per direction
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

// tlsTrack is one flow's state.
type tlsTrack struct {
	up, down    recordScanner
	outerDone   bool  // the client's first application-data record (Finished) passed
	flights     []int // client flights: total app-data bytes
	firstRec    []int // client flights: size of the first record
	server      []int // server app-data bytes after each client flight
	lastClient  bool  // the last app-data record was the client's
	decided     bool
	matchReason string
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
		t = &tlsTrack{}
		if len(start) < 3 || start[0] != 0x16 || start[1] != 3 {
			t.decided = true // not TLS: nothing to follow
		} else {
			t.up.feed(start[:len(start)-len(p)], func(typ byte, n int) { t.clientRecord(typ, n) })
		}
		m.flows[f.ID] = t
	}
	if t.decided {
		return Verdict{}
	}
	if dir == Up {
		t.up.feed(p, func(typ byte, n int) { t.clientRecord(typ, n) })
	} else {
		t.down.feed(p, func(typ byte, n int) { t.serverRecord(typ, n) })
	}
	if t.matchReason != "" {
		t.decided = true
		return Verdict{Action: Reset, Reason: t.matchReason}
	}
	if t.up.bad || t.down.bad || t.up.n > tlsTrackRecords || t.down.n > tlsTrackRecords || len(t.flights) > 3 {
		t.decided = true
	}
	return Verdict{}
}

func (t *tlsTrack) clientRecord(typ byte, n int) {
	if typ != 23 {
		return
	}
	if !t.outerDone {
		t.outerDone = true // the outer Finished
		return
	}
	if !t.lastClient || len(t.flights) == 0 {
		t.flights = append(t.flights, 0)
		t.firstRec = append(t.firstRec, n)
		t.server = append(t.server, 0)
	}
	t.flights[len(t.flights)-1] += n
	t.lastClient = true
	t.check()
}

func (t *tlsTrack) serverRecord(typ byte, n int) {
	if typ != 23 || len(t.flights) == 0 {
		return
	}
	t.server[len(t.server)-1] += n
	t.lastClient = false
}

// check looks for C_k, S_k, C_k+1 once the client's next flight started.
func (t *tlsTrack) check() {
	for _, k := range []int{0, 1} {
		if len(t.flights) < k+2 {
			return
		}
		if k == 1 && (t.flights[0] >= preambleMax || t.server[0] >= preambleMax) {
			return
		}
		c1, s1, c2 := t.flights[k], t.server[k], t.firstRec[k+1]
		if c1 >= innerHelloMin && c1 <= innerHelloMax && s1 >= serverFlightMin && c2 >= innerSmallMin && c2 <= innerSmallMax {
			t.matchReason = fmt.Sprintf("inner TLS handshake: client %d B, server %d B, client %d B", c1, s1, c2)
			return
		}
	}
}
