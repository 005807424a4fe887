package relay

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/burrow-vpn/burrow/internal/camo"
	"github.com/burrow-vpn/burrow/internal/meter"
	"github.com/burrow-vpn/burrow/internal/relaylink"
	"github.com/burrow-vpn/burrow/internal/transport/xhttp"
)

// Health checking.
const (
	// ProbeInterval is how often each exit is probed over its pool.
	ProbeInterval = time.Second
	// probeTimeout bounds one probe: opening a stream and its answer.
	probeTimeout = 3 * time.Second
	// openTimeout bounds opening a client's stream on an exit that is up.
	openTimeout = 3 * time.Second
	// downAfter is how many probes in a row must fail before an exit that
	// has not refused the relay counts as down.
	downAfter = 2
	// busyGrace: an exit that sent bytes on any stream this recently is up,
	// whatever a probe waiting behind those streams says.
	busyGrace = 5 * time.Second
)

// exit is one exit the relay forwards to: a pool of camouflaged HTTP/2
// connections to it (an xhttp.Dialer) and its health.
type exit struct {
	tok    *relaylink.Token
	raw    string // the token as configured
	pool   *xhttp.Dialer
	client []byte // the header of client streams
	probe  []byte // the header of probes
	ask    []byte // the header of ask streams (exits of several keys)
	log    *slog.Logger

	learned xhttp.Learned // the leg's freeze budget and connection cap
	budget  int64         // the configured budget: 0 learns, negative is no rotation

	up      atomic.Bool
	misses  atomic.Int32 // probes failed in a row
	seen    atomic.Int64 // when the exit last sent bytes on a stream (Unix ns)
	streams atomic.Int64 // client streams open now
	opened  atomic.Int64 // client streams opened
	failed  atomic.Int64 // streams or probes that failed

	trunks trunks // the trunks client connections ride

	reachMu sync.Mutex
	reach   *reachCheck // guarded by reachMu: the check in flight, if any

	stop context.CancelFunc
	done chan struct{} // closed when probeLoop returned
}

// Dialer opens the TCP connection to an exit (tests and the lab put their
// own network here).
type Dialer func(ctx context.Context, network, addr string) (net.Conn, error)

func newExit(raw string, tok *relaylink.Token, cfg *Config, dial Dialer, log *slog.Logger) (*exit, error) {
	e := &exit{tok: tok, raw: raw, log: log, budget: cfg.budget(), done: make(chan struct{})}
	var err error
	ann := relaylink.Header{Secret: tok.Secret, SNI: cfg.SNI, Cover: cfg.Cover, Addr: net.JoinHostPort(cfg.PublicAddr, portOf(cfg.Listen))}
	ann.Kind = relaylink.KindClient
	if e.client, err = ann.Append(nil); err != nil {
		return nil, err
	}
	ann.Kind = relaylink.KindProbe
	if e.probe, err = ann.Append(nil); err != nil {
		return nil, err
	}
	ann.Kind = relaylink.KindAsk
	if e.ask, err = ann.Append(nil); err != nil {
		return nil, err
	}
	ann.Kind = relaylink.KindTrunk
	if e.trunks.hdr, err = ann.Append(nil); err != nil {
		return nil, err
	}
	reality := camo.ClientConfig{ServerName: tok.SNI, PublicKey: tok.PublicKey[:], ShortID: tok.ShortID[:], Fingerprint: tok.Fingerprint}
	e.pool, err = xhttp.NewDialer(xhttp.DialerConfig{
		Dial: func(ctx context.Context) (net.Conn, func() int64, error) {
			raw, err := dial(ctx, "tcp", tok.Addr)
			if err != nil {
				return nil, nil, err
			}
			var rx atomic.Int64
			counted := meter.NewConn(raw, meter.Unlimited{AddFunc: func(n int64) { rx.Add(n) }}, meter.Unlimited{})
			hctx, cancel := context.WithTimeout(ctx, 15*time.Second)
			defer cancel()
			tconn, err := camo.Client(hctx, readAhead(counted), reality)
			if errors.Is(err, camo.ErrNotReality) {
				return nil, nil, fmt.Errorf("exit %s does not accept this relay (its token was revoked, or the exit has a new key): get a new token with `burrow server relay-token NAME` there: %w", tok.Addr, err)
			}
			if err != nil {
				return nil, nil, fmt.Errorf("REALITY handshake with exit %s: %w", tok.Addr, err)
			}
			return tconn, rx.Load, nil
		},
		Host:     tok.SNI,
		Path:     "/",
		MaxConns: cfg.MaxConns,
		Limits:   exitLimits{e},
		Logger:   log,
	})
	if err != nil {
		return nil, err
	}
	return e, nil
}

// exitLimits are the pool's view of what the relay learned of its leg to
// the exit (a censor between them freezing or capping connections).
type exitLimits struct{ e *exit }

var _ xhttp.Observer = exitLimits{}

