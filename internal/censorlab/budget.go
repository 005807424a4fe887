package censorlab

import (
	"slices"
	"sync"
	"time"
)

// The lab's time budgets (how long a connection may move nothing before the
// workload calls it frozen, how long a prober waits for an answer, how long a
// baseline's handshake may take) are written for a quiet machine. On a busy one
// (a CI runner, a laptop building something beside the lab) the same budgets run
// out before a healthy connection is scheduled, and a cell's verdict would then
// say more about the machine than about the censor. Budget stretches a budget by
// the machine's measured slowness, so every verdict in the lab depends on
// events the censor recorded, never on how busy the machine happened to be.
//
// Slowness is the median wall time of a fixed CPU workload over the time it takes
// on a quiet core, at least 1 and at most maxSlowness; it is measured again when
// the last measurement is older than slownessTTL, as load comes and goes.

const (
	// calibrationSteps is the size of the fixed workload; quietCalibration is what
	// it takes on an idle 2020s x86 core (measured 1.7 ms, rounded up).
	calibrationSteps = 1 << 20
	quietCalibration = 2 * time.Millisecond
	calibrationRuns  = 5
	maxSlowness      = 30
	slownessTTL      = 10 * time.Second
)

var slow struct {
	mu     sync.Mutex
	at     time.Time // guarded by mu; when factor was measured
	factor float64   // guarded by mu
}

// Slowness reports how many times slower than a quiet machine this one runs
// now (1 on a quiet machine).
func Slowness() float64 {
	slow.mu.Lock()
	defer slow.mu.Unlock()
	if slow.at.IsZero() || time.Since(slow.at) > slownessTTL {
		slow.factor = measureSlowness(calibrate)
		slow.at = time.Now()
	}
	return slow.factor
}

// Budget returns d stretched by the machine's Slowness.
func Budget(d time.Duration) time.Duration {
	return time.Duration(float64(d) * Slowness())
}

// measureSlowness runs work calibrationRuns times and turns the median wall time
// into a factor in [1, maxSlowness].
func measureSlowness(work func()) float64 {
	times := make([]time.Duration, calibrationRuns)
	for i := range times {
		start := time.Now()
		work()
		times[i] = time.Since(start)
	}
	slices.Sort(times)
	f := float64(times[len(times)/2]) / float64(quietCalibration)
	return min(max(f, 1), maxSlowness)
}

// calibrationSink keeps the compiler from dropping calibrate's loop.
//
//lint:ignore U1000 only written: the write is what keeps the loop
var calibrationSink uint64

// calibrate is the fixed CPU workload: xorshift steps scattered over a table
// the size of an L1 cache.
func calibrate() {
	var table [4096]uint64
	x := uint64(88172645463325252)
	for range calibrationSteps {
		x ^= x << 13
		x ^= x >> 7
		x ^= x << 17
		table[x%uint64(len(table))] += x
	}
	calibrationSink += table[x%uint64(len(table))]
}
