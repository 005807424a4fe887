package control

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/burrow-vpn/burrow/internal/access"
	"github.com/burrow-vpn/burrow/internal/control/pgtest"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

// backend opens a fresh, empty store of one kind. Every conformance test
// runs on each.
type backend struct {
	name string
	open func(t *testing.T) *SQLStore
	// reopen opens a second handle on the same database, as another
	// process would.
	reopen func(t *testing.T, s *SQLStore) *SQLStore
}

var backends = []backend{
	{
		name: "sqlite",
		open: func(t *testing.T) *SQLStore {
			s, err := OpenSQLite(context.Background(), filepath.Join(t.TempDir(), "control.db"))
			return mustOpen(t, s, err)
		},
		reopen: func(t *testing.T, s *SQLStore) *SQLStore {
			s, err := OpenSQLite(context.Background(), s.path)
			return mustOpen(t, s, err)
		},
	},
	{
		name: "postgres",
		open: func(t *testing.T) *SQLStore {
			s, err := OpenPostgres(context.Background(), pgtest.DB(t))
			return mustOpen(t, s, err)
		},
		reopen: func(t *testing.T, s *SQLStore) *SQLStore {
			s, err := OpenPostgres(context.Background(), s.path)
			return mustOpen(t, s, err)
		},
	},
}

func mustOpen(t *testing.T, s *SQLStore, err error) *SQLStore {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("close: %v", err)
		}
	})
	return s
}

// forEach runs fn as a subtest on a fresh store of each backend.
func forEach(t *testing.T, fn func(t *testing.T, s *SQLStore)) {
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) { fn(t, b.open(t)) })
	}
}

// clock is a settable clock safe for concurrent use.
type clock struct{ unix atomic.Int64 }

func newClock(s *SQLStore) *clock {
	c := &clock{}
	c.unix.Store(time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC).Unix())
	s.now = c.now
	return c
}

func (c *clock) now() time.Time         { return time.Unix(c.unix.Load(), 0).UTC() }
func (c *clock) add(d time.Duration)    { c.unix.Add(int64(d / time.Second)) }
func ctxT(t *testing.T) context.Context { return t.Context() }

func allChanges(t *testing.T, s Store, after int64) []Change {
	t.Helper()
	var out []Change
	for {
		cs, err := s.Changes(ctxT(t), after, 1000)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, cs...)
		if len(cs) < 1000 {
			return out
		}
		after = cs[len(cs)-1].Version
	}
}

func mustUser(t *testing.T, s Store, name string, quota int64) *access.User {
	t.Helper()
	u, err := s.CreateUser(ctxT(t), access.NewUser{Name: name, Quota: quota})
	if err != nil {
		t.Fatal(err)
	}
	return u
}

