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
