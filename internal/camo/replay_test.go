package camo

import (
	"testing"
	"time"
)

func TestReplayCache(t *testing.T) {
	t0 := time.Unix(1_700_000_000, 0)
	key := func(b byte) [32]byte { return [32]byte{b} }
	c := newReplayCache(time.Minute, 3)
	steps := []struct {
		key  byte
		at   time.Duration
		want bool
	}{
		{1, 0, true},
		{1, time.Second, false},      // replay
		{2, 2 * time.Second, true},   // another hello
		{1, 59 * time.Second, false}, // still remembered
		{1, 61 * time.Second, true},  // expired, accepted again
		{2, 63 * time.Second, true},  // expired too
		{1, 63 * time.Second, false}, // the re-added entry
		{3, 63 * time.Second, true},  // cache now holds 1, 2, 3
		{4, 64 * time.Second, true},  // full: evicts the oldest (1)
		{1, 65 * time.Second, true},  // evicted, so no longer known
		{4, 65 * time.Second, false}, // still known
		{4, 64*time.Second + 2*time.Minute, true},
	}
	for i, s := range steps {
		if got := c.add(key(s.key), t0.Add(s.at)); got != s.want {
			t.Errorf("step %d: add(%d, +%v) = %v, want %v", i, s.key, s.at, got, s.want)
		}
		if n := c.len(); n > 3 {
			t.Errorf("step %d: len = %d, want at most 3", i, n)
		}
	}
}

func TestReplayKeyDependsOnRandomAndSessionID(t *testing.T) {
	h := srvCatchHello(t, srvGoClient("a.example"))
	k := replayKey(h)
	h.SessionID[0] ^= 1
	if replayKey(h) == k {
		t.Error("replayKey ignores the session ID")
	}
	h.SessionID[0] ^= 1
	h.Random[0] ^= 1
	if replayKey(h) == k {
		t.Error("replayKey ignores the random")
	}
}