// Budget is the configured one if set, else the learned one.
func (l exitLimits) Budget() int64 {
	if b := l.e.budget; b != 0 {
		return max(b, 0)
	}
	return l.e.learned.Get(l.e.tok.Addr).Budget
}

func (l exitLimits) MaxConns() int { return l.e.learned.Get(l.e.tok.Addr).MaxConns }

func (l exitLimits) Stalled(rx, budget int64) { l.StalledAfter(rx, 0, budget) }

// StalledAfter is xhttp.Observer's: hs of the rx bytes were the handshake.
func (l exitLimits) StalledAfter(rx, hs, budget int64) {
	if l.e.learned.StalledAfter(l.e.tok.Addr, rx, hs, budget > 0) {
		l.e.log.Warn("connections to the exit freeze (a censor's byte limit); new ones rotate below it",
			"exit", l.e.name(), "after_bytes", rx, "budget", l.Budget())
	}
}

func (l exitLimits) Carried(budget int64) { l.e.learned.Carried(l.e.tok.Addr, budget) }

func (l exitLimits) Refused(open int) {
	if l.e.learned.Refused(l.e.tok.Addr, open) {
		l.e.log.Warn("the network refuses more connections to the exit; keeping fewer open",
			"exit", l.e.name(), "max", l.MaxConns())
	}
}

func portOf(hostport string) string {
	_, p, _ := net.SplitHostPort(hostport)
	return p
}

// name is how logs and metrics name the exit: its address.
func (e *exit) name() string { return e.tok.Addr }

// start begins health checks; the exit counts as up until the first
// probe says otherwise, so the first clients need not wait for it.
func (e *exit) start() {
	e.up.Store(true)
	ctx, cancel := context.WithCancel(context.Background())
	e.stop = cancel
	go e.probeLoop(ctx)
}

// close stops the health checks and ends the pool and its streams.
func (e *exit) close() {
	e.stop()
	<-e.done
	e.trunks.closeAll()
	e.pool.Close()
}

