package server

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/burrow-vpn/burrow/internal/access"
)

// memSource is an in-memory UserSource.
type memSource struct {
	mu      sync.Mutex
	users   map[int64]*access.User
	fail    error
	flushes []map[int64]access.Traffic
	// listed, when set, is told once that a ListUsers has read the users,
	// and that ListUsers returns only when held is closed.
	listed chan struct{}
	held   chan struct{}
}

func (m *memSource) ListUsers(context.Context) ([]*access.User, error) {
	m.mu.Lock()
	var out []*access.User
	for id := int64(1); id <= int64(len(m.users)); id++ {
		c := *m.users[id]
		out = append(out, &c)
	}
	listed, held := m.listed, m.held
	m.listed, m.held = nil, nil
	m.mu.Unlock()
	if listed != nil {
		close(listed)
		<-held
	}
	return out, nil
}

func (m *memSource) AddTraffic(_ context.Context, d map[int64]access.Traffic, _ string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.fail != nil {
		return m.fail
	}
	m.flushes = append(m.flushes, d)
	for id, t := range d {
		m.users[id].BytesUp += t.Up
		m.users[id].BytesDown += t.Down
	}
	return nil
}

func (m *memSource) ResetTraffic(context.Context, int64, time.Time) error { return nil }

func (m *memSource) set(id int64, f func(*access.User)) {
	m.mu.Lock()
	f(m.users[id])
	m.mu.Unlock()
}

func newTestRegistry(t testing.TB, users ...access.User) (*Registry, *memSource) {
	t.Helper()
	src := &memSource{users: map[int64]*access.User{}}
	for i := range users {
		u := users[i]
		u.ID = int64(i + 1)
		u.UUID = [16]byte{byte(i + 1)}
		src.users[u.ID] = &u
	}
	r := NewRegistry(src, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err := r.Refresh(context.Background()); err != nil {
		t.Fatal(err)
	}
	return r, src
}

func cutWithin(s *Session, d time.Duration) bool {
	select {
	case <-s.Done():
		return true
	case <-time.After(d):
		return false
	}
}

func TestRegistryCutsOnlyTheChangedUser(t *testing.T) {
	cases := []struct {
		name   string
		change func(*access.User)
	}{
		{"revoke", func(u *access.User) { u.Revoked = true }},
		{"expire", func(u *access.User) { u.ExpiresAt = time.Now().Add(-time.Second) }},
		{"quota", func(u *access.User) { u.Quota = 10; u.BytesDown = 10 }},
		{"rotate", func(u *access.User) { u.UUID = [16]byte{99} }},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r, src := newTestRegistry(t, access.User{Name: "alice"}, access.User{Name: "bob"})
			a, err := r.Acquire([16]byte{1})
			if err != nil {
				t.Fatal(err)
			}
			b, err := r.Acquire([16]byte{2})
			if err != nil {
				t.Fatal(err)
			}
			if got := r.Active(); got[1] != 1 || got[2] != 1 {
				t.Fatalf("Active() = %v, want one session each", got)
			}
			var hooked sync.WaitGroup
			hooked.Add(1)
			a.OnCut(hooked.Done)
			src.set(1, c.change)
			if err := r.Refresh(context.Background()); err != nil {
				t.Fatal(err)
			}
			if !cutWithin(a, time.Second) {
				t.Errorf("%s: alice's session was not cut", c.name)
			}
			hooked.Wait()
			if cutWithin(b, 50*time.Millisecond) {
				t.Errorf("%s: bob's session was cut too", c.name)
			}
			if _, err := r.Acquire([16]byte{1}); err == nil {
				t.Errorf("%s: Acquire(alice) after the change succeeded", c.name)
			}
			if got := r.Active(); got[1] != 0 || got[2] != 1 {
				t.Errorf("%s: Active() = %v, want only bob", c.name, got)
			}
		})
	}
}

