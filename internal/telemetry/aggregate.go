package telemetry

import (
	"context"
	"log/slog"
	"sort"
	"sync"
	"time"

	"github.com/burrow-vpn/burrow/internal/access"
)

// Store keeps the daily aggregates (access.SQLiteStore has these methods).
type Store interface {
	AddTelemetry(ctx context.Context, counts []access.TelemetryCount) error
	PruneTelemetry(ctx context.Context, before string) error
}

const (
	// KeepDays is how many days of aggregates the store keeps.
	KeepDays = 30
	// MinGap is the least time between two reports counted from one user;
	// one that comes sooner is answered but not counted.
	MinGap = time.Minute
)

// Aggregator adds up the reports a server accepts, per UTC day, in memory
// until Flush writes them to its store (adding to what is there) and prunes
// days older than KeepDays. It counts at most one report per sender per
// MinGap; who sent is kept in memory only, for that minute, and never
// written. It is safe for concurrent use.
type Aggregator struct {
	st  Store
	log *slog.Logger
	now func() time.Time // for tests; nil means time.Now

	mu       sync.Mutex
	pending  map[rowKey]int64  // guarded by mu; not yet flushed
	totals   map[rowKey]int64  // guarded by mu; since start, Day empty
	last     map[any]time.Time // guarded by mu; the last counted report per sender
	rejected int64             // guarded by mu
	limited  int64             // guarded by mu
	pruned   string            // guarded by mu; the day of the last prune
}

type rowKey struct {
	day, transport, metric string
	bucket                 int
}

// NewAggregator returns an aggregator that flushes to st.
func NewAggregator(st Store, log *slog.Logger) *Aggregator {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Aggregator{st: st, log: log, pending: map[rowKey]int64{}, totals: map[rowKey]int64{}, last: map[any]time.Time{}}
}

func (a *Aggregator) clock() time.Time {
	if a.now != nil {
		return a.now()
	}
	return time.Now()
}

// storedBucket is the bucket as stored: the least KiB for sizes.
func storedBucket(m Metric, b uint8) int {
	if m == Freeze || m == Budget {
		return BucketKiB(b)
	}
	return int(b)
}

// Add counts r, sent by who (any comparable value naming the sender for the
// rate limit, such as a user's record; never stored). It reports false when
// who's last counted report is less than MinGap old: r is then dropped.
func (a *Aggregator) Add(who any, r *Report) bool {
	now := a.clock()
	a.mu.Lock()
	defer a.mu.Unlock()
	if t, ok := a.last[who]; ok && now.Sub(t) < MinGap {
		a.limited++
		return false
	}
	a.last[who] = now
	day := now.UTC().Format(time.DateOnly)
	var used [3]bool
	for _, e := range r.Entries {
		k := rowKey{day, e.Transport.String(), e.Metric.String(), storedBucket(e.Metric, e.Bucket)}
		a.pending[k] += int64(e.Count)
		k.day = ""
		a.totals[k] += int64(e.Count)
		used[e.Transport] = true
	}
	for _, t := range []Transport{TCP, XHTTP} {
		if used[t] {
			a.pending[rowKey{day, t.String(), Reports, 0}]++
			a.totals[rowKey{"", t.String(), Reports, 0}]++
		}
	}
	return true
}

// Reject counts a report that could not be read.
func (a *Aggregator) Reject() {
	a.mu.Lock()
	a.rejected++
	a.mu.Unlock()
}

// Totals are the counts since the aggregator started.
type Totals struct {
	Counts   []access.TelemetryCount // Day empty; sorted by transport, metric, bucket
	Rejected int64                   // reports that could not be read
	Limited  int64                   // reports dropped by the per-sender limit
}

// Totals returns the counts since start.
func (a *Aggregator) Totals() Totals {
	a.mu.Lock()
	defer a.mu.Unlock()
	t := Totals{Rejected: a.rejected, Limited: a.limited}
	for k, n := range a.totals {
		t.Counts = append(t.Counts, access.TelemetryCount{Transport: k.transport, Metric: k.metric, Bucket: k.bucket, Count: n})
	}
	sortCounts(t.Counts)
	return t
}

func sortCounts(cs []access.TelemetryCount) {
	sort.Slice(cs, func(i, j int) bool {
		a, b := cs[i], cs[j]
		if a.Day != b.Day {
			return a.Day > b.Day
		}
		if a.Transport != b.Transport {
			return a.Transport < b.Transport
		}
		if a.Metric != b.Metric {
			return a.Metric < b.Metric
		}
		return a.Bucket < b.Bucket
	})
}

// Flush writes the pending counts to the store; on failure they stay
// pending for the next flush. Once a day it prunes days older than KeepDays,
// and it forgets senders whose last report is older than MinGap.
func (a *Aggregator) Flush(ctx context.Context) error {
	now := a.clock()
	today := now.UTC().Format(time.DateOnly)
	a.mu.Lock()
	for who, t := range a.last {
		if now.Sub(t) >= MinGap {
			delete(a.last, who)
		}
	}
	pending := a.pending
	a.pending = map[rowKey]int64{}
	prune := a.pruned != today
	a.mu.Unlock()
	counts := make([]access.TelemetryCount, 0, len(pending))
	for k, n := range pending {
		counts = append(counts, access.TelemetryCount{Day: k.day, Transport: k.transport, Metric: k.metric, Bucket: k.bucket, Count: n})
	}
	sortCounts(counts)
	if err := a.st.AddTelemetry(ctx, counts); err != nil {
		a.mu.Lock()
		for k, n := range pending {
			a.pending[k] += n
		}
		a.mu.Unlock()
		return err
	}
	if prune {
		before := now.UTC().AddDate(0, 0, -KeepDays).Format(time.DateOnly)
		if err := a.st.PruneTelemetry(ctx, before); err != nil {
			return err
		}
		a.mu.Lock()
		a.pruned = today
		a.mu.Unlock()
	}
	return nil
}

// Run flushes every interval until ctx ends, then a last time.
func (a *Aggregator) Run(ctx context.Context, every time.Duration) {
	tick := time.NewTicker(every)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			fctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			if err := a.Flush(fctx); err != nil {
				a.log.Error("final telemetry flush failed", "err", err)
			}
			cancel()
			return
		case <-tick.C:
			if err := a.Flush(ctx); err != nil && ctx.Err() == nil {
				a.log.Warn("flush telemetry", "err", err)
			}
		}
	}
}
