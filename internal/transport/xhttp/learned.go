package xhttp

import (
	"cmp"
	"sync"
	"time"
)

// Learning the path's limits.
//
// A censor's limits differ by operator and change without notice, so a
// dialer learns them from what it observes instead of reading them from a
// link or a flag:
//
//   - a freeze: a connection that stops receiving in the middle of a
//     transfer (the dialer probes it, adapt.go; the client's plain
//     connections report theirs too) after R bytes. Two freezes at about
//     the same R (within a quarter) are a byte budget: new connections then
//     rotate at R minus a margin, first 1/32 of R (the server also stops
//     short of its budget by ~1 KiB, see the package doc), doubled whenever
//     a connection rotating at the budget still freezes near R, up to R/2.
//     The margin starts thin because below ~8 KiB the REALITY handshake
//     (~2 KB) leaves little else. Until then no connection rotates: an
//     unfrozen path carries every session over one or two long
//     connections, as a browser does, which keeps far below any
//     connection-rate rule (16 new connections per 10 s per
//     client→server pair in the lab).
//   - a connection cap: new connections reset or black-holed (twice within
//     refusalPair) while K−1 were open, and others on the path were
//     receiving, cap the pool at K−1 (never below 1). (A connection that
//     opened beside K−1 others does not clear a refusal: the client cannot
//     tell whether a box on the path still counted the ones it was closing.)
//
// A budget never goes below budgetFloor: a freeze that leaves less than
// minFreezeData of data after the connection's handshake (a connection stalled
// right after it opened) teaches nothing, and a budget must leave a
// connection room for its handshake, the reserve and some data, or every
// dial would fail for LearnTTL.
//
// Learned keeps this in memory only, by a key its user chooses (the
// client: its network and the server; the relay: the exit). An entry
// expires LearnTTL after it was last confirmed (a limit set, lowered or
// met again, or a rotating connection that carried its budget without
// freezing), as operators change their limits.

// LearnTTL is how long a learned limit is kept after it was last confirmed.
const LearnTTL = 6 * time.Hour

// refusalPair is how close in time two refusals must be to make a cap.
const refusalPair = 2 * time.Minute

// budgetFloor is the least budget that leaves a connection whose handshake
// took hs bytes room for the reserve and some data (Dialer.dial).
// Without a measured handshake it is MinBudget.
func budgetFloor(hs int64) int64 {
	if hs == 0 {
		return MinBudget
	}
	return hs + hsReserve + minRoom + minData + floorSlack
}

// floorSlack lets a connection whose handshake is a little larger than
// the largest one seen still rotate at a budget at the floor.
const floorSlack = 256

// minFreezeData is the least data after the handshake a freeze must leave
// to teach a budget (MinBudget in all when the handshake is not measured):
// less is a connection that stalled as it opened.
const minFreezeData = 2 << 10

// Learned holds what dialers learned about the paths they used, by a key
// the caller chooses (the client: its network and the server; the relay:
// the exit). The zero value is ready; it may be shared by several dialers.
// Dialers feed it through their Limits.
type Learned struct {
	mu   sync.Mutex
	nets map[string]*netLimits // guarded by mu
	now  func() time.Time      // for tests; nil means time.Now
}

// netLimits are one network's learned limits.
type netLimits struct {
	stalls    []int64   // received bytes of freezes not yet confirmed, newest last
	hs        int64     // the largest handshake reported with a freeze
	level     int64     // the confirmed freeze: connections froze after about this much
	margin    int64     // how far below level connections rotate
	budget    int64     // level - margin, at least budgetFloor(hs); 0: no freeze seen
	maxConns  int       // 0: no cap seen
	refusals  int       // refused connections not yet confirmed
	refusedAt int       // the least open count they were refused at
	refusedT  time.Time // when the last of them was
	until     time.Time
}

// setBudgetLocked sets the budget from level and margin, kept at or above
// the floor the handshake needs; mu must be held.
func (n *netLimits) setBudgetLocked() {
	n.budget = max(n.level-n.margin, budgetFloor(n.hs))
}