func TestRegistryPokeRefreshesAtOnce(t *testing.T) {
	r, src := newTestRegistry(t, access.User{Name: "alice"})
	s, err := r.Acquire([16]byte{1})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { r.Run(ctx, time.Hour, time.Hour); close(done) }()
	defer func() { cancel(); <-done }()
	src.set(1, func(u *access.User) { u.Revoked = true })
	r.Poke()
	r.Poke() // never blocks
	if !cutWithin(s, 500*time.Millisecond) {
		t.Error("session not cut within 500ms of Poke (the refresh tick is an hour)")
	}
}

// TestRegistryPokeWait: a change made in the store before PokeWait is in
// force when it returns, even when a refresh that read the store before
// the change was under way at the call (PokeWait waits for a later one).
func TestRegistryPokeWait(t *testing.T) {
	r, src := newTestRegistry(t, access.User{Name: "erin", Quota: 1000, BytesDown: 1000})
	if _, err := r.Acquire([16]byte{1}); !errors.Is(err, access.ErrQuotaExceeded) {
		t.Fatalf("over quota: Acquire = %v, want ErrQuotaExceeded", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { r.Run(ctx, time.Hour, time.Hour); close(done) }()
	defer func() { cancel(); <-done }()

	// A refresh reads the store and is held there.
	listed, held := make(chan struct{}), make(chan struct{})
	src.mu.Lock()
	src.listed, src.held = listed, held
	src.mu.Unlock()
	r.Poke()
	<-listed
	// Now the quota is raised, and the operator's call waits.
	src.set(1, func(u *access.User) { u.Quota = 1 << 30 })
	waited := make(chan error, 1)
	go func() { waited <- r.PokeWait(ctx) }()
	close(held) // the stale refresh ends first
	if err := <-waited; err != nil {
		t.Fatal(err)
	}
	s, err := r.Acquire([16]byte{1})
	if err != nil {
		t.Fatalf("after PokeWait: Acquire = %v, want the raised quota in force", err)
	}
	s.Close()

	// A cancelled wait returns the context's error.
	cctx, ccancel := context.WithCancel(context.Background())
	ccancel()
	src.mu.Lock()
	src.listed, src.held = make(chan struct{}), make(chan struct{})
	hold := src.held
	src.mu.Unlock()
	if err := r.PokeWait(cctx); !errors.Is(err, context.Canceled) {
		t.Errorf("PokeWait with a cancelled context = %v, want context.Canceled", err)
	}
	close(hold)
}

// take reserves n bytes on d and settles them as moved, and returns how many it got.
func take(d *Direction, n int64) int64 {
	g := d.Reserve(n)
	d.Settle(g, g)
	return g
}

// left returns what the user's sessions may still reserve.
func left(s *Session) int64 { return s.lu.budget.Load() }

func TestRegistryQuotaBudgetAndFlush(t *testing.T) {
	r, src := newTestRegistry(t, access.User{Name: "alice", Quota: 1000})
	s, err := r.Acquire([16]byte{1})
	if err != nil {
		t.Fatal(err)
	}
	up, down := s.Up(), s.Down()
	if b := left(s); b != 1000 {
		t.Fatalf("budget = %d, want 1000", b)
	}
	take(up, 100)
	take(down, 500)
	if b := left(s); b != 400 {
		t.Errorf("budget after 600 bytes = %d, want 400", b)
	}
	if g := down.Reserve(300); g != 300 || left(s) != 100 {
		t.Errorf("Reserve(300) = %d leaving %d, want 300 leaving 100", g, left(s))
	} else if down.Settle(300, 50); left(s) != 350 {
		t.Errorf("budget after settling 50 of 300 = %d, want 350", left(s))
	}
	if u := r.Usage()[1]; u != (access.Traffic{Up: 100, Down: 550}) {
		t.Errorf("Usage() before a flush = %+v, want 100 up, 550 down", u)
	}
	src.fail = errors.New("disk full")
	if err := r.Flush(context.Background()); err == nil {
		t.Fatal("Flush with a failing store succeeded")
	}
	if err := r.Refresh(context.Background()); err != nil {
		t.Fatal(err)
	}
	if b := left(s); b != 350 {
		t.Errorf("budget after a failed flush = %d, want 350 (nothing lost, nothing counted twice)", b)
	}
	src.fail = nil
	if err := r.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	if u := src.users[1]; u.BytesUp != 100 || u.BytesDown != 550 {
		t.Errorf("stored %d up, %d down; want 100, 550", u.BytesUp, u.BytesDown)
	}
	if u := r.Usage()[1]; u != (access.Traffic{Up: 100, Down: 550}) {
		t.Errorf("Usage() after a flush = %+v, want 100 up, 550 down (not counted twice)", u)
	}
	if err := r.Refresh(context.Background()); err != nil {
		t.Fatal(err)
	}
	if b := left(s); b != 350 {
		t.Errorf("budget after flush and refresh = %d, want 350", b)
	}
	if g := take(down, 1000); g != 350 {
		t.Errorf("Reserve(1000) with 350 left = %d, want 350", g)
	}
	if g := up.Reserve(1); g != 0 {
		t.Errorf("Reserve(1) at the quota = %d, want 0", g)
	}
	if err := r.Refresh(context.Background()); err != nil {
		t.Fatal(err)
	}
	if !cutWithin(s, time.Second) {
		t.Error("session at its quota was not cut by Refresh")
	}
}

// A quota raised or traffic reset in the store refills the budget that live
// sessions reserve from, without cutting them.
func TestRegistryRefillsLiveBudget(t *testing.T) {
	r, src := newTestRegistry(t, access.User{Name: "alice", Quota: 1000})
	s, err := r.Acquire([16]byte{1})
	if err != nil {
		t.Fatal(err)
	}
	down := s.Down()
	take(down, 900)
	if err := r.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	held := down.Reserve(50) // a chunk in flight across the refresh
	src.set(1, func(u *access.User) { u.Quota = 5000 })
	if err := r.Refresh(context.Background()); err != nil {
		t.Fatal(err)
	}
	if b := left(s); b != 5000-900-held {
		t.Errorf("budget after raising the quota to 5000 = %d, want %d", b, 5000-900-held)
	}
	down.Settle(held, held)
	src.set(1, func(u *access.User) { u.BytesUp, u.BytesDown = 0, 0 })
	if err := r.Refresh(context.Background()); err != nil {
		t.Fatal(err)
	}
	if b := left(s); b != 5000-held {
		t.Errorf("budget after a traffic reset = %d, want %d (the unflushed %d stay counted)", b, 5000-held, held)
	}
	src.set(1, func(u *access.User) { u.Quota = 0 })
	if err := r.Refresh(context.Background()); err != nil {
		t.Fatal(err)
	}
	if g := take(down, 1<<40); g != 1<<40 {
		t.Errorf("Reserve(1 TiB) without a quota = %d, want all", g)
	}
	select {
	case <-s.Done():
		t.Error("a session was cut by a quota change")
	default:
	}
}

// Many goroutines reserving from one user's budget never take more than it
// holds, and get all of it.
func TestRegistryParallelReserveNeverOverdraws(t *testing.T) {
	const quota = 10 << 20
	r, _ := newTestRegistry(t, access.User{Name: "alice", Quota: quota})
	var total atomic.Int64
	var sessions []*Session
	for range 16 {
		s, err := r.Acquire([16]byte{1})
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		sessions = append(sessions, s)
	}
	var wg sync.WaitGroup
	for _, s := range sessions {
		wg.Go(func() {
			up, down := s.Up(), s.Down()
			for i := 0; ; i++ {
				d := up
				if i%2 == 0 {
					d = down
				}
				g := d.Reserve(64 << 10)
				if g == 0 {
					return
				}
				d.Settle(g, g-g/8) // some of each chunk goes unused and back
				total.Add(g - g/8)
			}
		})
	}
	wg.Wait()
	if got := total.Load(); got != quota {
		t.Errorf("moved %d bytes, want exactly the quota %d", got, quota)
	}
	if u := r.Usage()[1]; u.Up+u.Down != quota {
		t.Errorf("Usage() = %+v, want %d in all", u, quota)
	}
}
