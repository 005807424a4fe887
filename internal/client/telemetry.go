package client

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"

	"github.com/burrow-vpn/burrow/internal/telemetry"
	"github.com/burrow-vpn/burrow/internal/transport/xhttp"
	"github.com/burrow-vpn/burrow/internal/vless"
)

// Block telemetry (internal/telemetry has the wire form and what a report
// holds). The tunnel counts the outcomes of its connections to the server
// (opened, failed, reset after the ClientHello, frozen after how many bytes,
// bucketed) and what it learned (a byte budget, a connection cap, a switch
// to XHTTP), and sends the counts to the server through the tunnel itself,
// as a request to the reserved destination telemetry.burrow.invalid:0:
//
//   - reportSettle after it learned something (not at once: the network
//     is hostile then, and a report's own connection could be the one a
//     connection cap counts too many), and at most once per reportGap;
//   - reportEvery after the first proxied connection since the last report;
//   - at Close (and when Client.Run ends), within about reportCloseTimeout,
//     unless a report went less than reportGap before.
//
// Nothing is sent by a tunnel that carried nothing since its last report,
// so an idle tunnel stays silent (its own report connections do not count
// as traffic). A report that is not accepted (an Xray server fails to
// resolve the destination and closes) is kept and goes with the next one.
// TunnelOptions.NoTelemetry turns all of it off.
const (
	reportEvery        = 10 * time.Minute
	reportGap          = 2 * time.Minute // the server counts one report per user a minute
	reportSettle       = time.Minute
	reportTimeout      = 30 * time.Second
	reportCloseTimeout = 3 * time.Second
)

// reporter schedules the tunnel's reports on a timer (no goroutine waits
// while nothing is due, so an idle or forgotten tunnel holds none).
type reporter struct {
	mu     sync.Mutex
	active bool            // guarded by mu; traffic or learning since the last report
	ctx    context.Context // guarded by mu; nil before the first activity and after stopReports
	cancel context.CancelFunc
	timer  *time.Timer    // guarded by mu; the next report, nil when none is due
	due    time.Time      // guarded by mu; when timer fires
	last   time.Time      // guarded by mu; when the last report was sent
	wg     sync.WaitGroup // reports under way
}

// count adds one of metric m (bucket b) on transport tr to the next report.
func (t *Tunnel) count(tr telemetry.Transport, m telemetry.Metric, b uint8) {
	t.tally.Add(tr, m, b, 1)
}

// active notes that the tunnel carried traffic (learned false: a report in
// reportEvery) or learned a limit (learned true: a report reportSettle
// later, once reportGap has passed since the last).
func (t *Tunnel) active(learned bool) {
	if t.opts.NoTelemetry {
		return
	}
	r := &t.reports
	r.mu.Lock()
	defer r.mu.Unlock()
	r.active = true
	if r.ctx == nil {
		r.ctx, r.cancel = context.WithCancel(context.Background())
	}
	now := time.Now()
	due := now.Add(reportEvery)
	if learned {
		due = now.Add(reportSettle)
		if gap := r.last.Add(reportGap); gap.After(due) {
			due = gap
		}
	}
	if r.timer != nil && !due.Before(r.due) {
		return
	}
	if r.timer != nil {
		r.timer.Stop()
	}
	ctx := r.ctx
	r.due = due
	r.timer = time.AfterFunc(max(due.Sub(now), 0), func() { t.reportDue(ctx) })
}

// reportDue sends the report whose timer fired, unless stopReports came first.
func (t *Tunnel) reportDue(ctx context.Context) {
	r := &t.reports
	r.mu.Lock()
	if r.ctx != ctx {
		r.mu.Unlock()
		return
	}
	r.timer = nil
	r.last = time.Now()
	r.wg.Add(1)
	r.mu.Unlock()
	defer r.wg.Done()
	sctx, cancel := context.WithTimeout(ctx, reportTimeout)
	defer cancel()
	if err := t.sendReport(sctx); err != nil {
		t.logger().Debug("telemetry report not delivered", "err", err)
	}
}

