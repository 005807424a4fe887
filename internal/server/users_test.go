package server

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"sync"
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
}

func (m *memSource) ListUsers(context.Context) ([]*access.User, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []*access.User
	for id := int64(1); id <= int64(len(m.users)); id++ {
		c := *m.users[id]
		out = append(out, &c)
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

func newTestRegistry(t *testing.T, users ...access.User) (*Registry, *memSource) {
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

func TestRegistryQuotaBudgetAndFlush(t *testing.T) {
	r, src := newTestRegistry(t, access.User{Name: "alice", Quota: 1000})
	s, err := r.Acquire([16]byte{1})
	if err != nil {
		t.Fatal(err)
	}
	up, down := s.Up(), s.Down()
	if b := down.Budget(); b != 1000 {
		t.Fatalf("Budget() = %d, want 1000", b)
	}
	up.Add(100)
	down.Add(500)
	if b := up.Budget(); b != 400 {
		t.Errorf("Budget() after 600 bytes = %d, want 400", b)
	}
	if u := r.Usage()[1]; u != (access.Traffic{Up: 100, Down: 500}) {
		t.Errorf("Usage() before a flush = %+v, want 100 up, 500 down", u)
	}
	src.fail = errors.New("disk full")
	if err := r.Flush(context.Background()); err == nil {
		t.Fatal("Flush with a failing store succeeded")
	}
	if b := up.Budget(); b != 400 {
		t.Errorf("Budget() after a failed flush = %d, want 400 (nothing lost, nothing counted twice)", b)
	}
	src.fail = nil
	if err := r.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	if u := src.users[1]; u.BytesUp != 100 || u.BytesDown != 500 {
		t.Errorf("stored %d up, %d down; want 100, 500", u.BytesUp, u.BytesDown)
	}
	if u := r.Usage()[1]; u != (access.Traffic{Up: 100, Down: 500}) {
		t.Errorf("Usage() after a flush = %+v, want 100 up, 500 down (not counted twice)", u)
	}
	if err := r.Refresh(context.Background()); err != nil {
		t.Fatal(err)
	}
	if b := down.Budget(); b != 400 {
		t.Errorf("Budget() after flush and refresh = %d, want 400", b)
	}
	down.Add(400)
	if b := down.Budget(); b > 0 {
		t.Errorf("Budget() at the quota = %d, want <= 0", b)
	}
	if err := r.Refresh(context.Background()); err != nil {
		t.Fatal(err)
	}
	if !cutWithin(s, time.Second) {
		t.Error("session at its quota was not cut by Refresh")
	}
}
