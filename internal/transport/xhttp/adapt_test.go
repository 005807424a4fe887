package xhttp

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// recLimits are Limits that record what a dialer reports to them.
type recLimits struct {
	budget int64

	mu      sync.Mutex
	stalls  []int64 // guarded by mu
	refused []int   // guarded by mu
}

func (l *recLimits) Budget() int64 { return l.budget }
func (l *recLimits) MaxConns() int { return 0 }
func (l *recLimits) Stalled(rx, budget int64) {
	l.mu.Lock()
	l.stalls = append(l.stalls, rx)
	l.mu.Unlock()
}
func (l *recLimits) Refused(open int) {
	l.mu.Lock()
	l.refused = append(l.refused, open)
	l.mu.Unlock()
}

func (l *recLimits) reports() (stalls []int64, refused []int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]int64(nil), l.stalls...), append([]int(nil), l.refused...)
}

// startHub serves a hub with testHandle and hc on a loopback listener.
func startHub(t *testing.T, hc HubConfig) string {
	t.Helper()
	ctx, stop := context.WithCancel(context.Background())
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hc.Handle = testHandle
	hub := NewHub(ctx, hc)
	served := make(chan struct{})
	go func() { defer close(served); serveListener(ctx, hub, ln) }()
	t.Cleanup(func() { bounded(t, "the hub's cleanup", func() { stop(); <-served; hub.Close() }) })
	return ln.Addr().String()
}

// gate relays connections to a server and can hold what they carry, both
// ways, without dropping any of it: a latency spike, or with no end a
// black hole. It counts what the client sent while held.
type gate struct {
	ln     net.Listener
	to     string
	wg     sync.WaitGroup
	mu     sync.Mutex
	open   chan struct{} // guarded by mu: closed while not held
	upHeld atomic.Int64  // client bytes that arrived while held
	held   []byte        // guarded by mu: those bytes (HTTP/2 frames: the tests' dialers speak it in the clear)
}

// heldFrames returns the types of the HTTP/2 frames the client sent while
// held, with PING acknowledgements as "ping-ack".
func (g *gate) heldFrames() []string {
	g.mu.Lock()
	b := append([]byte(nil), g.held...)
	g.mu.Unlock()
	var out []string
	for len(b) >= 9 {
		n := int(b[0])<<16 | int(b[1])<<8 | int(b[2])
		typ, flags := b[3], b[4]
		name := fmt.Sprintf("type %#x", typ)
		switch {
		case typ == 0x0:
			name = "data"
		case typ == 0x1:
			name = "headers"
		case typ == 0x6 && flags&1 != 0:
			name = "ping-ack"
		case typ == 0x6:
			name = "ping"
		case typ == 0x8:
			name = "window-update"
		case typ == 0x3:
			name = "rst-stream"
		case typ == 0x4:
			name = "settings"
		case typ == 0xfb:
			name = "padding"
		}
		out = append(out, name)
		b = b[min(len(b), 9+n):]
	}
	return out
}

func startGate(t *testing.T, to string) *gate {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	g := &gate{ln: ln, to: to, open: make(chan struct{})}
	close(g.open)
	var conns sync.Map
	g.wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s, err := net.Dial("tcp", to)
			if err != nil {
				c.Close()
				continue
			}
			conns.Store(c, s)
			g.wg.Go(func() { g.pipe(s, c, true) })
			g.wg.Go(func() { g.pipe(c, s, false) })
		}
	})
	t.Cleanup(func() {
		ln.Close()
		g.release()
		conns.Range(func(c, s any) bool { c.(net.Conn).Close(); s.(net.Conn).Close(); return true })
		bounded(t, "the gate's pipes", g.wg.Wait)
	})
	return g
}

