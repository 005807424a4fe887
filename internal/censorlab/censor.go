package censorlab

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// Dir is one direction of a flow.
type Dir uint8

const (
	Up   Dir = iota // client to server
	Down            // server to client
)

func (d Dir) String() string {
	if d == Up {
		return "up"
	}
	return "down"
}

// Action is what a middlebox wants done with a flow.
type Action uint8

const (
	Pass   Action = iota // forward
	Freeze               // silently stop forwarding both ways; keep both sockets open
	Reset                // cut both sides with a TCP reset (UDP: drop everything from now on)
)

func (a Action) String() string {
	return [...]string{"pass", "freeze", "reset"}[a]
}

// Verdict is a middlebox's decision about a flow.
type Verdict struct {
	Action Action
	// Rule names the middlebox that decided (Middlebox.Name), for the table.
	Rule string
	// Reason says why, in words.
	Reason string
	// Keep is, for Freeze on Data, how many bytes of the current piece still
	// pass before the freeze (the byte budget cuts mid-segment).
	Keep int
}

// MaxInspect is how many bytes of each direction a flow keeps for
// middleboxes to inspect (Flow.Seen). Real DPI also gives up after the first
// packets.
const MaxInspect = 64 << 10

// Flow is one TCP connection or one UDP association (a client address and
// a server address) as the censor sees it. Its methods are safe for
// concurrent use.
type Flow struct {
	ID      uint64
	Network string // "tcp" or "udp"
	Client  netip.AddrPort
	Server  netip.AddrPort
	Start   time.Time

	closed sync.Once // Censor.closeFlow runs once, at whichever end comes first

	mu     sync.Mutex
	seen   [2][]byte // guarded by mu; first MaxInspect bytes per direction (TCP) or of the datagrams (UDP)
	count  [2]int64  // guarded by mu; bytes per direction
	pieces [2]int    // guarded by mu; reads (TCP) or datagrams (UDP) per direction
}

// Seen returns the first bytes (at most MaxInspect) that went in direction d,
// the current piece included: the reassembled stream, whatever the segments.
func (f *Flow) Seen(d Dir) []byte {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.seen[d][:len(f.seen[d]):len(f.seen[d])] // callers cannot append into it
}

// Count returns the bytes that went in direction d, the current piece included.
func (f *Flow) Count(d Dir) int64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.count[d]
}

// Pieces returns how many reads (TCP) or datagrams (UDP) went in direction d,
// the current one included.
func (f *Flow) Pieces(d Dir) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.pieces[d]
}

func (f *Flow) add(d Dir, p []byte) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if room := MaxInspect - len(f.seen[d]); room > 0 {
		if f.seen[d] == nil {
			f.seen[d] = make([]byte, 0, min(MaxInspect, max(4096, 2*len(p))))
		}
		// Appending never changes bytes an older Seen returned.
		f.seen[d] = append(f.seen[d], p[:min(room, len(p))]...)
	}
	f.count[d] += int64(len(p))
	f.pieces[d]++
}

// Middlebox is one censor technique. The censor calls it for every flow on
// the path; the first non-Pass verdict of any middlebox is applied. Calls for
// one flow and direction are sequential; different flows are concurrent.
type Middlebox interface {
	// Name is the rule name shown in the table ("signatures", "prober", ...).
	Name() string
	// Open judges a new flow before any byte moves.
	Open(f *Flow) Verdict
	// Data judges the next piece of direction dir: for TCP the next bytes of
	// the reassembled stream (f.Seen(dir) already ends with them), for UDP
	// one datagram.
	Data(f *Flow, dir Dir, p []byte) Verdict
	// Close tells the middlebox the flow ended.
	Close(f *Flow)
}

// attacher is implemented by middleboxes that act on their own (the prober,
// connection counting, the IP block-list): they get the censor to block
// addresses and record events.
type attacher interface{ attach(c *Censor) }

// waiter is implemented by middleboxes with background work (the prober);
// Censor.Settle waits for it.
type waiter interface{ wait() }

// Event is one detection or enforcement by the censor.
type Event struct {
	Time   time.Time
	Flow   uint64 // 0 when not about one flow (a prober verdict)
	Server netip.AddrPort
	Rule   string
	Action Action
	Reason string
}

func (e Event) String() string {
	return fmt.Sprintf("%s %s %s: %s", e.Rule, e.Action, e.Server, e.Reason)
}

// blockEntry is an address on the block-list, and which rule put it there.
type blockEntry struct {
	until  time.Time // zero = forever
	rule   string
	reason string
}