// probeLoop probes the exit every ProbeInterval until ctx ends.
func (e *exit) probeLoop(ctx context.Context) {
	defer close(e.done)
	t := time.NewTicker(ProbeInterval)
	defer t.Stop()
	for {
		err := e.probeOnce(ctx)
		if ctx.Err() != nil {
			return
		}
		e.setUp(err)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// setUp records a probe's outcome, or a stream's refusal. The exit
// refusing the relay (a revoked token, a new key) marks it down at once;
// any other failure — a probe timed out behind a busy pool, a dial that did
// not complete — only when downAfter probes in a row failed and no stream
// has had bytes from the exit for busyGrace. Down sends clients to the
// cover, so a relay under load must not get there while its exit works.
func (e *exit) setUp(err error) {
	if err == nil {
		e.misses.Store(0)
		if !e.up.Swap(true) {
			e.log.Info("exit is up", "exit", e.name())
		}
		return
	}
	e.failed.Add(1)
	misses := e.misses.Add(1)
	refused := errors.Is(err, camo.ErrNotReality)
	busy := time.Since(time.Unix(0, e.seen.Load())) < busyGrace
	if !refused && (misses < downAfter || busy) {
		e.log.Debug("exit probe failed; still counted up", "exit", e.name(), "in_a_row", misses, "err", err)
		return
	}
	if e.up.Swap(false) {
		e.log.Warn("exit is down", "exit", e.name(), "err", err)
	}
}

// sawBytes records that the exit sent bytes on a stream.
func (e *exit) sawBytes() { e.seen.Store(time.Now().UnixNano()) }

// probeOnce opens a probe stream and waits for its answer.
func (e *exit) probeOnce(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, probeTimeout)
	defer cancel()
	c, err := e.pool.Dial(ctx)
	if err != nil {
		return err
	}
	defer c.Close()
	stop := context.AfterFunc(ctx, func() { c.SetDeadline(time.Now()) })
	defer stop()
	if _, err := c.Write(e.probe); err != nil {
		return fmt.Errorf("probe: %w", err)
	}
	var b [1]byte
	if _, err := io.ReadFull(c, b[:]); err != nil {
		return fmt.Errorf("probe: no answer (revoked relay token?): %w", err)
	}
	if b[0] != relaylink.ProbeOK {
		return errors.New("probe: wrong answer")
	}
	return nil
}

// reachCheck is one probe of an exit shared by the clients that arrive
// while it runs.
type reachCheck struct {
	done chan struct{}
	err  error // set before done is closed
}

// reachable reports whether the exit answers a probe. Clients that arrive
// together (a relay just started, or a pool that lost its connections) wait
// for one probe rather than each dial its own: a burst of handshakes would
// slow every one of them past openTimeout. The probe is not tied to any one
// client, so a client that gives up does not fail the others.
func (e *exit) reachable(ctx context.Context) error {
	e.reachMu.Lock()
	r := e.reach
	if r == nil {
		r = &reachCheck{done: make(chan struct{})}
		e.reach = r
		go func() {
			pctx, cancel := context.WithTimeout(context.Background(), openTimeout)
			r.err = e.probeOnce(pctx)
			cancel()
			e.reachMu.Lock()
			e.reach = nil
			e.reachMu.Unlock()
			close(r.done)
		}()
	}
	e.reachMu.Unlock()
	select {
	case <-r.done:
		return r.err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// askFor opens an ask stream and sends hello, the client's ClientHello:
// the stream if the exit takes the client, nil if it is another exit's.
func (e *exit) askFor(ctx context.Context, hello []byte) (net.Conn, error) {
	s, err := e.openWith(ctx, e.ask)
	if err != nil {
		return nil, err
	}
	var b [1]byte
	if _, err = s.Write(hello); err == nil {
		s.SetReadDeadline(time.Now().Add(openTimeout))
		_, err = io.ReadFull(s, b[:])
		s.SetReadDeadline(time.Time{})
	}
	if err != nil || b[0] != relaylink.AskYes {
		s.Close()
		return nil, err
	}
	e.opened.Add(1)
	return s, nil
}

// openWith opens a stream on the exit and sends hdr.
func (e *exit) openWith(ctx context.Context, hdr []byte) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(ctx, openTimeout)
	defer cancel()
	c, err := e.pool.Dial(ctx)
	if err != nil {
		if errors.Is(err, camo.ErrNotReality) {
			e.setUp(err)
		} else {
			e.failed.Add(1) // the probes judge the exit: this may be a busy pool
		}
		return nil, err
	}
	if _, err := c.Write(hdr); err != nil {
		c.Close()
		e.failed.Add(1)
		return nil, err
	}
	return c, nil
}

// exitSet is the relay's exits, replaced whole on reload.
type exitSet struct {
	mu    sync.Mutex
	exits []*exit // guarded by mu
	next  atomic.Uint64
}

// candidates returns the exits that are up, starting at a rotating one.
func (s *exitSet) candidates() []*exit {
	s.mu.Lock()
	all := s.exits
	s.mu.Unlock()
	if len(all) == 0 {
		return nil
	}
	first := int(s.next.Add(1) % uint64(len(all)))
	out := make([]*exit, 0, len(all))
	for i := range all {
		if e := all[(first+i)%len(all)]; e.up.Load() {
			out = append(out, e)
		}
	}
	return out
}

func (s *exitSet) list() []*exit {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.exits
}

// legReadAhead is how much one read of a leg connection may take in.
const legReadAhead = 64 << 10

// burstStart: a read straight into the caller's buffer that fills at least
// this much of it starts reading ahead (TLS reads into the free room of its
// record buffer, a record's worth, or the last bytes of one).
const burstStart = 4 << 10

var readAheadPool = sync.Pool{New: func() any { return new([legReadAhead]byte) }}

// readAheadConn reads its conn in reads of up to legReadAhead bytes while
// data flows. TLS reads a record (16 KiB at most) per read of the conn
// under it; on the leg, where the exit sends records back to back, one
// system call then takes in several (the exit also sends them in one
// segment: camo.Coalesced). It reads straight into the caller's buffer
// until a read of burstStart or more fills it (a burst), and gives its
// pooled buffer back once a read brings less than half of it and all of it
// was consumed, so an idle leg connection holds none. What the counter under it sees is what
// arrived. Read is for one goroutine at a time (TLS's read lock).
type readAheadConn struct {
	net.Conn
	buf      *[legReadAhead]byte // while data flows
	r, w     int                 // buf[r:w] is read ahead, not yet consumed
	caughtUp bool                // the last fill brought less than half of buf
	err      error               // the conn's error, returned once buf is consumed
}

func readAhead(c net.Conn) net.Conn { return &readAheadConn{Conn: c} }

func (c *readAheadConn) Read(p []byte) (int, error) {
	if c.r < c.w {
		n := copy(p, c.buf[c.r:c.w])
		c.r += n
		c.releaseIfDone()
		return n, nil
	}
	if c.err != nil {
		return 0, c.err
	}
	if c.buf == nil {
		n, err := c.Conn.Read(p)
		if err == nil && n == len(p) && n >= burstStart {
			c.buf = readAheadPool.Get().(*[legReadAhead]byte)
		}
		return n, err
	}
	n, err := c.Conn.Read(c.buf[:])
	c.w, c.err, c.caughtUp = n, err, n < legReadAhead/2
	c.r = copy(p, c.buf[:n])
	k := c.r
	c.releaseIfDone()
	if c.buf == nil && err != nil {
		return k, err
	}
	return k, nil
}

// releaseIfDone gives the buffer back once all of it was consumed after a
// fill that brought less than half of it.
func (c *readAheadConn) releaseIfDone() {
	if c.buf != nil && c.r == c.w && c.caughtUp {
		readAheadPool.Put(c.buf)
		c.buf, c.r, c.w, c.caughtUp = nil, 0, 0, false
	}
}

// CloseWrite sends the FIN (a finished download half-closes the leg's TLS
// and then its socket).
func (c *readAheadConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return errors.ErrUnsupported
}
