package panel

import (
	"sync"
	"time"
)

// limiter is a token bucket per key: burst attempts at once, then one per
// every interval. It keeps at most maxKeys buckets; when full, buckets that
// have refilled are dropped, and if none has, new keys are refused (an
// attacker with many sources is slowed, not given memory).
type limiter struct {
	burst    float64
	interval time.Duration
	maxKeys  int

	mu      sync.Mutex
	buckets map[string]*bucket // guarded by mu
}

type bucket struct {
	tokens float64
	at     time.Time
}

func newLimiter(burst int, interval time.Duration, maxKeys int) *limiter {
	return &limiter{burst: float64(burst), interval: interval, maxKeys: maxKeys, buckets: map[string]*bucket{}}
}

// allow takes one token from key's bucket at now, reporting whether there
// was one.
func (l *limiter) allow(key string, now time.Time) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	b, ok := l.buckets[key]
	if !ok {
		if len(l.buckets) >= l.maxKeys && !l.sweepLocked(now) {
			return false
		}
		b = &bucket{tokens: l.burst, at: now}
		l.buckets[key] = b
	}
	b.tokens = min(l.burst, b.tokens+float64(now.Sub(b.at))/float64(l.interval))
	b.at = now
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}

// reset forgets key (after a successful login).
func (l *limiter) reset(key string) {
	l.mu.Lock()
	delete(l.buckets, key)
	l.mu.Unlock()
}

// sweepLocked drops the buckets that are full again, reporting whether it
// freed any.
func (l *limiter) sweepLocked(now time.Time) bool {
	freed := false
	for k, b := range l.buckets {
		if b.tokens+float64(now.Sub(b.at))/float64(l.interval) >= l.burst {
			delete(l.buckets, k)
			freed = true
		}
	}
	return freed
}