func (g *gate) pipe(dst, src net.Conn, up bool) {
	defer dst.Close()
	b := make([]byte, 32<<10)
	for {
		n, err := src.Read(b)
		if n > 0 {
			g.mu.Lock()
			open := g.open
			g.mu.Unlock()
			select {
			case <-open:
			default:
				if up {
					g.upHeld.Add(int64(n))
					g.mu.Lock()
					g.held = append(g.held, b[:n]...)
					g.mu.Unlock()
				}
				<-open
			}
			if _, err := dst.Write(b[:n]); err != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

func (g *gate) hold() {
	g.mu.Lock()
	defer g.mu.Unlock()
	select {
	case <-g.open:
		g.open = make(chan struct{})
	default:
	}
}

func (g *gate) release() {
	g.mu.Lock()
	defer g.mu.Unlock()
	select {
	case <-g.open:
	default:
		close(g.open)
	}
}

// echoOn sends msg through an echo session and reads it back.
func echoOn(t *testing.T, c net.Conn, msg string) {
	t.Helper()
	c.SetDeadline(time.Now().Add(60 * time.Second))
	if _, err := c.Write([]byte(msg)); err != nil {
		t.Fatalf("echo write: %v", err)
	}
	b := make([]byte, len(msg))
	if _, err := io.ReadFull(c, b); err != nil || string(b) != msg {
		t.Fatalf("echo read = %q, %v; want %q", b, err, msg)
	}
}

// waitAnswered waits until no request of d waits for its answer.
func waitAnswered(t *testing.T, d *Dialer) {
	t.Helper()
	timeout := time.After(60 * time.Second)
	for {
		d.mu.Lock()
		waiting, ch := 0, d.changed
		for _, pc := range d.conns {
			waiting += pc.waiting
		}
		d.mu.Unlock()
		if waiting == 0 {
			return
		}
		select {
		case <-ch:
		case <-timeout:
			t.Fatalf("%d requests still wait for their answer", waiting)
		}
	}
}

// TestIdleSpikeLearnsNothing: a healthy connection carrying one idle
// session (its download GET answered and open) is held 1.2 s, nothing
// dropped. The server owes it nothing, so it is not probed and nothing is
// learned; the session goes on. (It used to be probed at once and, the
// probe's answer held past its 500 ms, reported frozen after ~200 bytes.)
func TestIdleSpikeLearnsNothing(t *testing.T) {
	g := startGate(t, startHub(t, HubConfig{}))
	lim := &recLimits{}
	var log connLog
	d := newDialer(t, DialerConfig{Dial: log.dial(g.ln.Addr().String()), Host: "example.com", Limits: lim})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	c, err := d.Dial(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Write([]byte{'E'}); err != nil {
		t.Fatal(err)
	}
	echoOn(t, c, "hello")
	waitAnswered(t, d)

	g.hold()
	spike := time.NewTimer(1200 * time.Millisecond) // the spike itself, not a wait for an event
	<-spike.C
	g.release()
	echoOn(t, c, "world")

	stalls, _ := lim.reports()
	if len(stalls) != 0 {
		t.Errorf("an idle session through a 1.2 s spike reported stalls after %v bytes, want none", stalls)
	}
	// No probe: nothing that asks the server for an answer (a PING, a
	// request). Flow control, the end of the echo's finished stream and
	// the padding that shapes them may go out late on a busy machine.
	for _, f := range g.heldFrames() {
		switch f {
		case "window-update", "padding", "ping-ack", "settings", "rst-stream":
		default:
			t.Errorf("the client sent %d bytes while its idle tunnel was held, frames %v; want no probe", g.upHeld.Load(), g.heldFrames())
			return
		}
	}
	if n := d.Stats().Dialed; n != 1 {
		t.Errorf("%d connections dialed, want the first one kept", n)
	}
}

// capBed is a dialer whose first connection, through a gate, carries two
// sessions at the server's stream limit of 2, so each further session
// dials a connection of its own; those dials go to next.
type capBed struct {
	d     *Dialer
	lim   *recLimits
	gate  *gate
	conns []net.Conn
}

func startCapBed(t *testing.T, next DialFunc) *capBed {
	t.Helper()
	b := &capBed{lim: &recLimits{}, gate: startGate(t, startHub(t, HubConfig{MaxStreams: 2}))}
	var log connLog
	first := log.dial(b.gate.ln.Addr().String())
	var n atomic.Int32
	dial := func(ctx context.Context) (net.Conn, func() int64, error) {
		if n.Add(1) == 1 {
			return first(ctx)
		}
		return next(ctx)
	}
	b.d = newDialer(t, DialerConfig{Dial: dial, Host: "example.com", Limits: b.lim})
	t.Cleanup(func() {
		for _, c := range b.conns {
			c.Close()
		}
	})
	return b
}

// session opens a session that must go on the first connection.
func (b *capBed) session(t *testing.T) net.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	c, err := b.d.Dial(ctx)
	if err != nil {
		t.Fatalf("Dial: %v", err)
	}
	b.conns = append(b.conns, c)
	return c
}

// waitStreams waits until d's connections carry n requests in all.
func waitStreams(t *testing.T, d *Dialer, n int) {
	t.Helper()
	timeout := time.After(60 * time.Second)
	for {
		d.mu.Lock()
		got, ch := 0, d.changed
		for _, pc := range d.conns {
			got += pc.streams
		}
		d.mu.Unlock()
		if got == n {
			return
		}
		select {
		case <-ch:
		case <-timeout:
			t.Fatalf("%d requests open, want %d", got, n)
		}
	}
}

// busy starts a download on a first session and reads it slowly until
// the test ends, so the first connection keeps receiving; then it opens an
// idle second session, which fills the first connection.
func (b *capBed) busy(t *testing.T) {
	t.Helper()
	c := b.session(t)
	var req [9]byte
	req[0] = 'S'
	binary.BigEndian.PutUint64(req[1:], 32<<20)
	if _, err := c.Write(req[:]); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 4<<10)
	if _, err := io.ReadFull(c, buf); err != nil {
		t.Fatal(err)
	}
	waitStreams(t, b.d, 1) // the request's POST is over
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		tick := time.NewTicker(2 * time.Millisecond) // a slow reader: 2 MB/s
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
			}
			if _, err := io.ReadFull(c, buf); err != nil {
				return
			}
		}
	}()
	t.Cleanup(func() { close(stop); c.Close(); bounded(t, "the slow reader", func() { <-done }) })
	b.session(t)
	waitStreams(t, b.d, 2)
}