// Known is a snapshot of what is known about one path.
type Known struct {
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
// makes a missing entry, which expires LearnTTL after it was made unless a
// limit confirms it (renewLocked).
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
		n = &netLimits{until: l.clock().Add(LearnTTL)}
		l.nets[key] = n
	}
	return n
}

// renewLocked keeps n another LearnTTL: one of its limits was confirmed.
func (l *Learned) renewLocked(n *netLimits) { n.until = l.clock().Add(LearnTTL) }

// Get returns the limits learned for key.
func (l *Learned) Get(key string) Known {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := l.getLocked(key, false)
	if n == nil {
		return Known{}
	}
	return Known{Budget: n.budget, MaxConns: n.maxConns}
}

// near reports whether two freezes, after a and b bytes, are the same
// limit: within a quarter of each other (a censor's "16–20 KB").
func near(a, b int64) bool { return max(a, b)-min(a, b) <= max(a, b)/4 }

// Stalled records a freeze after rx bytes, handshake size unknown (a plain
// connection's); see StalledAfter.
func (l *Learned) Stalled(key string, rx int64, rotating bool) bool {
	return l.StalledAfter(key, rx, 0, rotating)
}

// StalledAfter records a freeze after rx bytes, hs of them the connection's
// handshake, of a connection that rotated (at a budget) or not; it reports
// whether this confirmed or lowered the budget. A freeze with less than
// minFreezeData after the handshake is ignored (MinBudget in all when hs
// is 0, not measured): a connection that stalled as
// it opened says nothing of a byte limit, and a budget there would leave
// no room for data. A rotating connection that still froze near the known
// level means the margin is too thin (the server's count of what it sends
// is an estimate): the margin doubles, up to half the level. One that did
// not rotate (opened before the budget was known) only confirms it.
func (l *Learned) StalledAfter(key string, rx, hs int64, rotating bool) bool {
	if least := cmp.Or(hs, MinBudget-minFreezeData) + minFreezeData; rx < least {
		return false
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	n := l.getLocked(key, true)
	n.hs = max(n.hs, hs)
	if n.level > 0 && near(n.level, rx) {
		l.renewLocked(n)
		if !rotating {
			return false
		}
		n.level = min(n.level, rx)
		n.margin = min(2*n.margin, n.level/2)
		n.setBudgetLocked()
		return true
	}
	for _, prev := range n.stalls {
		if !near(prev, rx) {
			continue
		}
		n.stalls = nil
		if lo := min(prev, rx); n.level == 0 || lo < n.level {
			n.level, n.margin = lo, max(lo/32, 64)
			n.setBudgetLocked()
			l.renewLocked(n)
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

// Carried records a connection that rotated at budget having carried it
// without freezing: the learned budget still holds, and is kept another
// LearnTTL instead of being relearned from two more freezes.
func (l *Learned) Carried(key string, budget int64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if n := l.getLocked(key, false); n != nil && n.budget > 0 && budget >= n.budget {
		l.renewLocked(n)
	}
}

// Refused records a new connection refused while open others were open
// (and receiving); a second such within refusalPair makes a cap: at most
// as many concurrent connections as the fewest open at a refusal. (One
// alone may be a server restarting or a network hiccup.) It reports
// whether the cap went down.
func (l *Learned) Refused(key string, open int) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := l.getLocked(key, true)
	now := l.clock()
	if n.refusals > 0 && now.Sub(n.refusedT) > refusalPair {
		n.refusals = 0 // too old to pair with
	}
	c := max(1, open)
	if n.refusals == 0 || c < n.refusedAt {
		n.refusedAt = c
	}
	n.refusals++
	n.refusedT = now
	if n.refusals < 2 {
		return false
	}
	n.refusals = 0
	if n.maxConns == 0 || n.refusedAt < n.maxConns {
		n.maxConns = n.refusedAt
		l.renewLocked(n)
		return true
	}
	return false
}
