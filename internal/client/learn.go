package client

import (
	"net"
	"net/netip"
	"sync"
	"time"
)

// Learning the network's limits.
//
// A censor's limits differ by operator and change without notice, so the
// client learns them from what it observes instead of reading them from the
// link or a flag:
//
//   - a freeze: a connection that stops receiving in the middle of a
//     transfer (the XHTTP dialer probes it, adapt.go in
//     internal/transport/xhttp; a plain connection goes silent, fallback.go)
//     after R bytes. Two freezes at about the same R (within a quarter) are
//     a byte budget: new XHTTP connections then rotate at R minus a margin,
//     first 1/32 of R (the server also stops short of its budget by ~1 KiB,
//     see the xhttp package doc), doubled whenever a connection rotating
//     at the budget still freezes near R, up to R/2. The margin starts thin
//     because below ~8 KiB the REALITY handshake (~2 KB) leaves little else. Until then no connection rotates: an unfrozen path carries every
//     session over one or two long connections, as a browser does, which
//     keeps the client far below any connection-rate rule (16 new
//     connections per 10 s per client→server pair in the lab).
//   - a connection cap: new connections reset or black-holed (twice) while
//     K−1 were open cap the pool at K−1 (never below 1). The pool starts at
//     defaultPoolConns, the smallest cap a rotating pool works with (one
//     carrying, one warming up), so caps of 2 and more are never hit.
//
// What is learned is kept in memory only (Learned), per network: the
// local address the connections to the server leave from (its /24, or /64
// for IPv6), with the server address. Nothing is written to disk, so
// nothing on the device records where the user connects; a restart
// relearns (two frozen connections, whose transfers resume elsewhere). An
// entry expires learnTTL after it was last confirmed, as operators change
// their limits.

const (
	learnTTL = 6 * time.Hour
	// defaultPoolConns is the XHTTP pool size when nothing says otherwise.
	defaultPoolConns = 2
)

// Learned holds what the client learned about the networks it used. The
// zero value is ready; one Learned may be shared by several tunnels.
type Learned struct {
	mu   sync.Mutex
	nets map[string]*netLimits // guarded by mu
	last map[string]string     // guarded by mu; server → the network key it was last reached from
	now  func() time.Time      // for tests; nil means time.Now
}

// netLimits are one network's learned limits.
type netLimits struct {
	stalls    []int64 // received bytes of freezes not yet confirmed, newest last
	level     int64   // the confirmed freeze: connections froze after about this much
	margin    int64   // how far below level connections rotate
	budget    int64   // level - margin; 0: no freeze seen
	maxConns  int     // 0: no cap seen
	refusals  int     // refused connections not yet confirmed
	refusedAt int     // the least open count they were refused at
	until     time.Time
}

// Limits is a snapshot of what is known about one network.
type Limits struct {
	Budget   int64 // bytes per connection towards the client; 0: none learned
	MaxConns int   // concurrent connections; 0: none learned
}

func (l *Learned) clock() time.Time {
	if l.now != nil {
		return l.now()
	}
	return time.Now()
}

// getLocked returns the entry for key, dropping an expired one; create
// makes a missing entry.
func (l *Learned) getLocked(key string, create bool) *netLimits {
	n := l.nets[key]
	if n != nil && l.clock().After(n.until) {
		delete(l.nets, key)
		n = nil
	}
	if n == nil && create {
		if l.nets == nil {
			l.nets = make(map[string]*netLimits)
		}
		n = &netLimits{}
		l.nets[key] = n
	}
	if n != nil && create {
		n.until = l.clock().Add(learnTTL)
	}
	return n
}

// Get returns the limits learned for key.
func (l *Learned) Get(key string) Limits {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := l.getLocked(key, false)
	if n == nil {
		return Limits{}
	}
	return Limits{Budget: n.budget, MaxConns: n.maxConns}
}

// near reports whether two freezes, after a and b bytes, are the same
// limit: within a quarter of each other (a censor's "16–20 KB").
func near(a, b int64) bool { return max(a, b)-min(a, b) <= max(a, b)/4 }

// Stalled records a freeze after rx bytes of a connection that rotated
// (at a budget) or not; it reports whether this confirmed or lowered the
// budget. A rotating connection that still froze near the known level
// means the margin is too thin (the server's count of what it sends is an
// estimate): the margin doubles, up to half the level. One that did not
// rotate (opened before the budget was known) adds nothing.
func (l *Learned) Stalled(key string, rx int64, rotating bool) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := l.getLocked(key, true)
	if n.level > 0 && near(n.level, rx) {
		if !rotating {
			return false
		}
		n.level = min(n.level, rx)
		n.margin = min(2*n.margin, n.level/2)
		n.budget = n.level - n.margin
		return true
	}
	for _, prev := range n.stalls {
		if !near(prev, rx) {
			continue
		}
		n.stalls = nil
		if lo := min(prev, rx); n.level == 0 || lo < n.level {
			n.level, n.margin = lo, max(lo/32, 64)
			n.budget = n.level - n.margin
			return true
		}
		return false
	}
	n.stalls = append(n.stalls, rx)
	if len(n.stalls) > 4 {
		n.stalls = n.stalls[1:]
	}
	return false
}

// Refused records a new connection refused while open others were open;
// the second such makes a cap: at most as many concurrent connections as
// the fewest open at a refusal. (One alone may be a server restarting or
// a network hiccup.) It reports whether the cap went down.
func (l *Learned) Refused(key string, open int) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := l.getLocked(key, true)
	c := max(1, open)
	if n.refusals == 0 || c < n.refusedAt {
		n.refusedAt = c
	}
	n.refusals++
	if n.refusals < 2 {
		return false
	}
	n.refusals = 0
	if n.maxConns == 0 || n.refusedAt < n.maxConns {
		n.maxConns = n.refusedAt
		return true
	}
	return false
}

// seen records that server was reached from the network key.
func (l *Learned) seen(server, key string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.last == nil {
		l.last = make(map[string]string)
	}
	l.last[server] = key
}

// lastKey is the network server was last reached from, for a tunnel that
// has not connected yet; ok is false if none.
func (l *Learned) lastKey(server string) (key string, ok bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	key, ok = l.last[server]
	return key, ok
}

// networkKey names the network a connection to server left from: the
// local address's /24 (/64 for IPv6) and the server. It is never written
// anywhere.
func networkKey(local net.Addr, server string) string {
	ap, err := netip.ParseAddrPort(local.String())
	if err != nil {
		return "?>" + server
	}
	bits := 24
	if !ap.Addr().Unmap().Is4() {
		bits = 64
	}
	p, _ := ap.Addr().Unmap().Prefix(bits)
	return p.String() + ">" + server
}