// pairKey is a client IP and a server address, for blocks of one pair.
type pairKey struct {
	client netip.Addr
	server netip.AddrPort
}

// Censor is the network path between clients and servers: a userspace TCP
// and UDP relay on loopback that shows every flow to its middleboxes and
// applies their verdicts, plus the block-list they feed. Expose a server,
// point the client at the returned address. The zero value is not usable;
// use NewCensor.
type Censor struct {
	// Listen is where Expose opens relays. Default "127.0.0.1:0".
	Listen string
	// Dial reaches servers from the path. Default net.Dialer.
	Dial DialFunc

	boxes  []Middlebox
	nextID atomic.Uint64

	mu        sync.Mutex
	ips       map[netip.Addr]blockEntry // guarded by mu; blocked server IPs
	pairs     map[pairKey]blockEntry    // guarded by mu; blocked client→server pairs
	events    []Event                   // guarded by mu
	live      map[uint64]*liveFlow      // guarded by mu
	listeners []io.Closer               // guarded by mu
	closed    bool                      // guarded by mu

	wg sync.WaitGroup // relay loops and flow pumps
}

// liveFlow is a flow being relayed, so a block can cut it.
type liveFlow struct {
	flow *Flow
	cut  func(Action) // applies a verdict from outside the pumps
}

// NewCensor returns a censor with the given middleboxes, in order.
func NewCensor(boxes ...Middlebox) *Censor {
	c := &Censor{
		boxes: boxes,
		ips:   map[netip.Addr]blockEntry{},
		pairs: map[pairKey]blockEntry{},
		live:  map[uint64]*liveFlow{},
	}
	for _, b := range boxes {
		if a, ok := b.(attacher); ok {
			a.attach(c)
		}
	}
	return c
}

// Record adds an event to the censor's log.
func (c *Censor) Record(e Event) {
	if e.Time.IsZero() {
		e.Time = time.Now()
	}
	c.mu.Lock()
	c.events = append(c.events, e)
	c.mu.Unlock()
}

// Events returns a copy of the event log.
func (c *Censor) Events() []Event {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.events)
}

// BlockIP puts ip on the block-list for d (0 = for good) and cuts its live
// flows with a reset.
func (c *Censor) BlockIP(ip netip.Addr, d time.Duration, rule, reason string) {
	c.mu.Lock()
	c.ips[ip] = blockEntry{until: deadline(d), rule: rule, reason: reason}
	cut := c.matchingLocked(func(f *Flow) bool { return f.Server.Addr() == ip })
	c.mu.Unlock()
	for _, lf := range cut {
		lf.cut(Reset)
	}
}

// BlockPair blocks new and live flows from client to server for d.
func (c *Censor) BlockPair(client netip.Addr, server netip.AddrPort, d time.Duration, rule, reason string) {
	c.mu.Lock()
	c.pairs[pairKey{client, server}] = blockEntry{until: deadline(d), rule: rule, reason: reason}
	cut := c.matchingLocked(func(f *Flow) bool { return f.Client.Addr() == client && f.Server == server })
	c.mu.Unlock()
	for _, lf := range cut {
		lf.cut(Reset)
	}
}

// IPBlocked reports whether flows to ip are refused now.
func (c *Censor) IPBlocked(ip netip.Addr) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	_, ok := c.blockedLocked(ip, pairKey{})
	return ok
}

func deadline(d time.Duration) time.Time {
	if d <= 0 {
		return time.Time{}
	}
	return time.Now().Add(d)
}

func (c *Censor) matchingLocked(match func(*Flow) bool) []*liveFlow {
	var out []*liveFlow
	for _, lf := range c.live {
		if match(lf.flow) {
			out = append(out, lf)
		}
	}
	return out
}

// blockedLocked returns the block-list entry that refuses a flow to ip (and
// for pair, when valid).
func (c *Censor) blockedLocked(ip netip.Addr, pair pairKey) (blockEntry, bool) {
	now := time.Now()
	if e, ok := c.ips[ip]; ok && (e.until.IsZero() || now.Before(e.until)) {
		return e, true
	}
	if e, ok := c.pairs[pair]; ok && pair.client.IsValid() && (e.until.IsZero() || now.Before(e.until)) {
		return e, true
	}
	return blockEntry{}, false
}

