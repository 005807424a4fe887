package xhttp

import (
	"context"
	"io"
	"net"
	"runtime"
	"sync"
	"testing"
	"time"
	"weak"
)

// The load test opens more idle sessions at once than a few HTTP/2
// connections carry at the server's default stream limit, as a benchmark
// of a thousand proxied connections does, and checks that the client
// opens them quickly, then keeps its connections while nothing is sent,
// and lets go of the connections it closed.

// pconnWatch records, by weak pointer, every pooled connection a dialer
// had, so a test can tell which ones are still reachable.
type pconnWatch struct {
	mu       sync.Mutex
	seen     []weak.Pointer[pconn]
	stop     chan struct{}
	stopOnce sync.Once
	done     chan struct{}
}

func watchPconns(d *Dialer) *pconnWatch {
	w := &pconnWatch{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(w.done)
		t := time.NewTicker(2 * time.Millisecond)
		defer t.Stop()
		for {
			d.mu.Lock()
			w.mu.Lock()
		next:
			for _, pc := range d.conns {
				p := weak.Make(pc)
				for _, s := range w.seen {
					if s == p {
						continue next
					}
				}
				w.seen = append(w.seen, p)
			}
			w.mu.Unlock()
			d.mu.Unlock()
			select {
			case <-t.C:
			case <-w.stop:
				return
			}
		}
	}()
	return w
}

// retained stops recording and returns how many recorded connections
// outside d's pool are still reachable after garbage collection, and how
// many were recorded. It may be called repeatedly to poll.
func (w *pconnWatch) retained(d *Dialer) (n, total int) {
	w.stopOnce.Do(func() { close(w.stop) })
	<-w.done
	runtime.GC()
	runtime.GC()
	d.mu.Lock()
	defer d.mu.Unlock()
	w.mu.Lock()
	defer w.mu.Unlock()
outer:
	for _, s := range w.seen {
		pc := s.Value()
		if pc == nil {
			continue
		}
		for _, live := range d.conns {
			if live == pc {
				continue outer
			}
		}
		n++
	}
	return n, len(w.seen)
}

// idleSession is one open session of the load test: echoed once, then
// blocked in Read on the goroutine that opened it.
type idleSession struct {
	c    net.Conn
	done chan error // the idle Read's result
}

// openIdle opens n sessions at once, each echoing one byte, and returns
// them once all are open, with how long that took.
func openIdle(t *testing.T, d *Dialer, n int) ([]*idleSession, time.Duration) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	start := time.Now()
	sessions := make([]*idleSession, n)
	errs := make(chan error, n)
	var opened sync.WaitGroup
	for i := range sessions {
		s := &idleSession{done: make(chan error, 1)}
		sessions[i] = s
		opened.Add(1)
		go func() {
			c, err := d.Dial(ctx)
			if err != nil {
				errs <- err
				opened.Done()
				s.done <- err
				return
			}
			s.c = c
			var b [1]byte
			c.SetReadDeadline(time.Now().Add(90 * time.Second))
			_, err = c.Write([]byte{'x'})
			if err == nil {
				_, err = io.ReadFull(c, b[:])
			}
			c.SetReadDeadline(time.Time{})
			if err != nil {
				errs <- err
			}
			opened.Done()
			_, err = c.Read(b[:])
			s.done <- err
		}()
	}
	opened.Wait()
	took := time.Since(start)
	close(errs)
	failed := 0
	for err := range errs {
		if failed == 0 {
			t.Errorf("opening a session: %v", err)
		}
		failed++
	}
	if failed > 0 {
		t.Fatalf("%d of %d sessions failed to open", failed, n)
	}
	return sessions, took
}