// resetter is a server that resets every connection once the client has
// written something: a censor refusing connections past a cap.
func resetter(t *testing.T) DialFunc {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			var b [1]byte
			c.SetReadDeadline(time.Now().Add(30 * time.Second))
			c.Read(b[:])
			c.(*net.TCPConn).SetLinger(0)
			c.Close()
		}
	})
	t.Cleanup(func() { ln.Close(); bounded(t, "the resetter", wg.Wait) })
	return func(ctx context.Context) (net.Conn, func() int64, error) {
		var d net.Dialer
		c, err := d.DialContext(ctx, "tcp", ln.Addr().String())
		return c, nil, err
	}
}

// TestCapLearnedFromResets: new connections reset while the open one is
// receiving are reported as refused (two of them make a cap in Learned).
func TestCapLearnedFromResets(t *testing.T) {
	b := startCapBed(t, resetter(t))
	b.busy(t)
	for range 2 {
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		_, err := b.d.Dial(ctx)
		cancel()
		if err == nil {
			t.Fatal("Dial past the first connection succeeded, want it reset")
		}
	}
	if _, refused := b.lim.reports(); len(refused) != 2 || refused[0] != 1 || refused[1] != 1 {
		t.Errorf("refusals reported at %v open, want [1 1]", refused)
	}
}

// TestCallerTimeoutLearnsNoCap: Dials the caller gives up on after 100 ms,
// while a new connection is still being dialed, are no refusals. (They
// were: two made a cap of 1.)
func TestCallerTimeoutLearnsNoCap(t *testing.T) {
	hang := func(ctx context.Context) (net.Conn, func() int64, error) {
		<-ctx.Done()
		return nil, nil, ctx.Err()
	}
	b := startCapBed(t, hang)
	b.busy(t)
	for range 2 {
		ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		_, err := b.d.Dial(ctx)
		cancel()
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("Dial with a 100 ms deadline: %v, want the deadline", err)
		}
	}
	if _, refused := b.lim.reports(); len(refused) != 0 {
		t.Errorf("caller timeouts reported as refusals at %v open, want none", refused)
	}
}

