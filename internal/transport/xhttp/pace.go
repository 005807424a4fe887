package xhttp

import (
	"context"
	"sync"
	"time"
)

// Pacing the connections a rotating dialer opens (DialerConfig.Pace).
//
// Below a freeze a connection carries a few kilobytes, so a transfer needs
// a new TCP connection and TLS handshake every few kilobytes. Opened as fast
// as the data needs, that is dozens a second to one server address: nothing
// a browser does (it keeps one or two HTTP/2 connections per origin, six at
// most to an HTTP/1.1 host), and a censor that counts connection opens per
// client→server pair, on the same flows its freeze box already follows,
// sees it at once (the lab's conn-rate and handshake-rate rules: more than
// 16 in 10 s).
//
// So while a dialer rotates, its dials wait for a token: Burst at once, then
// one per Every, which keeps any 10 s window at Burst + 10s/Every opens (15
// with the defaults). Every dial takes a token, paced or not, so the opens
// made before rotation began (the first connections, the frozen ones the
// client learned the freeze from) are paid back before the next paced one;
// the debt is capped at maxPaceDebt tokens, about the detector's window.
//
// Pacing caps what a rotating dialer carries at what one connection carries
// per Every. Where that is below Floor the freeze and a rate rule together
// leave no room for a usable tunnel, and the dialer does not wait: it opens
// connections as fast as the data needs, and says so once in its log
// (docs/adaptive.md has the boundary: about 10 KiB with the lab's cover,
// 12–16 KiB with a real site's handshake of 3–6 KB).

// Pace is how fast a rotating dialer may open connections.
type Pace struct {
	// Off turns pacing off: rotation opens connections as fast as the data
	// needs. For tests of rotation itself and for benchmarks.
	Off bool
	// Burst is how many opens may come at once. Default 3.
	Burst int
	// Every is the time one more open needs. Default 800 ms.
	Every time.Duration
	// Floor is the carried bytes per second below which the dialer does not
	// pace. Default 8 KiB/s.
	Floor int64
}

const (
	defaultPaceBurst = 3
	defaultPaceEvery = 800 * time.Millisecond
	defaultPaceFloor = 8 << 10
	maxPaceDebt      = 4
)

func (p Pace) withDefaults() Pace {
	if p.Burst <= 0 {
		p.Burst = defaultPaceBurst
	}
	if p.Every <= 0 {
		p.Every = defaultPaceEvery
	}
	if p.Floor <= 0 {
		p.Floor = defaultPaceFloor
	}
	return p
}

// carries is what one connection rotating at budget carries towards the
// client after a handshake of hs bytes (dial's arithmetic).
func carries(budget, hs int64) int64 {
	return budget - hs - hsReserve - minRoom
}

// worthPacing reports whether pacing at budget still carries at least the
// floor: one connection's carry per Every.
func (p Pace) worthPacing(budget, hs int64) bool {
	return float64(carries(budget, hs))/p.Every.Seconds() >= float64(p.Floor)
}

// pacer is a token bucket that every dial draws on.
type pacer struct {
	p      Pace
	mu     sync.Mutex
	tokens float64   // guarded by mu; may go below zero (opens not paced)
	at     time.Time // guarded by mu; when tokens was last brought up to date
}

func newPacer(p Pace) *pacer {
	return &pacer{p: p, tokens: float64(p.Burst), at: time.Now()}
}

func (pc *pacer) refillLocked(now time.Time) {
	pc.tokens = min(pc.tokens+float64(now.Sub(pc.at))/float64(pc.p.Every), float64(pc.p.Burst))
	pc.at = now
}

// take draws one token. With wait it first waits until there is one, or
// ctx ends; without, it draws at once and the debt is paid by later waits.
func (pc *pacer) take(ctx context.Context, wait bool) error {
	for {
		pc.mu.Lock()
		pc.refillLocked(time.Now())
		if !wait || pc.tokens >= 1 {
			pc.tokens = max(pc.tokens-1, -maxPaceDebt)
			pc.mu.Unlock()
			return nil
		}
		need := time.Duration((1 - pc.tokens) * float64(pc.p.Every))
		pc.mu.Unlock()
		t := time.NewTimer(need)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		}
	}
}

// pace takes the token of one dial at budget (0: not rotating), waiting for
// it when pacing is on and worth it there.
func (d *Dialer) pace(ctx context.Context, budget int64) error {
	if d.pacer == nil {
		return nil
	}
	wait := budget > 0
	if wait {
		hs := d.lastHS.Load()
		if hs == 0 {
			hs = assumedHandshake
		}
		if !d.pacer.p.worthPacing(budget, hs) {
			wait = false
			if !d.warnedPace.Swap(true) {
				d.log.Warn("xhttp: the freeze leaves too little per connection to pace them under a censor's connection-rate rule; "+
					"connections open as fast as the data needs, which such a rule would catch (a relay inside the network avoids the freeze)",
					"budget", budget, "handshake", hs)
			}
		} else if !d.pacedOnce.Swap(true) {
			d.log.Info("xhttp: rotating below a freeze; new connections are paced as a browser's would be",
				"budget", budget, "per_10s", d.pacer.p.Burst+int(10*time.Second/d.pacer.p.Every))
		}
	}
	return d.pacer.take(ctx, wait)
}

// assumedHandshake stands for the handshake of a server not dialed yet
// (the lab's cover sends about 2 KB, real sites 3–6 KB).
const assumedHandshake = 3 << 10