func mustNode(t *testing.T, s Store, name string, role Role) *Node {
	t.Helper()
	n, err := s.CreateNode(ctxT(t), name, role)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// TestUserChangesLogged: every user write that changes something appends
// exactly one change carrying the row after it; no-ops and failures append
// nothing.
func TestUserChangesLogged(t *testing.T) {
	forEach(t, func(t *testing.T, s *SQLStore) {
		ctx := ctxT(t)
		clk := newClock(s)
		u := mustUser(t, s, "alice", 0)
		q := int64(5 << 30)
		steps := []struct {
			name    string
			do      func() error
			logged  bool
			wantErr error
		}{
			{"update", func() error { _, err := s.UpdateUser(ctx, u.ID, access.UserUpdate{Quota: &q}); return err }, true, nil},
			{"bad update", func() error {
				n := int64(-1)
				_, err := s.UpdateUser(ctx, u.ID, access.UserUpdate{Quota: &n})
				return err
			}, false, access.ErrInvalid},
			{"revoke", func() error { return s.RevokeUser(ctx, u.ID) }, true, nil},
			{"revoke again", func() error { return s.RevokeUser(ctx, u.ID) }, false, nil},
			{"enable", func() error { return s.EnableUser(ctx, u.ID) }, true, nil},
			{"enable again", func() error { return s.EnableUser(ctx, u.ID) }, false, nil},
			{"rotate", func() error { _, err := s.RotateUUID(ctx, u.ID); return err }, true, nil},
			{"reset", func() error { clk.add(time.Hour); return s.ResetTraffic(ctx, u.ID, clk.now()) }, true, nil},
			{"reset done", func() error { return s.ResetTraffic(ctx, u.ID, clk.now()) }, false, nil},
			{"duplicate", func() error { _, err := s.CreateUser(ctx, access.NewUser{Name: "ALICE"}); return err }, false, access.ErrExists},
			{"revoke missing", func() error { return s.RevokeUser(ctx, 999) }, false, access.ErrNotFound},
			{"rotate missing", func() error { _, err := s.RotateUUID(ctx, 999); return err }, false, access.ErrNotFound},
			{"traffic", func() error {
				return s.AddTraffic(ctx, map[int64]access.Traffic{u.ID: {Up: 10, Down: 20}}, "2026-12-01")
			}, false, nil},
		}
		want := int64(1) // the create
		for _, st := range steps {
			err := st.do()
			if !errors.Is(err, st.wantErr) || (st.wantErr == nil) != (err == nil) {
				t.Fatalf("%s: err = %v, want %v", st.name, err, st.wantErr)
			}
			if st.logged {
				want++
			}
			v, err := s.Version(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if v != want {
				t.Fatalf("after %s: Version() = %d, want %d", st.name, v, want)
			}
			cur, err := s.UserByName(ctx, "alice")
			if err != nil {
				t.Fatal(err)
			}
			cs := allChanges(t, s, 0)
			last := cs[len(cs)-1]
			if st.logged && (last.Kind != ChangeUser || last.Version != v || !sameUser(last.User, cur)) {
				t.Fatalf("after %s: last change = %+v %+v, want the user's row %+v", st.name, last, last.User, cur)
			}
		}
		u2, _ := s.UserByName(ctx, "alice")
		if u2.BytesUp != 10 || u2.BytesDown != 20 || u2.LastSeenDay != "2026-12-01" {
			t.Fatalf("counters after AddTraffic = %d/%d %q, want 10/20 2026-12-01", u2.BytesUp, u2.BytesDown, u2.LastSeenDay)
		}
	})
}

// sameUser compares everything but the counters, which change without a
// log entry.
func sameUser(a, b *access.User) bool {
	if a == nil || b == nil {
		return a == b
	}
	x, y := *a, *b
	x.BytesUp, x.BytesDown, x.LastSeenDay = 0, 0, ""
	y.BytesUp, y.BytesDown, y.LastSeenDay = 0, 0, ""
	return x == y
}

// TestVersionsGapFreeUnderConcurrency: writers in several goroutines; a
// reader following the log never sees a gap (a version becomes visible only
// after every lower one), and at the end the log is exactly 1..N with one
// entry per write.
func TestVersionsGapFreeUnderConcurrency(t *testing.T) {
	forEach(t, func(t *testing.T, s *SQLStore) {
		ctx := ctxT(t)
		const writers, each = 4, 15
		var wg sync.WaitGroup
		errs := make(chan error, writers)
		done := make(chan struct{})
		readErr := make(chan error, 1)
		go func() { readErr <- followLog(ctx, s, done) }()
		for w := range writers {
			wg.Go(func() {
				for i := range each {
					u, err := s.CreateUser(ctx, access.NewUser{Name: "u" + string(rune('a'+w)) + strconv.Itoa(i)})
					if err == nil {
						err = s.RevokeUser(ctx, u.ID)
					}
					if err != nil {
						errs <- err
						return
					}
				}
			})
		}
		wg.Wait()
		close(done)
		close(errs)
		for err := range errs {
			t.Fatal(err)
		}
		if err := <-readErr; err != nil {
			t.Fatal(err)
		}
		cs := allChanges(t, s, 0)
		if len(cs) != 2*writers*each {
			t.Fatalf("%d changes, want %d", len(cs), 2*writers*each)
		}
		for i, c := range cs {
			if c.Version != int64(i+1) {
				t.Fatalf("change %d has version %d, want %d", i, c.Version, i+1)
			}
		}
	})
}

// followLog reads the log as a node would until done, checking each batch
// starts right after the last version seen and is contiguous.
func followLog(ctx context.Context, s Store, done <-chan struct{}) error {
	var last int64
	for {
		select {
		case <-done:
			return nil
		default:
		}
		cs, err := s.Changes(ctx, last, 100)
		if err != nil {
			return err
		}
		for _, c := range cs {
			if c.Version != last+1 {
				return errors.New("gap in the log: saw version " + strconv.Itoa(int(c.Version)) + " after " + strconv.Itoa(int(last)))
			}
			last = c.Version
		}
	}
}

// TestSnapshotConsistent: under concurrent writers, each snapshot's users
// are exactly what replaying the log up to its version gives — so a change
// and its log entry are never seen apart.
func TestSnapshotConsistent(t *testing.T) {
	forEach(t, func(t *testing.T, s *SQLStore) {
		ctx := ctxT(t)
		const writers, each = 3, 15
		var wg sync.WaitGroup
		errs := make(chan error, writers)
		for w := range writers {
			wg.Go(func() {
				for i := range each {
					u, err := s.CreateUser(ctx, access.NewUser{Name: "s" + string(rune('a'+w)) + strconv.Itoa(i)})
					if err == nil && i%2 == 0 {
						_, err = s.RotateUUID(ctx, u.ID)
					}
					if err != nil {
						errs <- err
						return
					}
				}
			})
		}
		stop := make(chan struct{})
		go func() { wg.Wait(); close(stop) }()
		snaps := 0
		for running := true; running || snaps < 3; snaps++ {
			select {
			case <-stop:
				running = false
			default:
			}
			snap, err := s.Snapshot(ctx)
			if err != nil {
				t.Fatal(err)
			}
			replayed := map[int64]*access.User{}
			for _, c := range allChanges(t, s, 0) {
				if c.Version > snap.Version {
					break
				}
				replayed[c.User.ID] = c.User
			}
			if len(replayed) != len(snap.Users) {
				t.Fatalf("snapshot at %d has %d users, the log up to it %d", snap.Version, len(snap.Users), len(replayed))
			}
			for _, u := range snap.Users {
				if !sameUser(u, replayed[u.ID]) {
					t.Fatalf("snapshot at %d: user %d = %+v, log says %+v", snap.Version, u.ID, u, replayed[u.ID])
				}
			}
		}
		close(errs)
		for err := range errs {
			t.Fatal(err)
		}
	})
}

// TestWaitChange: a waiter wakes for a change made through another handle
// on the same database (as by another process), and gives up with its ctx.
func TestWaitChange(t *testing.T) {
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			s := b.open(t)
			other := b.reopen(t, s)
			ctx := ctxT(t)
			if b.name == "postgres" {
				s.poll = func() time.Duration { return 0 } // only NOTIFY can wake it
			}
			got := make(chan int64, 1)
			errc := make(chan error, 1)
			go func() {
				v, err := s.WaitChange(ctx, 0)
				got <- v
				errc <- err
			}()
			mustUser(t, other, "bob", 0)
			select {
			case v := <-got:
				if err := <-errc; err != nil || v != 1 {
					t.Fatalf("WaitChange(0) = %d, %v; want 1", v, err)
				}
			case <-time.After(30 * time.Second):
				t.Fatal("WaitChange did not wake within 30 s of a change by another handle")
			}
			cctx, cancel := context.WithCancel(ctx)
			go func() {
				_, err := s.WaitChange(cctx, 1)
				errc <- err
			}()
			cancel()
			if err := <-errc; !errors.Is(err, context.Canceled) {
				t.Fatalf("WaitChange after cancel = %v, want context.Canceled", err)
			}
		})
	}
}

