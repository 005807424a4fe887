package telemetry

import (
	"slices"
	"sync"
)

// Tally gathers a client's counts between reports. The zero value is
// ready; it is safe for concurrent use.
type Tally struct {
	mu     sync.Mutex
	counts map[entryKey]int // guarded by mu
}

type entryKey struct {
	t Transport
	m Metric
	b uint8
}

// Add counts n of metric m (bucket b) on transport t. Counts saturate at
// the wire's limit (65,535 per entry and report).
func (t *Tally) Add(tr Transport, m Metric, b uint8, n int) {
	if n <= 0 || !validBucket(m, b) {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.counts == nil {
		t.counts = make(map[entryKey]int)
	}
	k := entryKey{tr, m, b}
	t.counts[k] = min(t.counts[k]+n, 1<<16-1)
}

// Take returns the counts gathered so far as a report and starts afresh;
// nil if there are none. A report that could not be delivered goes back
// with Restore.
func (t *Tally) Take() *Report {
	t.mu.Lock()
	defer t.mu.Unlock()
	if len(t.counts) == 0 {
		return nil
	}
	r := &Report{Entries: make([]Entry, 0, len(t.counts))}
	for k, n := range t.counts {
		r.Entries = append(r.Entries, Entry{Transport: k.t, Metric: k.m, Bucket: k.b, Count: uint16(n)})
	}
	t.counts = nil
	slices.SortFunc(r.Entries, func(a, b Entry) int {
		return int(a.Transport)<<16 | int(a.Metric)<<8 | int(a.Bucket) - (int(b.Transport)<<16 | int(b.Metric)<<8 | int(b.Bucket))
	})
	// A report holds at most MaxEntries; the rest waits for the next.
	if len(r.Entries) > MaxEntries {
		rest := r.Entries[MaxEntries:]
		r.Entries = r.Entries[:MaxEntries]
		t.counts = make(map[entryKey]int, len(rest))
		for _, e := range rest {
			t.counts[entryKey{e.Transport, e.Metric, e.Bucket}] = int(e.Count)
		}
	}
	return r
}

// Restore adds r's counts back (a report that was not delivered).
func (t *Tally) Restore(r *Report) {
	if r == nil {
		return
	}
	for _, e := range r.Entries {
		t.Add(e.Transport, e.Metric, e.Bucket, int(e.Count))
	}
}