// TestDeadPathLearnsNoCap: when nothing arrives on the open connection and
// new ones fail, the path is down, not capped: no refusal. (Two made a cap
// of 1; on the relay, a black-holed exit was capped for LearnTTL.)
func TestDeadPathLearnsNoCap(t *testing.T) {
	b := startCapBed(t, resetter(t))
	b.session(t)
	b.session(t)
	waitStreams(t, b.d, 2)
	b.gate.hold() // the path goes dark, and stays so
	b.d.mu.Lock()
	heard := time.Unix(0, b.d.conns[0].wire.heard.Load())
	b.d.mu.Unlock()
	quiet := time.NewTimer(time.Until(heard.Add(heardWindow + 100*time.Millisecond)))
	<-quiet.C // the premise: the open connection has been silent a while
	for range 2 {
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		_, err := b.d.Dial(ctx)
		cancel()
		if err == nil {
			t.Fatal("Dial past the first connection succeeded, want it reset")
		}
	}
	if _, refused := b.lim.reports(); len(refused) != 0 {
		t.Errorf("dials failing on a dead path reported as refusals at %v open, want none", refused)
	}
}

// TestBudgetTooSmallDoesNotFail: a budget that leaves a connection no room
// after its handshake does not fail the dial (it failed every dial for
// LearnTTL): the connection does not rotate, and the dialer says so once.
func TestBudgetTooSmallDoesNotFail(t *testing.T) {
	var logs bytes.Buffer
	var mu sync.Mutex
	var log connLog
	d := newDialer(t, DialerConfig{
		Dial:   log.dial(startServer(t).ln.Addr().String()),
		Host:   "example.com",
		Limits: &recLimits{budget: 1024},
		Logger: slog.New(slog.NewTextHandler(lockedWriter{&mu, &logs}, nil)),
	})
	download(t, d, 64<<10)
	log.mu.Lock()
	for _, c := range log.conns {
		c.Close() // the next session dials again
	}
	log.mu.Unlock()
	download(t, d, 64<<10)
	if n := d.Stats().Dialed; n < 2 {
		t.Fatalf("%d connections dialed, want a second after the first was cut", n)
	}
	mu.Lock()
	defer mu.Unlock()
	if n := strings.Count(logs.String(), "no room after the handshake"); n != 1 {
		t.Errorf("the small budget was logged %d times, want once:\n%s", n, logs.String())
	}
}

type lockedWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (w lockedWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.w.Write(p)
}

// TestSpreadBacksOff: a background dial that failed is retried after a
// growing wait, not at the next session (which dialed again at once, in a
// loop while sessions kept coming).
func TestSpreadBacksOff(t *testing.T) {
	addr := startServer(t).ln.Addr().String()
	var log connLog
	first := log.dial(addr)
	var n, later atomic.Int32
	dial := func(ctx context.Context) (net.Conn, func() int64, error) {
		if n.Add(1) == 1 {
			return first(ctx)
		}
		later.Add(1)
		return nil, nil, errors.New("refused by the test")
	}
	d := newDialer(t, DialerConfig{Dial: dial, Host: "example.com", MaxConns: 4})
	for i := range streamsPerConn + 10 {
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		c, err := d.Dial(ctx)
		cancel()
		if err != nil {
			t.Fatalf("session %d: %v", i, err)
		}
		defer c.Close()
		if _, err := c.Write([]byte{'E'}); err != nil {
			t.Fatal(err)
		}
		echoOn(t, c, "x")
	}
	// 1 s, 2 s, 4 s: a fourth attempt would need the sessions to take 7 s.
	if n := later.Load(); n > 3 {
		t.Errorf("%d background dials after the first failed, for 10 sessions, want at most 3", n)
	}
}
