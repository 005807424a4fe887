package xhttp

import (
	"context"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// freezeRelay relays connections to a server and freezes each one once
// limit bytes have passed towards the client, as a censor's byte budget
// does: nothing more crosses either way, and both sockets stay open.
type freezeRelay struct {
	ln    net.Listener
	limit int64
	wg    sync.WaitGroup
	conns sync.Map // client conn → server conn
}

func startFreezeRelay(t *testing.T, to string, limit int64) *freezeRelay {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r := &freezeRelay{ln: ln, limit: limit}
	r.wg.Go(func() {
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
			r.conns.Store(c, s)
			var frozen atomic.Bool
			r.wg.Go(func() { r.pipe(s, c, &frozen, -1) })
			r.wg.Go(func() { r.pipe(c, s, &frozen, limit) })
		}
	})
	t.Cleanup(func() {
		ln.Close()
		r.conns.Range(func(c, s any) bool { c.(net.Conn).Close(); s.(net.Conn).Close(); return true })
		bounded(t, "the freeze relay's pipes", r.wg.Wait)
	})
	return r
}

// pipe copies src to dst until the connection freezes (after limit bytes
// when limit ≥ 0) and swallows what comes after.
func (r *freezeRelay) pipe(dst, src net.Conn, frozen *atomic.Bool, limit int64) {
	b := make([]byte, 32<<10)
	var passed int64
	for {
		n, err := src.Read(b)
		if n > 0 && !frozen.Load() {
			k := int64(n)
			if limit >= 0 && passed+k >= limit {
				k = limit - passed
				frozen.Store(true)
			}
			passed += k
			if _, err := dst.Write(b[:k]); err != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// freezeLimits learn nothing; they report each stall with the bytes the
// watched session had received by then.
type freezeLimits struct {
	session atomic.Pointer[clientConn]
	stalls  chan [2]int64 // rx of the frozen connection, the session's bytes
}

func (*freezeLimits) Budget() int64 { return 0 }
func (*freezeLimits) MaxConns() int { return 0 }
func (*freezeLimits) Refused(int)   {}
func (l *freezeLimits) Stalled(rx, _ int64) {
	var got int64
	if c := l.session.Load(); c != nil {
		c.mu.Lock()
		got = c.off
		c.mu.Unlock()
	}
	select {
	case l.stalls <- [2]int64{rx, got}:
	default:
	}
}

// TestFreezeStrandsLittle: a download on a connection that freezes after
// 16 KiB towards the client, before the client knows of any budget. What
// crossed before the freeze must reach the session, but for the frame the
// freeze cut: the server writes small DATA frames on a young connection.
// With 16 KiB frames the first one was cut and the session got nothing
// from the connection, so a transfer went silent for two freezes (each
// ~5 s to find) while the client learned the budget, and an application
// waiting 10 s gave up (the lab's sweep at 8 and 16 KiB).
func TestFreezeStrandsLittle(t *testing.T) {
	const limit = 16 << 10
	ctx, stop := context.WithCancel(context.Background())
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hub := NewHub(ctx, HubConfig{Handle: func(_ context.Context, c net.Conn) {
		c.Write(pattern(1, 256<<10)) // the whole download at once: the server alone cuts it into frames
		c.Close()
	}})
	served := make(chan struct{})
	go func() { defer close(served); serveListener(ctx, hub, ln) }()
	t.Cleanup(func() { bounded(t, "the hub's cleanup", func() { stop(); <-served; hub.Close() }) })
	relay := startFreezeRelay(t, ln.Addr().String(), limit)

	limits := &freezeLimits{stalls: make(chan [2]int64, 1)}
	d, err := NewDialer(DialerConfig{
		Dial: func(ctx context.Context) (net.Conn, func() int64, error) {
			c, err := (&net.Dialer{}).DialContext(ctx, "tcp", relay.ln.Addr().String())
			return c, nil, err
		},
		Host: "example.com", Limits: limits,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { bounded(t, "the dialer's Close", func() { d.Close() }) })
	conn, err := d.Dial(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	limits.session.Store(conn.(*clientConn))

	select {
	case s := <-limits.stalls:
		rx, got := s[0], s[1]
		if rx != limit {
			t.Fatalf("frozen connection received %d bytes, want the relay's %d", rx, limit)
		}
		// Besides the data: SETTINGS, the PING answer, the response
		// headers (a few hundred bytes) and the frame the freeze cut.
		if want := int64(limit - youngWriteMax - 1024); got < want {
			t.Errorf("session had %d bytes of a connection frozen after %d, want at least %d", got, limit, want)
		}
		t.Logf("session had %d bytes of a connection frozen after %d", got, limit)
	case <-time.After(2 * time.Minute):
		t.Fatal("the frozen connection was never found")
	}
}
