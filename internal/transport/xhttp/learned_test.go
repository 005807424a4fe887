package xhttp

import (
	"testing"
	"time"
)

func TestLearnedFreeze(t *testing.T) {
	type stall struct {
		rx       int64
		rotating bool
	}
	for _, tc := range []struct {
		name   string
		stalls []stall
		want   int64
	}{
		{"none", nil, 0},
		{"one stall is not a budget", []stall{{16384, false}}, 0},
		{"two near stalls", []stall{{16384, false}, {16000, false}}, 16000 - 16000/32},
		{"two far apart", []stall{{16384, false}, {60000, false}}, 0},
		{"a lower freeze lowers it", []stall{{16384, false}, {16384, false}, {8192, false}, {8192, false}}, 8192 - 8192/32},
		{"a stall before rotating adds nothing", []stall{{16384, false}, {16384, false}, {16384, false}}, 16384 - 512},
		{"a rotating connection that froze widens the margin", []stall{{16384, false}, {16384, false}, {16384, true}}, 16384 - 1024},
		{"up to half", []stall{{16384, false}, {16384, false}, {16384, true}, {16384, true}, {16384, true}, {16384, true}, {16384, true}, {16384, true}}, 8192},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var l Learned
			for _, s := range tc.stalls {
				l.Stalled("n", s.rx, s.rotating)
			}
			if got := l.Get("n").Budget; got != tc.want {
				t.Errorf("Budget after %v = %d, want %d", tc.stalls, got, tc.want)
			}
			if got := l.Get("other").Budget; got != 0 {
				t.Errorf("another network's Budget = %d, want 0", got)
			}
		})
	}
}

func TestLearnedConnsAndExpiry(t *testing.T) {
	now := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	l := Learned{now: func() time.Time { return now }}
	if l.Refused("n", 3) {
		t.Fatal("one refusal made a cap, want two")
	}
	l.Refused("n", 4) // the second refusal: the cap is the fewest open at one
	l.Refused("n", 5)
	l.Refused("n", 6) // higher counts do not raise it
	l.Stalled("n", 8192, false)
	l.Stalled("n", 8192, false)
	if got, want := l.Get("n"), (Known{Budget: 8192 - 256, MaxConns: 3}); got != want {
		t.Fatalf("Get = %+v, want %+v", got, want)
	}
	now = now.Add(LearnTTL - time.Minute)
	if got := l.Get("n"); got.MaxConns != 3 {
		t.Fatalf("Get before expiry = %+v, want the cap kept", got)
	}
	now = now.Add(2 * time.Minute)
	if got := l.Get("n"); got != (Known{}) {
		t.Fatalf("Get after %v = %+v, want nothing (expired)", LearnTTL, got)
	}
	l.Refused("n", 0)
	l.Refused("n", 0)
	if got := l.Get("n").MaxConns; got != 1 {
		t.Errorf("MaxConns after a refusal with none open = %d, want 1", got)
	}
}

// TestLearnedFloor: a freeze with less than minFreezeData after the
// handshake (a connection that stalled as it opened; MinBudget in all when
// the handshake is not measured) teaches nothing, and no budget
// leaves a connection less room than its handshake needs. (Two stalls
// right after the handshake used to set a budget every dial then refused.)
func TestLearnedFloor(t *testing.T) {
	var l Learned
	const hs = 2000
	l.StalledAfter("n", hs+200, hs, false)
	l.StalledAfter("n", hs+214, hs, false)
	l.Stalled("plain", 2200, false)
	l.Stalled("plain", 2214, false)
	for _, k := range []string{"n", "plain"} {
		if got := l.Get(k).Budget; got != 0 {
			t.Errorf("%s: Budget after two stalls just past the handshake = %d, want none", k, got)
		}
	}

	const big = 3000 // a real cover's certificate chain
	l.StalledAfter("m", 9000, big, false)
	l.StalledAfter("m", 9000, big, false)
	for range 5 { // rotating connections that still froze widen the margin
		l.StalledAfter("m", 9000, big, true)
	}
	got := l.Get("m").Budget
	if got != budgetFloor(big) {
		t.Errorf("Budget after the margin widened to half of 9000 = %d, want the floor %d", got, budgetFloor(big))
	}
	if got-big-hsReserve < minRoom+minData {
		t.Errorf("Budget %d leaves no room after a %d B handshake", got, big)
	}
}

// TestLearnedRenewal: an entry is kept LearnTTL after a limit was last
// confirmed, not after any report; a rotating connection that carried the
// budget confirms it.
func TestLearnedRenewal(t *testing.T) {
	now := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	l := Learned{now: func() time.Time { return now }}
	l.Stalled("n", 16384, false)
	l.Stalled("n", 16384, false)
	budget := l.Get("n").Budget
	now = now.Add(LearnTTL - time.Minute)
	l.Stalled("n", 60000, false) // another freeze, alone: confirms nothing
	l.Refused("n", 3)            // likewise
	now = now.Add(2 * time.Minute)
	if got := l.Get("n"); got != (Known{}) {
		t.Fatalf("Get %v after the budget was learned, unconfirmed = %+v, want it expired", LearnTTL+time.Minute, got)
	}

	l.Stalled("n", 16384, false)
	l.Stalled("n", 16384, false)
	for range 3 {
		now = now.Add(LearnTTL - time.Minute)
		l.Carried("n", budget)
	}
	now = now.Add(2 * time.Minute)
	if got := l.Get("n").Budget; got != budget {
		t.Errorf("Budget after rotating connections kept carrying it = %d, want %d kept", got, budget)
	}
}

// TestLearnedRefusalsPair: two refusals make a cap only within refusalPair
// of each other.
func TestLearnedRefusalsPair(t *testing.T) {
	now := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	l := Learned{now: func() time.Time { return now }}
	l.Refused("n", 2)
	now = now.Add(refusalPair + time.Second)
	if l.Refused("n", 2) || l.Get("n").MaxConns != 0 {
		t.Fatalf("refusals %v apart made a cap %d, want none", refusalPair+time.Second, l.Get("n").MaxConns)
	}
	now = now.Add(time.Minute)
	if !l.Refused("n", 2) || l.Get("n").MaxConns != 2 {
		t.Errorf("two refusals a minute apart: MaxConns = %d, want 2", l.Get("n").MaxConns)
	}
}

// TestLearnedFreezeDataBoundary: behind a small handshake, two freezes
// with minFreezeData after it make a budget (a freeze at 4 KiB behind the
// lab's 1.8 KB handshake), one byte less does not, and the budget leaves a
// connection room to rotate.
func TestLearnedFreezeDataBoundary(t *testing.T) {
	var l Learned
	const hs = 1792
	l.StalledAfter("short", hs+minFreezeData-1, hs, false)
	l.StalledAfter("short", hs+minFreezeData-1, hs, false)
	if got := l.Get("short").Budget; got != 0 {
		t.Errorf("two freezes %d bytes after the handshake: budget %d, want none", minFreezeData-1, got)
	}
	l.StalledAfter("lab", 4096, hs, false)
	l.StalledAfter("lab", 4096, hs, false)
	got := l.Get("lab").Budget
	if got == 0 || got >= 4096 {
		t.Fatalf("two freezes at 4096 behind a %d B handshake: budget %d, want one below 4096", hs, got)
	}
	if room := got - hs - hsReserve; room < minRoom+minData {
		t.Errorf("budget %d leaves %d bytes after the handshake and reserve, want at least %d", got, room, minRoom+minData)
	}
}
