package censorlab

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"sync"
	"time"
)

// Prober is the GFW-style active prober. The first time it sees a TCP flow
// to a server, it waits for that flow's first client flight (until the
// server's first answer, or the flow's end), then Delay, and then probes the server directly (not
// through the path) with Probes: a replay of that flow's first client
// flight, random bytes, TLS with the flight's SNI and with another SNI, and
// plain HTTP. Each probe also goes to the site the SNI really belongs to
// (Resolve), or to Reference when the flight names no site. Every probe
// runs Tries times; one difference in any try — certificate chain, answer
// bytes, close kind, timing class — puts the server's IP on the block-list
// for good (no retry forgives an intermittent tell).
type Prober struct {
	// Delay before probing a new server. Default 100ms.
	Delay time.Duration
	// Patience is how long one probe waits for an answer. Default 1.5s.
	Patience time.Duration
	// Tries is how many times each probe runs. Default 3.
	Tries int
	// Resolve returns the address of the real site for a server name ("" if unknown).
	Resolve func(sni string) string
	// Reference is a web server (host:port) and its name, to compare with
	// when the client's flight names no site.
	Reference, ReferenceSNI string
	// OtherSNI is the unrelated name of the second TLS probe. Default "www.wikipedia.org".
	OtherSNI string
	// Dial reaches servers and covers. Default net.Dialer.
	Dial DialFunc

	c       *Censor
	ctx     context.Context
	cancel  context.CancelFunc
	mu      sync.Mutex
	idle    *sync.Cond                       // signalled when pending drops to 0
	pending int                              // guarded by mu; probe goroutines running
	first   map[netip.AddrPort]*Flow         // guarded by mu; the flow that made the server known
	seen    map[*Flow]chan struct{}          // guarded by mu; first flows whose client flight is not complete yet
	flights map[netip.AddrPort][]byte        // guarded by mu; that flow's client bytes before the server's first answer
	results map[netip.AddrPort][]ProbeResult // guarded by mu
}

func (*Prober) Name() string { return "prober" }

func (p *Prober) attach(c *Censor) {
	p.c = c
	p.ctx, p.cancel = context.WithCancel(context.Background())
	p.idle = sync.NewCond(&p.mu)
	p.first = map[netip.AddrPort]*Flow{}
	p.seen = map[*Flow]chan struct{}{}
	p.flights = map[netip.AddrPort][]byte{}
	p.results = map[netip.AddrPort][]ProbeResult{}
}

// wait blocks until no probe goroutine runs. (A WaitGroup would do, but
// new servers may appear while the censor settles.)
func (p *Prober) wait() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for p.pending > 0 {
		p.idle.Wait()
	}
}

func (p *Prober) Open(f *Flow) Verdict {
	if f.Network != "tcp" || p.c == nil {
		return Verdict{}
	}
	p.mu.Lock()
	_, known := p.first[f.Server]
	var flight chan struct{}
	if !known {
		p.first[f.Server] = f
		flight = make(chan struct{})
		p.seen[f] = flight
		p.pending++
	}
	p.mu.Unlock()
	if !known {
		delay := p.Delay
		if delay == 0 {
			delay = 100 * time.Millisecond
		}
		go func() {
			defer func() {
				p.mu.Lock()
				p.pending--
				p.idle.Broadcast()
				p.mu.Unlock()
			}()
			// A prober acts on what it saw: the client's first flight,
			// however long the path took to carry it. A flow that never
			// completes its flight is probed after flightWait anyway.
			select {
			case <-flight:
			case <-time.After(Budget(flightWait)):
			case <-p.ctx.Done():
				return
			}
			select {
			case <-time.After(delay):
				p.probe(f.Server)
			case <-p.ctx.Done():
			}
		}()
	}
	return Verdict{}
}

// flightWait bounds the wait for a first flow's client flight (scaled to
// the machine by Budget).
const flightWait = 5 * time.Second

func (p *Prober) Data(f *Flow, dir Dir, _ []byte) Verdict {
	if dir != Down || f.Pieces(Down) != 1 {
		return Verdict{}
	}
	p.mu.Lock()
	if p.first[f.Server] == f {
		p.flights[f.Server] = slices.Clone(f.Seen(Up))
	}
	p.flightDoneLocked(f)
	p.mu.Unlock()
	return Verdict{}
}

// Close ends the wait for a first flow that ended before the server answered.
func (p *Prober) Close(f *Flow) {
	p.mu.Lock()
	p.flightDoneLocked(f)
	p.mu.Unlock()
}

func (p *Prober) flightDoneLocked(f *Flow) {
	if ch, ok := p.seen[f]; ok {
		close(ch)
		delete(p.seen, f)
	}
}

// Results returns the probe results for server, once probed.
func (p *Prober) Results(server netip.AddrPort) []ProbeResult {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.results[server]
}

func (p *Prober) probe(server netip.AddrPort) {
	p.mu.Lock()
	flight, ok := p.flights[server]
	if !ok {
		flight = slices.Clone(p.first[server].Seen(Up))
	}
	p.mu.Unlock()
	sni := ""
	if hello, complete, err := PeekHello(flight); complete && err == nil {
		sni = hello.ServerName
	}
	cover := ""
	if sni != "" && p.Resolve != nil {
		cover = p.Resolve(sni)
	}
	if cover == "" {
		cover, sni = p.Reference, p.ReferenceSNI
	}
	other := p.OtherSNI
	if other == "" {
		other = "www.wikipedia.org"
	}
	patience := p.Patience
	if patience == 0 {
		patience = 1500 * time.Millisecond
	}
	tries := p.Tries
	if tries == 0 {
		tries = 3
	}
	res := Compare(p.ctx, p.Dial, server.String(), cover, Probes(flight, sni, other), patience, tries)
	p.mu.Lock()
	p.results[server] = res
	p.mu.Unlock()
	if p.ctx.Err() != nil {
		return
	}
	for _, r := range res {
		if r.Differs != "" {
			reason := fmt.Sprintf("probe %s differed in %d of %d tries: server %v, cover %v (%s)",
				r.Probe, r.Differed, r.Tries, r.Server, r.Cover, r.Differs)
			p.c.Record(Event{Server: server, Rule: p.Name(), Action: Reset, Reason: reason})
			p.c.BlockIP(server.Addr(), 0, p.Name(), reason)
			return
		}
	}
}

// stop cancels probes in flight (Censor.Close).
func (p *Prober) stop() {
	if p.cancel != nil {
		p.cancel()
	}
}
