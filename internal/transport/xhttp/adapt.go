package xhttp

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"syscall"
	"time"
)

// Adapting to the network (DialerConfig.Limits).
//
// A dialer with Limits asks them, for every new connection, how many bytes
// it may carry towards the client (0: no rotation) and how many
// connections may be open at once, and tells them what it observes:
//
//   - a stall: a connection on which the server owes bytes received nothing
//     for a stall window, and a probe request on it (GET PATH, which a
//     server answers at once with 404) got no answer within a probe wait
//     either. That is a censor's freeze after about the bytes the
//     connection had received, handshake included. The connection is
//     closed and its downloads and uploads resume on another one, so
//     nothing is lost. The server owes bytes while a request it answers at
//     once (a download's GET, an upload's POST) has no answer yet, or an
//     HTTP/2 frame or a TLS record of its has arrived in part (a freeze
//     cut it: the TLS layer received bytes it could not pass on yet, as
//     DialFunc's rx shows); a download GET that was answered
//     and waits for data is owed nothing, so an idle session is never
//     judged, however slow the path. Connections that stall within one
//     window of each other are one stall: an outage, not a freeze per
//     connection.
//   - a refusal: a new connection reset or black-holed while others were
//     open and received bytes during its dial: the path caps concurrent
//     connections below that count. A dial the caller gave up on, or one on
//     a path where nothing arrives at all, is no refusal.
//
// The windows scale with the connection's round trip (measured by the PING
// that opens it), not fixed sleeps: a stall window is stallRTTs round
// trips, at least minStallWindow, and the probe waits probeWindows of them,
// at least minProbeWait. Only a connection the server owes bytes is judged,
// and it is probed at most once per quiet spell, so an idle tunnel sends
// nothing.

// Limits are what a Dialer has learned about the path to the server, and
// where it reports what it observes. Calls may come from any goroutine.
// Limits that also implement Observer get its calls too.
type Limits interface {
	// Budget is the byte budget of a new connection; 0 means no rotation.
	Budget() int64
	// MaxConns caps concurrent connections; 0 means DialerConfig.MaxConns.
	MaxConns() int
	// Stalled reports a connection that froze having received rx bytes
	// (TLS handshake included); budget is the one it rotated at (0: none).
	// It is not called for Limits that implement Observer.
	Stalled(rx, budget int64)
	// Refused reports a new connection that was reset or black-holed while
	// open other connections were open.
	Refused(open int)
}

// Observer is what Limits implement to hear more of what a dialer
// observes (Learned has a method for each).
type Observer interface {
	// StalledAfter replaces Limits.Stalled: hs of the rx bytes were the
	// connection's handshake.
	StalledAfter(rx, hs, budget int64)
	// Carried reports a connection that rotated at budget having carried
	// it without freezing.
	Carried(budget int64)
}

const (
	stallRTTs      = 16
	minStallWindow = 1500 * time.Millisecond
	maxStallWindow = 3 * time.Second
	probeWindows   = 2
	minProbeWait   = 3 * time.Second
)

// stallWindow is how long a connection the server owes bytes may receive
// nothing before it is probed.
func stallWindow(rtt time.Duration) time.Duration {
	return min(max(stallRTTs*rtt, minStallWindow), maxStallWindow)
}

// probeWait is how long a probe waits for its answer.
func probeWait(rtt time.Duration) time.Duration {
	return max(probeWindows*stallWindow(rtt), minProbeWait)
}

// budgetNow is the budget of a connection dialed now.
func (d *Dialer) budgetNow() int64 {
	if d.cfg.Limits != nil {
		return d.cfg.Limits.Budget()
	}
	return d.cfg.Budget
}

// maxConns is the cap on concurrent connections now.
func (d *Dialer) maxConns() int {
	if d.cfg.Limits != nil {
		if n := d.cfg.Limits.MaxConns(); n > 0 {
			return min(n, d.cfg.MaxConns)
		}
	}
	return d.cfg.MaxConns
}

// observer is Limits' Observer, or nil.
func (d *Dialer) observer() Observer {
	o, _ := d.cfg.Limits.(Observer)
	return o
}

// refused reports a failed dial to Limits when it looks like a censor's
// cap: a reset, an EOF or a timeout while open connections were open, and
// some of them received bytes during the dial or just before (heard), so
// the path works.
// A dial the caller (ctx) or the dialer gave up on is none.
func (d *Dialer) refused(ctx context.Context, err error, open int, heard bool) {
	if d.cfg.Limits == nil || open == 0 || !heard || ctx.Err() != nil || d.ctx.Err() != nil {
		return
	}
	var ne net.Error
	if IsReset(err) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.As(err, &ne) && ne.Timeout() {
		d.cfg.Limits.Refused(open)
	}
}

// heardWindow is how recently before a failed dial another connection must
// have received bytes (or during it) for the failure to count as a refusal.
const heardWindow = time.Second

