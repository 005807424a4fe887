package relay

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"

	"github.com/burrow-vpn/burrow/internal/camo"
	"github.com/burrow-vpn/burrow/internal/relaylink"
	"github.com/burrow-vpn/burrow/internal/trunk"
)

// Client connections ride trunks (package trunk): a few XHTTP sessions to
// each exit, each carrying many client connections with flow control of
// their own. A session survives the rotation of the pooled connections
// under it, so the trunks do; an idle client connection costs the relay
// one goroutine and a stream's few hundred bytes instead of an HTTP/2
// request with its goroutines and buffers (bench/relay_mem_test.go).
const (
	// maxTrunks is the most trunks to one exit. A trunk's upload goes one
	// request at a time, so busy clients are spread over several.
	maxTrunks = 4
	// legacyRetry is how long an exit that answered a trunk as an older
	// Burrow does (closing it) is served one session per client before
	// the relay asks again (the exit may have been upgraded).
	legacyRetry = 10 * time.Minute
)

// trunks is an exit's trunks.
type trunks struct {
	mu      sync.Mutex
	open    []*trunk.Trunk // guarded by mu
	opening int            // guarded by mu: trunks being opened
	legacy  time.Time      // guarded by mu: until then, one session per client
	changed chan struct{}  // guarded by mu: closed when an opening ends
	hdr     []byte         // the header of trunk sessions
}

// count is the number of live trunks.
func (ts *trunks) count() int {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	ts.pruneLocked()
	return len(ts.open)
}

// pruneLocked drops the trunks that ended, and closes spent ones (every
// stream id used) once their last stream ended.
func (ts *trunks) pruneLocked() {
	kept := ts.open[:0]
	for _, t := range ts.open {
		if t.Err() != nil {
			continue
		}
		if t.Spent() && t.Streams() == 0 {
			t.Close()
			continue
		}
		kept = append(kept, t)
	}
	clear(ts.open[len(kept):])
	ts.open = kept
}

// usableLocked counts the trunks that take new streams.
func (ts *trunks) usableLocked() int {
	n := 0
	for _, t := range ts.open {
		if !t.Spent() {
			n++
		}
	}
	return n
}

// closeAll ends every trunk (the exit is being removed).
func (ts *trunks) closeAll() {
	ts.mu.Lock()
	open := ts.open
	ts.open = nil
	ts.mu.Unlock()
	for _, t := range open {
		t.Close()
	}
}

// errLegacy: the exit closed a trunk session unanswered, as an exit from
// before trunks does.
var errLegacy = errors.New("the exit does not take trunks")

// open opens a client stream on the exit: on a trunk, or, with an exit
// that takes none, in a session of its own.
func (e *exit) open(ctx context.Context) (net.Conn, error) {
	if !e.pool.Connected() {
		// A trunk waits for a connection to its exit, however long that
		// takes: first see that the exit is there. A stopped exit refuses
		// the dial at once, and the client is shown the cover at once.
		if err := e.reachable(ctx); err != nil {
			if errors.Is(err, camo.ErrNotReality) {
				e.setUp(err) // the exit refuses the relay: down at once
			} else {
				e.failed.Add(1) // the probes judge the exit: this may be a busy pool
			}
			return nil, err
		}
	}
	for attempt := 0; ; attempt++ {
		t, err := e.trunk(ctx)
		if errors.Is(err, errLegacy) {
			c, err := e.openWith(ctx, e.client)
			if err == nil {
				e.opened.Add(1)
			}
			return c, err
		}
		if err != nil {
			e.failed.Add(1)
			return nil, err
		}
		s, err := t.Open()
		if err == nil {
			e.opened.Add(1)
			return s, nil
		}
		if attempt == 1 {
			e.failed.Add(1)
			return nil, err
		}
		// The trunk ended under us (its session gave up): once more, on
		// another or a new one.
	}
}

// trunk returns the trunk for a new stream: the least busy one, opening
// one when there is none; when every trunk carries streams, a new one is
// opened in the background for the next.
func (e *exit) trunk(ctx context.Context) (*trunk.Trunk, error) {
	ts := &e.trunks
	for {
		ts.mu.Lock()
		ts.pruneLocked()
		var best *trunk.Trunk
		bestN := 0
		for _, t := range ts.open {
			n := t.Streams()
			if n >= trunk.MaxStreams || t.Spent() {
				continue // full: another trunk, or a new one
			}
			if best == nil || n < bestN {
				best, bestN = t, n
			}
		}
		legacy := time.Now().Before(ts.legacy)
		if best != nil {
			if bestN > 0 && !legacy && ts.usableLocked()+ts.opening < maxTrunks {
				ts.opening++
				go func() {
					t, err := e.dialTrunk(context.Background())
					e.addTrunk(t, err)
				}()
			}
			ts.mu.Unlock()
			return best, nil
		}
		if legacy {
			ts.mu.Unlock()
			return nil, errLegacy
		}
		if ts.usableLocked() >= maxTrunks {
			ts.mu.Unlock()
			return nil, fmt.Errorf("every trunk to the exit carries %d streams", trunk.MaxStreams)
		}
		if ts.opening > 0 {
			// One is on its way: wait for it rather than open a trunk
			// per waiting client.
			ch := ts.changedLocked()
			ts.mu.Unlock()
			select {
			case <-ch:
				continue
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		}
		ts.opening++
		ts.mu.Unlock()
		t, err := e.dialTrunk(ctx)
		e.addTrunk(t, err)
		return t, err
	}
}

// changedLocked is closed when a trunk opening ends.
func (ts *trunks) changedLocked() chan struct{} {
	if ts.changed == nil {
		ts.changed = make(chan struct{})
	}
	return ts.changed
}

func (e *exit) addTrunk(t *trunk.Trunk, err error) {
	ts := &e.trunks
	ts.mu.Lock()
	defer ts.mu.Unlock()
	ts.opening--
	if ts.changed != nil {
		close(ts.changed)
		ts.changed = nil
	}
	switch {
	case errors.Is(err, errLegacy):
		if ts.legacy.IsZero() || time.Now().After(ts.legacy) {
			e.log.Info("the exit takes no trunks (an older Burrow): one session per client connection", "exit", e.name())
		}
		ts.legacy = time.Now().Add(legacyRetry)
	case err == nil:
		ts.open = append(ts.open, t)
	}
}

// dialTrunk opens a trunk session and waits for the exit's TrunkOK.
func (e *exit) dialTrunk(ctx context.Context) (*trunk.Trunk, error) {
	s, err := e.openWith(ctx, e.trunks.hdr)
	if err != nil {
		return nil, err
	}
	var b [1]byte
	s.SetReadDeadline(time.Now().Add(openTimeout))
	_, err = io.ReadFull(s, b[:])
	s.SetReadDeadline(time.Time{})
	switch {
	case errors.Is(err, io.EOF):
		s.Close()
		// An exit from before trunks closes the session unanswered; so
		// does one that refuses the relay, or one shutting down. Only an
		// exit that still answers a probe is an older Burrow.
		if perr := e.probeOnce(ctx); perr != nil {
			return nil, fmt.Errorf("open a trunk: the exit closed it, and then %w", perr)
		}
		return nil, errLegacy
	case err != nil:
		s.Close()
		return nil, fmt.Errorf("open a trunk: %w", err)
	case b[0] != relaylink.TrunkOK:
		s.Close()
		return nil, fmt.Errorf("open a trunk: the exit answered %#x", b[0])
	}
	return trunk.New(s, nil), nil
}