func TestManyIdleSessions(t *testing.T) {
	if testing.Short() {
		t.Skip("opens a thousand sessions")
	}
	for _, tc := range []struct {
		name       string
		n          int
		maxStreams uint32 // the server's stream limit; 0 = the hub's default
		maxConns   int    // the dialer's MaxConns
		wantConns  int    // most connections while open and idle
		afterClose int    // connections the dialer keeps once most sessions ended
	}{
		// Fits the default limit: as few connections as with a handful of sessions.
		{"within the stream limit", 1000, 0, 3, 3, 3},
		// 5 connections' worth at the server's limit (9 while each session
		// also uploads its first byte): the client opens more than
		// MaxConns, but only as many as the streams need, and closes the extra
		// ones when the load is gone.
		{"beyond the stream limit", 450, 100, 3, 9, 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, stop := context.WithCancel(context.Background())
			defer stop()
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			hub := NewHub(ctx, HubConfig{Handle: idleHandle, MaxStreams: tc.maxStreams})
			serveDone := make(chan struct{})
			go func() {
				defer close(serveDone)
				serveListener(ctx, hub, ln)
			}()
			defer func() {
				stop()
				<-serveDone
				hub.Close()
			}()
			var log connLog
			d, err := NewDialer(DialerConfig{Dial: log.dial(ln.Addr().String()), Host: "example.com", Path: "/x", MaxConns: tc.maxConns})
			if err != nil {
				t.Fatal(err)
			}
			defer d.Close()
			watch := watchPconns(d)

			sessions, took := openIdle(t, d, tc.n)
			opened := d.Stats()
			// A window to watch for churn while idle, two of the longest
			// download-retry backoffs (1 s) wide. Not a wait for an event: a
			// busy machine shows less churn in it, never more, so it cannot
			// fail a healthy dialer.
			time.Sleep(2 * time.Second)
			idle := d.Stats()
			t.Logf("%d sessions open in %v with %d connections dialed (%d at most at once); %d dials while idle",
				tc.n, took.Round(time.Millisecond), opened.Dialed, opened.MaxLive, idle.Dialed-opened.Dialed)
			if idle.Dialed != opened.Dialed {
				t.Errorf("dials while idle = %d, want 0 (connections churn)", idle.Dialed-opened.Dialed)
			}
			if idle.Dialed > int64(tc.wantConns) {
				t.Errorf("Dialed = %d for %d sessions, want at most %d", idle.Dialed, tc.n, tc.wantConns)
			}
			if idle.MaxLive > int64(tc.wantConns) {
				t.Errorf("MaxLive = %d, want at most %d", idle.MaxLive, tc.wantConns)
			}

			// End the sessions of all connections but the oldest: they were the
			// last to open, so the connections the load needed beyond MaxConns
			// go idle and must be closed and forgotten, while the test still
			// holds the ended sessions.
			byConn := map[string][]*idleSession{}
			for _, s := range sessions {
				a := s.c.LocalAddr().String()
				byConn[a] = append(byConn[a], s)
			}
			keep := sessions[0].c.LocalAddr().String()
			for a, ss := range byConn {
				if a == keep {
					continue
				}
				for _, s := range ss {
					s.c.Close()
					if err := <-s.done; err == nil {
						t.Errorf("idle Read returned without error after Close")
					}
				}
			}
			deadline := time.Now().Add(10 * time.Second)
			for d.Stats().Live > int64(tc.afterClose) && time.Now().Before(deadline) {
				time.Sleep(10 * time.Millisecond)
			}
			if live := d.Stats().Live; live > int64(tc.afterClose) {
				t.Errorf("Live = %d after most sessions ended, want at most %d", live, tc.afterClose)
			}
			// Closed connections wait for the server's FIN; poll until the last
			// one is collected.
			kept, total := watch.retained(d)
			for deadline := time.Now().Add(30 * time.Second); kept > 0 && time.Now().Before(deadline); {
				time.Sleep(50 * time.Millisecond) // polling interval
				kept, total = watch.retained(d)
			}
			t.Logf("%d of %d connections closed but still reachable; %d dialed in all", kept, total, d.Stats().Dialed)
			if kept > 0 {
				t.Errorf("%d closed connections still reachable after GC for 30s, want 0", kept)
			}
			runtime.KeepAlive(sessions)
			for _, s := range byConn[keep] {
				s.c.Close()
				<-s.done
			}
		})
	}
}
