package censorlab

import (
	"fmt"
	"net/netip"
	"sync"
	"time"
)

// ConnRate blocks a client that opens new TCP connections, or starts TLS
// handshakes, faster than ordinary browsing does: per client→server pair
// and per client towards any server, counted over a sliding Window. It
// uses only what connection counting sees (flow opens and ClientHellos),
// so any TSPU-like box can run it. The defaults are calibrated on the
// lab's benign controls (headless-Chromium-shaped browsing, see Controls):
// a browser keeps one or two HTTP/2 connections per origin and reuses them,
// six at most towards an HTTP/1.1 host, so a pair that opens more than 16
// in 10 seconds is not a browser.
type ConnRate struct {
	// PerPair is the most new connections client→server in Window. Default 16.
	PerPair int
	// PerClient is the most new connections from one client to all servers
	// in Window. Default 64 (a news page reaches dozens of hosts).
	PerClient int
	// Handshakes is the most TLS ClientHellos client→server in Window.
	// Default 16.
	Handshakes int
	// ClientHandshakes is the most TLS ClientHellos from one client to all
	// servers in Window. Default 64.
	ClientHandshakes int
	// Window is the sliding window. Default 10s.
	Window time.Duration
	// BlockFor is how long a caught pair stays blocked. Default 60s.
	BlockFor time.Duration

	c          *Censor
	mu         sync.Mutex
	pairs      map[pairKey][]time.Time    // guarded by mu; connection opens per pair in the window
	clients    map[netip.Addr][]time.Time // guarded by mu; connection opens per client in the window
	handshakes map[pairKey][]time.Time    // guarded by mu; ClientHellos per pair in the window
	clientHS   map[netip.Addr][]time.Time // guarded by mu; ClientHellos per client in the window
	helloSeen  map[uint64]bool            // guarded by mu; flows whose first client bytes were judged
}

// Rule names of ConnRate's two rules.
const (
	RuleConnRate      = "conn-rate"
	RuleHandshakeRate = "handshake-rate"
)

func (*ConnRate) Name() string       { return RuleConnRate }
func (m *ConnRate) attach(c *Censor) { m.c = c }

func (m *ConnRate) defaults() (pair, client, hs int, window, block time.Duration) {
	pair, client, hs, window, block = m.PerPair, m.PerClient, m.Handshakes, m.Window, m.BlockFor
	if pair == 0 {
		pair = 16
	}
	if client == 0 {
		client = 64
	}
	if hs == 0 {
		hs = 16
	}
	if window == 0 {
		window = 10 * time.Second
	}
	if block == 0 {
		block = 60 * time.Second
	}
	return
}

// slide appends now to the times in the window ending now and returns them.
func slide(ts []time.Time, now time.Time, window time.Duration) []time.Time {
	i := 0
	for i < len(ts) && now.Sub(ts[i]) >= window {
		i++
	}
	return append(ts[i:], now)
}

func (m *ConnRate) Open(f *Flow) Verdict {
	if f.Network != "tcp" {
		return Verdict{}
	}
	pairMax, clientMax, _, window, _ := m.defaults()
	k := pairKey{f.Client.Addr(), f.Server}
	now := time.Now()
	m.mu.Lock()
	if m.pairs == nil {
		m.pairs, m.clients = map[pairKey][]time.Time{}, map[netip.Addr][]time.Time{}
		m.handshakes, m.helloSeen = map[pairKey][]time.Time{}, map[uint64]bool{}
		m.clientHS = map[netip.Addr][]time.Time{}
	}
	m.pairs[k] = slide(m.pairs[k], now, window)
	m.clients[k.client] = slide(m.clients[k.client], now, window)
	np, nc := len(m.pairs[k]), len(m.clients[k.client])
	m.mu.Unlock()
	switch {
	case np > pairMax:
		return m.block(f, RuleConnRate, fmt.Sprintf("%d new connections %s→%s in %v (limit %d)", np, f.Client.Addr(), f.Server, window, pairMax))
	case nc > clientMax:
		return m.block(f, RuleConnRate, fmt.Sprintf("%d new connections from %s in %v (limit %d)", nc, f.Client.Addr(), window, clientMax))
	}
	return Verdict{}
}

func (m *ConnRate) Data(f *Flow, dir Dir, _ []byte) Verdict {
	if dir != Up || f.Network != "tcp" {
		return Verdict{}
	}
	m.mu.Lock()
	done := m.helloSeen[f.ID] // nil map before the first Open: not done
	m.mu.Unlock()
	if done {
		return Verdict{}
	}
	_, complete, err := PeekHello(f.Seen(Up))
	if !complete {
		return Verdict{}
	}
	_, _, hsMax, window, _ := m.defaults()
	clientMax := m.ClientHandshakes
	if clientMax == 0 {
		clientMax = 64
	}
	k := pairKey{f.Client.Addr(), f.Server}
	now := time.Now()
	m.mu.Lock()
	if m.helloSeen == nil { // Data before Open: a flow this box did not see open
		m.mu.Unlock()
		return Verdict{}
	}
	m.helloSeen[f.ID] = true
	np, nc := 0, 0
	if err == nil {
		m.handshakes[k] = slide(m.handshakes[k], now, window)
		m.clientHS[k.client] = slide(m.clientHS[k.client], now, window)
		np, nc = len(m.handshakes[k]), len(m.clientHS[k.client])
	}
	m.mu.Unlock()
	switch {
	case np > hsMax:
		return m.block(f, RuleHandshakeRate, fmt.Sprintf("%d TLS handshakes %s→%s in %v (limit %d)", np, f.Client.Addr(), f.Server, window, hsMax))
	case nc > clientMax:
		return m.block(f, RuleHandshakeRate, fmt.Sprintf("%d TLS handshakes from %s in %v (limit %d)", nc, f.Client.Addr(), window, clientMax))
	}
	return Verdict{}
}

func (m *ConnRate) Close(f *Flow) {
	m.mu.Lock()
	delete(m.helloSeen, f.ID)
	m.mu.Unlock()
}

// block puts the pair on the block-list for BlockFor and resets the flow.
func (m *ConnRate) block(f *Flow, rule, reason string) Verdict {
	_, _, _, _, block := m.defaults()
	if m.c != nil {
		m.c.BlockPair(f.Client.Addr(), f.Server, block, rule, reason)
	}
	return Verdict{Action: Reset, Rule: rule, Reason: reason}
}
