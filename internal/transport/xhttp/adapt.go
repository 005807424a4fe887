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
//   - a stall: a connection that carries requests (streams open) received
//     nothing for a stall window, and a probe request on it (GET PATH,
//     which a server answers at once with 404) got no answer within a probe
//     window either. That is a censor's freeze after about the bytes the
//     connection had received, handshake included. The connection is
//     closed and its downloads and uploads resume on another one, so
//     nothing is lost.
//   - a refusal: a new connection reset or black-holed while others were
//     open: the path caps concurrent connections below that count.
//
// The windows scale with the connection's round trip (measured by the PING
// that opens it), not fixed sleeps: a stall window is stallRTTs round
// trips, at least minStallWindow, and the probe waits probeWindows of them.
// Only a connection with open requests is judged, and it is probed at most
// once per quiet spell, so an idle tunnel sends nothing.

// Limits are what a Dialer has learned about the path to the server, and
// where it reports what it observes. Calls may come from any goroutine.
type Limits interface {
	// Budget is the byte budget of a new connection; 0 means no rotation.
	Budget() int64
	// MaxConns caps concurrent connections; 0 means DialerConfig.MaxConns.
	MaxConns() int
	// Stalled reports a connection that froze having received rx bytes
	// (TLS handshake included); budget is the one it rotated at (0: none).
	Stalled(rx, budget int64)
	// Refused reports a new connection that was reset or black-holed while
	// open other connections were open.
	Refused(open int)
}

const (
	stallRTTs      = 16
	minStallWindow = 250 * time.Millisecond
	maxStallWindow = 3 * time.Second
	probeWindows   = 2
)

// stallWindow is how long a connection with open requests may receive
// nothing before it is probed.
func stallWindow(rtt time.Duration) time.Duration {
	return min(max(stallRTTs*rtt, minStallWindow), maxStallWindow)
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

// refused reports a failed dial to Limits when it looks like a censor's
// cap: a reset, an EOF or a timeout while open connections were open.
func (d *Dialer) refused(err error, open int) {
	if d.cfg.Limits == nil || open == 0 || d.ctx.Err() != nil {
		return
	}
	var ne net.Error
	if IsReset(err) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.As(err, &ne) && ne.Timeout() {
		d.cfg.Limits.Refused(open)
	}
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
			last = rx
			continue
		}
		d.mu.Lock()
		busy := pc.streams > 0
		d.mu.Unlock()
		if !busy || rx == judged {
			continue
		}
		if d.probe(pc, probeWindows*win) == nil || pc.rx() != rx {
			judged = pc.rx() // alive: judge again only after more traffic
			last = judged
			continue
		}
		d.log.Info("xhttp: connection frozen", "received", rx)
		d.cfg.Limits.Stalled(rx, pc.budget)
		// Closed as any other: a box on a frozen path forgets it at our
		// FIN, and the slot is held until the server's FIN (finWait at
		// most), so a connection that was only slow, whose flow a box
		// forgets after the server's FIN, is not counted twice.
		d.kill(pc)
		return
	}
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
