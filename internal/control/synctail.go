package control

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// The plane answers long polls from memory. One goroutine per process
// (followLog) follows the change log, reading each change from the store
// once, and keeps the newest entries and the head version in a changeTail;
// a node whose version the tail covers is answered from it and waits on it
// for the next change, so the store sees one read per change and process
// instead of several per change and node. A version the tail does not
// cover (older than its oldest entry, newer than its head, or any version
// while the store is unreachable) goes to the store as before.

const (
	// tailEntries and tailBytes bound the tail: the newest 10,000 changes,
	// and at most 16 MiB of them (changeBytes). A user change weighs about
	// 0.5 KiB, so the entry cap binds first (about 5 MiB); the byte cap
	// binds only if users carry long notes. A node more than tailEntries
	// changes behind reads the store, as every node did before.
	tailEntries = 10000
	tailBytes   = 16 << 20
	// tailRecheck is how often a quiet follower rereads the head, to notice
	// a log that went back (a database restored from a backup).
	tailRecheck = 30 * time.Second
)

// changeTail is the newest part of the change log, in memory.
type changeTail struct {
	maxEntries, maxBytes int

	mu      sync.Mutex
	live    bool          // following the store: false before the first read and after an error; guarded by mu
	head    int64         // the newest version read; guarded by mu
	entries []Change      // versions head-len(entries)+1 .. head; guarded by mu
	bytes   int           // changeBytes of entries; guarded by mu
	moved   chan struct{} // closed and replaced when head or live changes; guarded by mu

	fromMemory, fromStore atomic.Int64 // long polls answered by the tail, and passed to the store
}

func newChangeTail(maxEntries, maxBytes int) *changeTail {
	return &changeTail{maxEntries: maxEntries, maxBytes: maxBytes, moved: make(chan struct{})}
}

// changeBytes estimates what c holds in memory: the Change, its user and
// the user's strings.
func changeBytes(c Change) int {
	n := 128
	if u := c.User; u != nil {
		n += 256 + len(u.Name) + len(u.SubToken) + len(u.Note) + len(u.Reset) + len(u.LastSeenDay)
	}
	return n
}

// since returns up to limit changes after version after, and a channel
// closed when the tail next moves; taken together under the lock, so a
// change added after the call closes the channel. ok is false when the
// tail cannot answer: it is not following the store, or after is older
// than its oldest entry's predecessor or newer than its head.
func (t *changeTail) since(after int64, limit int) (chs []Change, moved <-chan struct{}, ok bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	first := t.head - int64(len(t.entries)) // the oldest version it can answer after
	if !t.live || after < first || after > t.head {
		return nil, t.moved, false
	}
	i := int(after - first)
	return slices.Clone(t.entries[i:min(len(t.entries), i+limit)]), t.moved, true
}

// reset starts the tail over, empty, at version head.
func (t *changeTail) reset(head int64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.live, t.head, t.entries, t.bytes = true, head, nil, 0
	t.movedLocked()
}

// stop empties the tail and sends every long poll to the store until the
// next reset.
func (t *changeTail) stop() {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.live, t.entries, t.bytes = false, nil, 0
	t.movedLocked()
}

// add appends chs, which must continue the tail's head one version at a
// time, and drops the oldest entries beyond the caps.
func (t *changeTail) add(chs []Change) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if !t.live {
		return errors.New("tail not following")
	}
	for _, c := range chs {
		if c.Version != t.head+1 {
			return fmt.Errorf("change %d does not follow %d", c.Version, t.head)
		}
		t.entries = append(t.entries, c)
		t.bytes += changeBytes(c)
		t.head = c.Version
	}
	drop := 0
	for bytes := t.bytes; drop < len(t.entries) && (len(t.entries)-drop > t.maxEntries || bytes > t.maxBytes); drop++ {
		bytes -= changeBytes(t.entries[drop])
	}
	if drop > 0 {
		for i := range drop {
			t.bytes -= changeBytes(t.entries[i])
		}
		clear(t.entries[:drop]) // the array is reused: let the users go
		t.entries = t.entries[drop:]
	}
	t.movedLocked()
	return nil
}

func (t *changeTail) movedLocked() {
	close(t.moved)
	t.moved = make(chan struct{})
}

// waitTail answers a long poll from the tail: the changes after after, or,
// when there are none yet, those that come within wait. ok is false when
// the tail cannot answer (the store then does), or ctx ended.
func (p *Plane) waitTail(ctx context.Context, after int64, wait time.Duration) ([]Change, bool) {
	chs, moved, ok := p.tail.since(after, syncBatch)
	if !ok || len(chs) > 0 || wait <= 0 {
		return chs, ok
	}
	t := time.NewTimer(wait)
	defer t.Stop()
	for {
		select {
		case <-moved:
		case <-t.C:
			chs, _, ok := p.tail.since(after, syncBatch)
			return chs, ok
		case <-ctx.Done():
			return nil, false
		}
		if chs, moved, ok = p.tail.since(after, syncBatch); !ok || len(chs) > 0 {
			return chs, ok
		}
	}
}

// watchChanges follows the change log: it keeps the tail long polls are
// answered from, and cuts the connections of a node revoked (by this
// process or another) at once, not at the next reread. While the store
// cannot be read, the tail is stopped and long polls go to the store (and
// fail there, as they did before the tail).
func (p *Plane) watchChanges(ctx context.Context) {
	for {
		err := p.followLog(ctx)
		p.tail.stop()
		if ctx.Err() != nil {
			return
		}
		p.log.Warn("control: cannot follow the change log", "err", err)
		select {
		case <-ctx.Done():
			return
		case <-time.After(time.Second):
		}
	}
}

// followLog reads the head, then each change once as it commits, into the
// tail; it returns when the store fails or the log cannot be continued.
func (p *Plane) followLog(ctx context.Context) error {
	v, err := p.store.Version(ctx)
	if err != nil {
		return err
	}
	p.tail.reset(v)
	for {
		wctx, cancel := context.WithTimeout(ctx, p.recheck)
		_, err := p.store.WaitChange(wctx, v)
		cancel()
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if err != nil && wctx.Err() != nil {
			// Quiet for a while: make sure the log has not gone back.
			cur, err := p.store.Version(ctx)
			if err != nil {
				return err
			}
			if cur < v {
				return fmt.Errorf("control: the change log went back from version %d to %d (was the database restored?)", v, cur)
			}
			continue
		}
		if err != nil {
			return err
		}
		chs, err := p.store.Changes(ctx, v, syncBatch)
		if err != nil {
			return err // ErrResync too: the log moved on without this process; start again
		}
		if len(chs) == 0 {
			continue
		}
		if err := p.tail.add(chs); err != nil {
			return fmt.Errorf("control: change log tail: %w", err)
		}
		v = chs[len(chs)-1].Version
		for _, ch := range chs {
			if ch.Kind == ChangeNodeRevoked || ch.Kind == ChangeNodeChanged {
				if err := p.loadNodes(ctx); err != nil {
					return err
				}
				break
			}
		}
	}
}