// open registers a new flow and asks the block-list and every middlebox.
func (c *Censor) open(f *Flow, cut func(Action)) Verdict {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return Verdict{Action: Reset, Rule: "censor", Reason: "censor stopped"}
	}
	e, blocked := c.blockedLocked(f.Server.Addr(), pairKey{f.Client.Addr(), f.Server})
	c.live[f.ID] = &liveFlow{flow: f, cut: cut}
	c.mu.Unlock()
	if blocked {
		v := Verdict{Action: Reset, Rule: e.rule, Reason: "on the block-list: " + e.reason}
		c.Record(Event{Flow: f.ID, Server: f.Server, Rule: v.Rule, Action: v.Action, Reason: v.Reason})
		return v
	}
	for _, b := range c.boxes {
		if v := b.Open(f); v.Action != Pass {
			return c.decided(f, b, v)
		}
	}
	return Verdict{}
}

// data shows one piece to every middlebox.
func (c *Censor) data(f *Flow, dir Dir, p []byte) Verdict {
	f.add(dir, p)
	for _, b := range c.boxes {
		if v := b.Data(f, dir, p); v.Action != Pass {
			return c.decided(f, b, v)
		}
	}
	return Verdict{Keep: len(p)}
}

func (c *Censor) decided(f *Flow, b Middlebox, v Verdict) Verdict {
	if v.Rule == "" {
		v.Rule = b.Name()
	}
	c.Record(Event{Flow: f.ID, Server: f.Server, Rule: v.Rule, Action: v.Action, Reason: v.Reason})
	return v
}

// closeFlow ends a flow for the block-list and every middlebox, once: a
// conntrack forgets a TCP flow when FINs have passed both ways or a reset
// has, before the relay forwards that last FIN or reset (see tcpPath.pump),
// so a client that saw the end cannot open its next connection while the
// old one still counts.
func (c *Censor) closeFlow(f *Flow) {
	f.closed.Do(func() {
		c.mu.Lock()
		delete(c.live, f.ID)
		c.mu.Unlock()
		for _, b := range c.boxes {
			b.Close(f)
		}
	})
}

func (c *Censor) newFlow(network string, client, server netip.AddrPort) *Flow {
	return &Flow{ID: c.nextID.Add(1), Network: network, Client: netip.AddrPortFrom(client.Addr().Unmap(), client.Port()), Server: server, Start: time.Now()}
}

func (c *Censor) track(l io.Closer) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		l.Close()
		return errors.New("censorlab: censor closed")
	}
	c.listeners = append(c.listeners, l)
	return nil
}

// Settle waits until background middlebox work (probes in flight) is done.
func (c *Censor) Settle() {
	for _, b := range c.boxes {
		if w, ok := b.(waiter); ok {
			w.wait()
		}
	}
}

// Close stops the relays, cuts every live flow and waits for all goroutines.
func (c *Censor) Close() error {
	c.mu.Lock()
	c.closed = true
	ls := c.listeners
	c.listeners = nil
	live := c.matchingLocked(func(*Flow) bool { return true })
	c.mu.Unlock()
	for _, l := range ls {
		l.Close()
	}
	for _, lf := range live {
		lf.cut(Reset)
	}
	for _, b := range c.boxes {
		if s, ok := b.(interface{ stop() }); ok {
			s.stop()
		}
	}
	c.Settle()
	c.wg.Wait()
	return nil
}

// ExposeTCP starts a relay on c.Listen that carries TCP connections to
// server through the censor, and returns its address.
func (c *Censor) ExposeTCP(ctx context.Context, server netip.AddrPort) (netip.AddrPort, error) {
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", c.listenAddr())
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("censorlab: relay listen: %w", err)
	}
	if err := c.track(ln); err != nil {
		return netip.AddrPort{}, err
	}
	c.wg.Go(func() { c.acceptLoop(ln.(*net.TCPListener), server) })
	return ln.Addr().(*net.TCPAddr).AddrPort(), nil
}

func (c *Censor) listenAddr() string {
	if c.Listen == "" {
		return "127.0.0.1:0"
	}
	return c.Listen
}

func (c *Censor) dial(ctx context.Context, network string, server netip.AddrPort) (net.Conn, error) {
	if c.Dial != nil {
		return c.Dial(ctx, network, server.String())
	}
	var d net.Dialer
	return d.DialContext(ctx, network, server.String())
}

func (c *Censor) acceptLoop(ln *net.TCPListener, server netip.AddrPort) {
	for {
		conn, err := ln.AcceptTCP()
		if err != nil {
			return
		}
		c.wg.Go(func() { c.relayTCP(conn, server) })
	}
}