// stopReports cancels the next report, lets one under way finish, then
// sends what is left unless a report went less than reportGap ago (the
// server would not count it), all within about reportCloseTimeout.
func (t *Tunnel) stopReports() {
	r := &t.reports
	r.mu.Lock()
	if r.timer != nil {
		r.timer.Stop()
		r.timer = nil
	}
	cancel := r.cancel
	r.ctx, r.cancel = nil, nil
	r.mu.Unlock()
	if cancel != nil {
		done := make(chan struct{})
		go func() { r.wg.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(reportCloseTimeout):
			cancel()
			<-done
		}
		cancel()
	}
	r.mu.Lock()
	recent := !r.last.IsZero() && time.Since(r.last) < reportGap
	r.mu.Unlock()
	if recent {
		return
	}
	ctx, stop := context.WithTimeout(context.Background(), reportCloseTimeout)
	defer stop()
	if err := t.sendReport(ctx); err != nil {
		t.logger().Debug("telemetry report not delivered", "err", err)
	}
}

// sendReport sends the counts gathered since the last report, if the
// tunnel was active since; undelivered counts are kept for the next.
func (t *Tunnel) sendReport(ctx context.Context) error {
	if t.opts.NoTelemetry {
		return nil
	}
	r := &t.reports
	r.mu.Lock()
	was := r.active
	r.active = false
	r.mu.Unlock()
	if !was {
		return nil
	}
	rep := t.tally.Take()
	if rep == nil {
		return nil
	}
	if err := t.deliver(ctx, rep); err != nil {
		t.tally.Restore(rep)
		return err
	}
	return nil
}

// errNotAccepted is a report the server closed without answering.
var errNotAccepted = errors.New("telemetry: the server did not accept the report (not a Burrow server?)")

// deliver sends rep on a connection of its own over the tunnel's current
// transport and waits for the server's answer.
func (t *Tunnel) deliver(ctx context.Context, rep *telemetry.Report) error {
	conn, err := t.reportConn(ctx)
	if err != nil {
		return err
	}
	defer conn.Close()
	if d, ok := ctx.Deadline(); ok {
		conn.SetDeadline(d)
	}
	accepted := false
	req := &vless.Request{UUID: t.link.UUID, Command: vless.CommandTCP, Dest: telemetry.Dest}
	c := vless.ClientConnWatch(conn, req, func(err error) {
		accepted = err == nil
		t.observeResponse(err)
	})
	if err := telemetry.Write(c, rep); err != nil {
		return fmt.Errorf("telemetry: send: %w", err)
	}
	if _, err := c.Read(make([]byte, 1)); err != nil && !errors.Is(err, io.EOF) && !accepted {
		return fmt.Errorf("telemetry: %w", err)
	}
	if !accepted {
		return errNotAccepted
	}
	return nil
}

// reportConn opens the connection a report rides: an XHTTP session when
// the tunnel uses XHTTP, else a REALITY connection whose idle time is not
// taken for a freeze.
func (t *Tunnel) reportConn(ctx context.Context) (net.Conn, error) {
	if t.Transport() == TransportXHTTP {
		d, err := t.xhttpDialer()
		if err != nil {
			return nil, err
		}
		return d.Dial(ctx)
	}
	c, _, err := t.dialTLS(ctx, newWatch())
	return c, err
}

// countHandshake counts a connection's REALITY handshake on transport tr:
// ok, failed, and a reset right after the ClientHello.
func (t *Tunnel) countHandshake(tr telemetry.Transport, err error) {
	switch {
	case err == nil:
		t.count(tr, telemetry.ConnOK, 0)
	case xhttp.IsReset(err):
		t.count(tr, telemetry.ConnFailed, 0)
		t.count(tr, telemetry.Reset, 0)
	default:
		t.count(tr, telemetry.ConnFailed, 0)
	}
}

// countFreeze counts a freeze after rx bytes on tr and, when it taught the
// tunnel a budget, the budget.
func (t *Tunnel) countFreeze(tr telemetry.Transport, rx int64, learned bool) {
	t.count(tr, telemetry.Freeze, telemetry.SizeBucket(rx))
	if learned {
		t.countLearned(tr)
	}
}

// countLearned counts the budget the tunnel just learned on tr.
func (t *Tunnel) countLearned(tr telemetry.Transport) {
	if b := t.learned.Get(t.netKey()).Budget; b > 0 {
		t.count(tr, telemetry.Budget, telemetry.SizeBucket(b))
	}
	t.active(true)
}