// TestChangesResync: a follower behind a pruned part of the log, or ahead
// of it, is told to start again from a snapshot; one up to date is not.
func TestChangesResync(t *testing.T) {
	forEach(t, func(t *testing.T, s *SQLStore) {
		ctx := ctxT(t)
		for i := range 5 {
			mustUser(t, s, "p"+strconv.Itoa(i), 0)
		}
		if cs, err := s.Changes(ctx, 5, 10); err != nil || len(cs) != 0 {
			t.Fatalf("Changes(head) = %v, %v; want none", cs, err)
		}
		if _, err := s.Changes(ctx, 6, 10); !errors.Is(err, ErrResync) {
			t.Fatalf("Changes(ahead of the log) = %v, want ErrResync", err)
		}
		if n, err := s.PruneChanges(ctx, 3); err != nil || n != 3 {
			t.Fatalf("PruneChanges(3) = %d, %v; want 3", n, err)
		}
		for _, after := range []int64{0, 2} {
			if _, err := s.Changes(ctx, after, 10); !errors.Is(err, ErrResync) {
				t.Errorf("Changes(%d) after pruning through 3 = %v, want ErrResync", after, err)
			}
		}
		if cs, err := s.Changes(ctx, 3, 10); err != nil || len(cs) != 2 || cs[0].Version != 4 {
			t.Fatalf("Changes(3) = %v, %v; want versions 4 and 5", cs, err)
		}
		if _, err := s.PruneChanges(ctx, 5); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Changes(ctx, 4, 10); !errors.Is(err, ErrResync) {
			t.Fatalf("Changes(4) with the whole log pruned = %v, want ErrResync", err)
		}
		if cs, err := s.Changes(ctx, 5, 10); err != nil || len(cs) != 0 {
			t.Fatalf("Changes(head) with the whole log pruned = %v, %v; want none", cs, err)
		}
		snap, err := s.Snapshot(ctx)
		if err != nil || snap.Version != 5 || len(snap.Users) != 5 {
			t.Fatalf("Snapshot after pruning = %+v, %v; want version 5 with 5 users", snap, err)
		}
	})
}
