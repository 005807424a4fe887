package censorlab

import (
	"fmt"
	"net/netip"
	"sync"
	"time"
)

// ByteBudget is Russia's 2025 "16 KB freeze": a TCP connection to a
// suspicious network (foreign data centres) freezes silently after Limit
// bytes server to client — no reset, the data just stops — whatever the
// protocol on top.
type ByteBudget struct {
	// Networks are the suspicious server networks.
	Networks []netip.Prefix
	// Limit is the budget in bytes. Default 16384.
	Limit int64
}

func (*ByteBudget) Name() string       { return "byte-budget" }
func (*ByteBudget) Open(*Flow) Verdict { return Verdict{} }
func (*ByteBudget) Close(*Flow)        {}

func (m *ByteBudget) limit() int64 {
	if m.Limit == 0 {
		return 16 << 10
	}
	return m.Limit
}

func (m *ByteBudget) Data(f *Flow, dir Dir, p []byte) Verdict {
	if dir != Down || f.Network != "tcp" || !inAny(m.Networks, f.Server.Addr()) {
		return Verdict{}
	}
	total := f.Count(Down)
	if total <= m.limit() {
		return Verdict{}
	}
	before := total - int64(len(p))
	return Verdict{Action: Freeze, Keep: int(max(0, m.limit()-before)),
		Reason: fmt.Sprintf("froze after %d bytes to a suspicious network", m.limit())}
}

func inAny(nets []netip.Prefix, a netip.Addr) bool {
	for _, n := range nets {
		if n.Contains(a) {
			return true
		}
	}
	return false
}

// ConnCount blocks a client→server pair that holds more than Max TCP
// connections at once, for BlockFor, cutting its live connections too.
type ConnCount struct {
	// Max is the most concurrent connections allowed. Default 4.
	Max int
	// BlockFor is how long the pair stays blocked. Default 60s.
	BlockFor time.Duration

	c      *Censor
	mu     sync.Mutex
	counts map[pairKey]int // guarded by mu
	open   map[uint64]bool // guarded by mu; counted flows
}

func (*ConnCount) Name() string       { return "conn-count" }
func (m *ConnCount) attach(c *Censor) { m.c = c }

func (m *ConnCount) Open(f *Flow) Verdict {
	if f.Network != "tcp" {
		return Verdict{}
	}
	limit := m.Max
	if limit == 0 {
		limit = 4
	}
	block := m.BlockFor
	if block == 0 {
		block = 60 * time.Second
	}
	k := pairKey{f.Client.Addr(), f.Server}
	m.mu.Lock()
	if m.counts == nil {
		m.counts, m.open = map[pairKey]int{}, map[uint64]bool{}
	}
	m.counts[k]++
	m.open[f.ID] = true
	n := m.counts[k]
	m.mu.Unlock()
	if n <= limit {
		return Verdict{}
	}
	reason := fmt.Sprintf("%d concurrent connections from %s (limit %d)", n, f.Client.Addr(), limit)
	if m.c != nil {
		m.c.BlockPair(f.Client.Addr(), f.Server, block, m.Name(), reason)
	}
	return Verdict{Action: Reset, Reason: reason}
}

func (m *ConnCount) Data(*Flow, Dir, []byte) Verdict { return Verdict{} }

func (m *ConnCount) Close(f *Flow) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.open[f.ID] {
		delete(m.open, f.ID)
		m.counts[pairKey{f.Client.Addr(), f.Server}]--
	}
}

// IPBlocklist is the static part of the block-list: addresses known before
// the lab starts (published VPN endpoints). The dynamic part — what the
// prober and connection counting find — lives in the Censor and is enforced
// in every scenario.
type IPBlocklist struct {
	// Known are server IPs refused from the start.
	Known []netip.Addr
}

func (*IPBlocklist) Name() string                    { return "ip-blocklist" }
func (*IPBlocklist) Open(*Flow) Verdict              { return Verdict{} }
func (*IPBlocklist) Data(*Flow, Dir, []byte) Verdict { return Verdict{} }
func (*IPBlocklist) Close(*Flow)                     {}

func (m *IPBlocklist) attach(c *Censor) {
	for _, ip := range m.Known {
		c.BlockIP(ip, 0, m.Name(), "known VPN endpoint")
	}
}
