package control

import (
	"context"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/burrow-vpn/burrow/internal/metrics"
)

// upWithin is how recently a node must have been heard from to count as up:
// a node's long poll comes back at least every 25 s, its status every 10 s.
const upWithin = time.Minute

// planeStats counts what the control plane served since it started.
type planeStats struct {
	syncChanges, syncSnapshots   atomic.Int64
	pushesApplied, pushesRetried atomic.Int64
	loans, loanBytes             atomic.Int64

	mu   sync.Mutex
	seen map[int64]nodeSeen // by node ID; guarded by mu
}

// nodeSeen is what this process last heard from a node.
type nodeSeen struct {
	at      time.Time
	applied int64 // the version of its last sync request; -1 if none yet
}

// heard records a request of node's at now.
func (s *planeStats) heard(node int64, now time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.seen == nil {
		s.seen = map[int64]nodeSeen{}
	}
	ns, ok := s.seen[node]
	if !ok {
		ns.applied = -1
	}
	ns.at = now
	s.seen[node] = ns
}

// synced records that node asked for the changes after version after: it
// holds that version.
func (s *planeStats) synced(node, after int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	ns := s.seen[node]
	ns.applied = after
	s.seen[node] = ns
}

// Metrics returns what a scrape reports: the store's latency (a timed
// Version query), each live node's lag and last contact, and the counters.
// A node's applied version and last contact are the newer of what this
// process heard and what the node's status report in the store says.
func (p *Plane) Metrics(ctx context.Context) *metrics.Control {
	c := &metrics.Control{
		SyncChanges: p.stats.syncChanges.Load(), SyncSnapshots: p.stats.syncSnapshots.Load(),
		PushesApplied: p.stats.pushesApplied.Load(), PushesRetried: p.stats.pushesRetried.Load(),
		Loans: p.stats.loans.Load(), LoanBytes: p.stats.loanBytes.Load(),
	}
	start := time.Now()
	v, err := p.store.Version(ctx)
	if err == nil {
		c.StoreUp, c.StoreLatency, c.LogVersion = true, time.Since(start), v
	}
	now := time.Now()
	p.mu.Lock()
	nodes := make([]*Node, 0, len(p.byShort))
	for _, n := range p.byShort { // live nodes, reread every NodeRefresh
		nodes = append(nodes, n)
	}
	p.mu.Unlock()
	sort.Slice(nodes, func(i, j int) bool { return nodes[i].Name < nodes[j].Name })
	p.stats.mu.Lock()
	defer p.stats.mu.Unlock()
	for _, n := range nodes {
		cn := metrics.ControlNode{Name: n.Name, Role: string(n.Role), Applied: -1, LastSeen: -1}
		last := n.Status.LastSeen
		if n.Status.AppliedVersion > 0 {
			cn.Applied = n.Status.AppliedVersion
		}
		if ns, ok := p.stats.seen[n.ID]; ok {
			if ns.at.After(last) {
				last = ns.at
			}
			cn.Applied = max(cn.Applied, ns.applied)
		}
		if !last.IsZero() {
			cn.LastSeen = max(now.Sub(last), 0)
			cn.Up = cn.LastSeen < upWithin
		}
		c.Nodes = append(c.Nodes, cn)
	}
	return c
}