// heardLocked reports whether a connection of the pool — one still
// taking requests or one closing, which a box still counts — received
// bytes since heardWindow before start: the path works, so a new
// connection that failed was refused, not lost in an outage.
func (d *Dialer) heardLocked(start time.Time) bool {
	return d.heard.Load() >= start.Add(-heardWindow).UnixNano()
}

// IsReset reports whether err is a TCP reset. uTLS keeps a handshake's
// read error in a wrapper that does not unwrap, so its text is checked too.
func IsReset(err error) bool {
	return err != nil && (errors.Is(err, syscall.ECONNRESET) || strings.Contains(err.Error(), syscall.ECONNRESET.Error()))
}

// watchStall follows pc until it ends, and closes it when it stalls.
func (d *Dialer) watchStall(pc *pconn) {
	win := stallWindow(pc.rtt)
	tick := time.NewTicker(win)
	defer tick.Stop()
	last, judged := pc.rx(), int64(-1)
	quiet := time.Now() // when rx last moved, to a window
	moving := false     // rx moved in the window before this one
	for {
		select {
		case <-d.ctx.Done():
			return
		case <-pc.gone:
			return
		case <-tick.C:
		}
		if pc.cc.Err() != nil {
			return
		}
		rx := pc.rx()
		if rx != last {
			last, quiet, moving = rx, time.Now(), true
			continue
		}
		// Judged: a connection the server owes bytes, or one whose
		// transfer stopped short in the last window while sessions ride it
		// (a freeze at a record boundary leaves nothing in part: without
		// this it was found only by HTTP/2's 60 s ping timeout, after the
		// session had expired on the server). An idle session whose
		// download waits for data is neither, and is never probed.
		stopped := moving && d.busy(pc)
		moving = false
		if rx == judged || !stopped && !d.owed(pc) {
			continue
		}
		if d.probe(pc, probeWait(pc.rtt)) == nil || pc.rx() != rx {
			judged = pc.rx() // alive: judge again only after more traffic
			last, quiet = judged, time.Now()
			continue
		}
		d.stalled(pc, rx, quiet)
		// Closed as any other: a box on a frozen path forgets it at our
		// FIN, and the slot is held until the server's FIN (finWait at
		// most), so a connection that was only slow, whose flow a box
		// forgets after the server's FIN, is not counted twice.
		d.kill(pc)
		return
	}
}

// busy reports whether sessions ride pc.
func (d *Dialer) busy(pc *pconn) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return pc.streams > 0
}

// owed reports whether the server owes pc bytes: a request it answers at
// once has no answer yet, or a frame or a TLS record of its arrived in part.
func (d *Dialer) owed(pc *pconn) bool {
	d.mu.Lock()
	waiting := pc.waiting
	d.mu.Unlock()
	return waiting > 0 || pc.wire.partial()
}

// stalled reports pc frozen after rx bytes, quiet since then, unless
// another connection stalled in the same spell (an outage: one stall).
func (d *Dialer) stalled(pc *pconn, rx int64, quiet time.Time) {
	d.mu.Lock()
	pc.frozen = true
	outage := quiet.Before(d.stallAt)
	d.stallAt = time.Now()
	d.mu.Unlock()
	if outage {
		d.log.Info("xhttp: connection frozen with another (an outage, not a byte limit)", "received", rx)
		return
	}
	d.log.Info("xhttp: connection frozen", "received", rx, "handshake", pc.hs)
	if o := d.observer(); o != nil {
		o.StalledAfter(rx, pc.hs, pc.budget)
		return
	}
	d.cfg.Limits.Stalled(rx, pc.budget)
}

// probe sends one request the server answers at once and waits for its
// answer.
func (d *Dialer) probe(pc *pconn, wait time.Duration) error {
	if pc.cc.Available() == 0 {
		return nil // at the stream limit: busy, not frozen
	}
	ctx, cancel := context.WithTimeout(d.ctx, wait)
	defer cancel()
	resp, err := pc.cc.RoundTrip(d.request(ctx, http.MethodGet, d.cfg.Path, pc, nil))
	if err != nil {
		return err
	}
	resp.Body.Close()
	return nil
}

// roundTrip sends req on pc; while its answer has not come, the server
// owes pc bytes (watchStall).
func (d *Dialer) roundTrip(pc *pconn, req *http.Request) (*http.Response, error) {
	d.mu.Lock()
	pc.waiting++
	d.mu.Unlock()
	resp, err := pc.cc.RoundTrip(req)
	d.mu.Lock()
	pc.waiting--
	d.mu.Unlock()
	return resp, err
}

// minFINWait is the least waitFIN waits.
const minFINWait = 10 * time.Millisecond

// waitFIN waits, after a connection is gone on our side, until our last
// FIN (or the close of a frozen connection) has surely passed a box on the
// path: a few round trips of the connection, measured when it opened. When
// the server's FIN came first, or we closed a frozen connection, the
// connection is gone for us the moment we close, while a censor counting
// connections still counts it until our FIN reaches it; a new connection
// opened at once would be one too many under a tight cap.
func waitFIN(ctx context.Context, rtt time.Duration) {
	t := time.NewTimer(max(4*rtt, minFINWait))
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}
