package camo

import (
	"crypto/sha256"
	"sync"
	"time"

	"github.com/burrow-vpn/burrow/internal/tlshello"
)

// replayCacheMax bounds the replay cache. Only authenticated hellos enter
// it, so filling it takes that many real handshakes within its TTL; when it
// is full the oldest entry goes first.
const replayCacheMax = 1 << 17

// replayKey identifies a ClientHello: a hash of its random and session ID
// (the session ID is the authenticator, the random its nonce and salt).
func replayKey(h *tlshello.ClientHello) [32]byte {
	d := sha256.New()
	d.Write(h.Random)
	d.Write(h.SessionID)
	var k [32]byte
	d.Sum(k[:0])
	return k
}

// replayCache remembers authenticated ClientHellos for ttl. Entries are
// kept in insertion order, so expiry and eviction pop from the front.
type replayCache struct {
	ttl time.Duration
	max int

	mu    sync.Mutex
	seen  map[[32]byte]time.Time // guarded by mu
	order []replayEntry          // guarded by mu; oldest first
}

type replayEntry struct {
	key [32]byte
	at  time.Time
}

func newReplayCache(ttl time.Duration, max int) *replayCache {
	return &replayCache{ttl: ttl, max: max, seen: make(map[[32]byte]time.Time)}
}

// add records key at now. It returns false if key was already recorded
// within ttl (a replay).
func (c *replayCache) add(key [32]byte, now time.Time) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.expireLocked(now)
	if _, ok := c.seen[key]; ok {
		return false
	}
	for len(c.order) >= c.max {
		c.popLocked()
	}
	c.seen[key] = now
	c.order = append(c.order, replayEntry{key, now})
	return true
}

func (c *replayCache) expireLocked(now time.Time) {
	for len(c.order) > 0 && now.Sub(c.order[0].at) >= c.ttl {
		c.popLocked()
	}
}

func (c *replayCache) popLocked() {
	e := c.order[0]
	c.order = c.order[1:]
	if at, ok := c.seen[e.key]; ok && at.Equal(e.at) {
		delete(c.seen, e.key)
	}
	if len(c.order) == 0 {
		c.order = nil // let the backing array go
	}
}

// len returns the number of remembered hellos.
func (c *replayCache) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.order)
}
