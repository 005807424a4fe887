package xhttp

import (
	"context"
	"errors"
	"net"
	"sync"
	"testing"
	"time"
)

// maxInWindow is the most of times (sorted) that fall in any window of
// length w (a start included, its end not).
func maxInWindow(times []time.Time, w time.Duration) int {
	most := 0
	for i := range times {
		n := 0
		for j := i; j < len(times) && times[j].Sub(times[i]) < w; j++ {
			n++
		}
		most = max(most, n)
	}
	return most
}

// TestPacerKeepsItsRate takes tokens as fast as it may and checks that no
// window holds more than the bucket allows. The bound only gets easier on a
// slow machine: a late waiter opens later, never sooner.
func TestPacerKeepsItsRate(t *testing.T) {
	p := Pace{Burst: 3, Every: 20 * time.Millisecond}.withDefaults()
	pc := NewPacer(p)
	var at []time.Time
	for range 30 {
		if err := pc.take(context.Background(), nil, true); err != nil {
			t.Fatal(err)
		}
		at = append(at, time.Now())
	}
	// Any window of 10 intervals: the burst and 10 more.
	if n, most := maxInWindow(at, 10*p.Every), p.Burst+10; n > most {
		t.Fatalf("%d opens in %v, want at most %d", n, 10*p.Every, most)
	}
	// 30 tokens from a burst of 3 need at least 27 intervals.
	if took, least := at[len(at)-1].Sub(at[0]), 26*p.Every; took < least {
		t.Fatalf("30 opens took %v, want at least %v", took, least)
	}
}

// TestPacerNotes: opens made without waiting (before rotation began, or a
// tcp link's) empty the bucket and count in the window, without a debt: the
// next paced open waits for one token, not for them all.
func TestPacerNotes(t *testing.T) {
	p := Pace{Burst: 2, Every: 40 * time.Millisecond}.withDefaults()
	pc := NewPacer(p)
	var lastNote time.Time
	for range 6 {
		lastNote = time.Now() // the bucket is empty from the last Note on
		pc.Note()
	}
	if err := pc.take(context.Background(), nil, true); err != nil {
		t.Fatal(err)
	}
	if waited := time.Since(lastNote); waited < p.Every {
		t.Fatalf("the first paced open came %v after 6 unpaced ones, want at least %v (an empty bucket)", waited, p.Every)
	}
	pc.mu.Lock()
	n := len(pc.opens)
	pc.mu.Unlock()
	if n != 7 {
		t.Fatalf("the window holds %d opens, want 7 (6 noted, 1 paced)", n)
	}
}

// TestPacerWindow: however many opens came unpaced, the paced ones after
// them wait until the last paceWindow holds fewer than perWindow. (A
// bucket alone, its debt capped, let 12 unpaced opens and the paced ones
// after them put 18 in 10 s.)
func TestPacerWindow(t *testing.T) {
	p := Pace{}.withDefaults() // 15 in any 10 s
	pc := NewPacer(p)
	// 20 unpaced opens, 8 s ago: the window still holds them.
	pc.mu.Lock()
	past := time.Now().Add(-8 * time.Second)
	for i := range 20 {
		pc.opens = append(pc.opens, past.Add(time.Duration(i)*time.Millisecond))
	}
	pc.tokens = float64(p.Burst) // as if the bucket had refilled
	pc.mu.Unlock()
	start := time.Now()
	if err := pc.take(context.Background(), nil, true); err != nil {
		t.Fatal(err)
	}
	// The 6th-oldest open (of 20, so 14 are left) must be 10 s old first.
	if waited, least := time.Since(start), 2*time.Second; waited < least {
		t.Fatalf("a paced open after 20 in the window waited %v, want at least %v", waited, least)
	}
	pc.mu.Lock()
	n := len(pc.opens)
	pc.mu.Unlock()
	if n > p.perWindow() {
		t.Fatalf("%d opens in the window after the paced one, want at most %d", n, p.perWindow())
	}
}

// TestPacerCancel: a dial waiting for its token ends with its context, or
// when its dialer closes.
func TestPacerCancel(t *testing.T) {
	pc := NewPacer(Pace{Burst: 1, Every: time.Hour})
	if err := pc.take(context.Background(), nil, true); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- pc.take(ctx, nil, true) }()
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("take = %v, want context.Canceled", err)
		}
	case <-time.After(time.Minute):
		t.Fatal("take did not return after its context ended")
	}
	// A dialer closing ends its waits too (done is its context's).
	closing := make(chan struct{})
	go func() { done <- pc.take(context.Background(), closing, true) }()
	close(closing)
	select {
	case err := <-done:
		if !errors.Is(err, net.ErrClosed) {
			t.Fatalf("take = %v, want net.ErrClosed", err)
		}
	case <-time.After(time.Minute):
		t.Fatal("take did not return after done was closed")
	}
}

// TestWorthPacing: the boundary below which pacing is not worth it (pace.go).
func TestWorthPacing(t *testing.T) {
	p := Pace{}.withDefaults() // 800 ms, 8 KiB/s: a connection must carry 6,554 B
	for _, c := range []struct {
		budget, hs int64
		want       bool
	}{
		{16<<10 - 512, 1792, true},  // the lab's 16 KiB freeze: ~12.5 KB a connection
		{8<<10 - 256, 1792, false},  // 8 KiB: ~4.5 KB
		{16<<10 - 512, 6180, true},  // a large site's chain at 16 KiB: ~8.1 KB
		{12<<10 - 384, 6180, false}, // the same at 12 KiB: ~4.2 KB
		{64<<10 - 2048, 6180, true},
	} {
		if got := p.worthPacing(c.budget, c.hs); got != c.want {
			t.Errorf("worthPacing(budget %d, handshake %d) = %v (carries %d), want %v",
				c.budget, c.hs, got, carries(c.budget, c.hs), c.want)
		}
	}
}

// noPace is for tests of rotation itself, which rotate hundreds of
// connections and would otherwise wait for the pacer.
var noPace = Pace{Off: true}

// TestRotationIsPaced: a dialer rotating below a budget opens its
// connections no faster than its Pace, and the transfer still arrives
// whole. The pace is shortened (50 ms) so the test is quick; on a busy
// machine connections only open later, so the bound holds.
func TestRotationIsPaced(t *testing.T) {
	s := startServer(t)
	var log connLog
	var mu sync.Mutex
	var opened []time.Time
	dial := log.dial(s.ln.Addr().String())
	pace := Pace{Burst: 2, Every: 50 * time.Millisecond}
	d := newDialer(t, DialerConfig{
		Dial: func(ctx context.Context) (net.Conn, func() int64, error) {
			mu.Lock()
			opened = append(opened, time.Now())
			mu.Unlock()
			return dial(ctx)
		},
		Host: "example.com", Path: "/x", Budget: 16 << 10, Pace: pace,
	})
	download(t, d, 1<<20)
	mu.Lock()
	defer mu.Unlock()
	if len(opened) < 40 {
		t.Fatalf("%d connections for 1 MiB at a 16 KiB budget, want rotation", len(opened))
	}
	// Any window of 10 intervals: the burst, 10 more, and two for the
	// time between a token and its dial being noted here (a dial that
	// drew its token early may reach Dial late, beside the next).
	if n, most := maxInWindow(opened, 10*pace.Every), pace.Burst+10+2; n > most {
		t.Fatalf("%d connections opened within %v, want at most %d", n, 10*pace.Every, most)
	}
}
