package xhttp

import (
	"context"
	"net"
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
// one per Every, and never more than Burst + 10s/Every opens (15 with the
// defaults) in the last 10 s, counted exactly as the lab's rule counts
// them. Every open draws on the same Pacer, paced or not (the first
// connections, the frozen ones the client learned the freeze from, a tcp
// link's plain connections before it moved to XHTTP: Pacer.Note), so the
// window leaves room for them. They do not put the bucket in debt: a debt
// would only add to the wait the window already sets, while the client is
// still learning the freeze and its transfers wait on the next connection.
// The client keeps one Pacer per server for all its tunnels
// (internal/client).
//
// Pacing caps what a rotating dialer carries at what one connection carries
// per Every. Where that is below Floor the freeze and a rate rule together
// leave no room for a usable tunnel, and the dialer does not wait: it opens
// connections as fast as the data needs, and says so once in its log
// (docs/adaptive.md has the boundary: about 10 KiB with the lab's cover,
// 11–15 KiB with a real site's handshake of 3–6 KB).

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
	paceWindow       = 10 * time.Second // the window a rate rule counts opens in
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

// perWindow is the most opens a paced dialer makes in paceWindow.
func (p Pace) perWindow() int { return p.Burst + int(paceWindow/p.Every) }

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

// Pacer paces the connections opened to one server: a token bucket (Burst,
// one more per Every) and the opens of the last paceWindow. Share one among
// everything that dials the same server (DialerConfig.Pacer).
type Pacer struct {
	p      Pace
	mu     sync.Mutex
	tokens float64     // guarded by mu
	at     time.Time   // guarded by mu; when tokens was last brought up to date
	opens  []time.Time // guarded by mu; the opens of the last paceWindow, oldest first
}

// NewPacer returns a pacer for p (zero fields: the defaults).
func NewPacer(p Pace) *Pacer {
	p = p.withDefaults()
	return &Pacer{p: p, tokens: float64(p.Burst), at: time.Now()}
}

// Note records a connection opened to the server without waiting (one the
// pacer does not gate, such as a tcp link's own), so that paced opens
// after it leave room for it.
func (pc *Pacer) Note() {
	pc.mu.Lock()
	now := time.Now()
	pc.updateLocked(now)
	pc.drawLocked(now)
	pc.mu.Unlock()
}

// Idle reports whether nothing was opened in the last window, so the pacer
// holds no state a new one would not.
func (pc *Pacer) Idle() bool {
	pc.mu.Lock()
	defer pc.mu.Unlock()
	pc.updateLocked(time.Now())
	return len(pc.opens) == 0 && pc.tokens >= float64(pc.p.Burst)
}

// updateLocked refills the bucket and forgets opens older than the window.
func (pc *Pacer) updateLocked(now time.Time) {
	pc.tokens = min(pc.tokens+float64(now.Sub(pc.at))/float64(pc.p.Every), float64(pc.p.Burst))
	pc.at = now
	i := 0
	for i < len(pc.opens) && now.Sub(pc.opens[i]) >= paceWindow {
		i++
	}
	pc.opens = append(pc.opens[:0], pc.opens[i:]...)
}

// drawLocked takes a token and notes the open; updateLocked(now) came first.
func (pc *Pacer) drawLocked(now time.Time) {
	pc.tokens = max(pc.tokens-1, 0)
	pc.opens = append(pc.opens, now)
}

// take draws one token. With wait it first waits until there is one and
// the window has room, or ctx or done ends; without, it draws at once, and
// the open counts in the window of later waits.
func (pc *Pacer) take(ctx context.Context, done <-chan struct{}, wait bool) error {
	for {
		pc.mu.Lock()
		now := time.Now()
		pc.updateLocked(now)
		limit := pc.p.perWindow()
		if !wait || pc.tokens >= 1 && len(pc.opens) < limit {
			pc.drawLocked(now)
			pc.mu.Unlock()
			return nil
		}
		var need time.Duration
		if pc.tokens < 1 {
			need = time.Duration((1 - pc.tokens) * float64(pc.p.Every))
		}
		if n := len(pc.opens); n >= limit {
			// The open that must leave the window for this one to fit.
			need = max(need, pc.opens[n-limit].Add(paceWindow).Sub(now))
		}
		pc.mu.Unlock()
		t := time.NewTimer(need + time.Millisecond)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-done:
			t.Stop()
			return net.ErrClosed
		}
	}
}

// pace takes the token of one dial at budget (0: not rotating), waiting for
// it when pacing is on and worth it there. While it waits the dial counts
// in d.pacing, not as a connection being opened.
func (d *Dialer) pace(ctx context.Context, budget int64) error {
	if d.pacer == nil {
		return nil
	}
	wait := budget > 0
	if wait {
		hs := d.lastHS.Load()
		measured := hs > 0
		if !measured {
			hs = assumedHandshake
		}
		switch {
		case !d.cfg.Pace.worthPacing(budget, hs):
			wait = false
			if measured && !d.warnedPace.Swap(true) {
				d.log.Warn("xhttp: the freeze leaves too little per connection to pace them under a censor's connection-rate rule; "+
					"connections open as fast as the data needs, which such a rule would catch (a relay inside the network avoids the freeze)",
					"budget", budget, "handshake", hs)
			}
		case !d.pacedOnce.Swap(true):
			d.log.Info("xhttp: rotating below a freeze; new connections are paced as a browser's would be",
				"budget", budget, "per_10s", d.cfg.Pace.perWindow())
		}
	}
	if wait {
		d.mu.Lock()
		d.pacing++
		d.mu.Unlock()
		defer func() {
			d.mu.Lock()
			d.pacing--
			d.mu.Unlock()
		}()
	}
	return d.pacer.take(ctx, d.ctx.Done(), wait)
}

// assumedHandshake stands for the handshake of a server not dialed yet
// (the lab's cover sends about 2 KB, real sites 3–6 KB).
const assumedHandshake = 3 << 10
