package access

import (
	"context"
	"errors"
	"path/filepath"
	"testing"
	"time"
)

func openReplica(t *testing.T, path string) *SQLiteStore {
	t.Helper()
	s, err := OpenSQLite(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	s.QueueTraffic()
	return s
}

func fleetUser(id int64, name string, up int64) *User {
	now := time.Now().UTC().Truncate(time.Second)
	return &User{ID: id, Name: name, UUID: NewUUID(), CreatedAt: now, Reset: ResetNever,
		PeriodStart: now, BytesUp: up, Quota: 1 << 30}
}

func TestReplicaAppliesInOrder(t *testing.T) {
	ctx := context.Background()
	s := openReplica(t, filepath.Join(t.TempDir(), "users.db"))
	a, b := fleetUser(7, "anna", 100), fleetUser(9, "boris", 0)
	if err := s.ReplaceUsers(ctx, 10, []*User{a, b}); err != nil {
		t.Fatal(err)
	}
	if v, err := s.ReplicaVersion(ctx); err != nil || v != 10 {
		t.Fatalf("version %d, %v; want 10", v, err)
	}
	got, err := s.UserByUUID(ctx, a.UUID)
	if err != nil || got.ID != 7 || got.BytesUp != 100 || got.Quota != 1<<30 {
		t.Fatalf("anna: %+v, %v", got, err)
	}
	if _, err := s.UserBySubToken(ctx, got.SubToken); err != nil {
		t.Fatal(err) // a token only the replica knows fills the column
	}

	// A change that skips versions is refused; the replica stays as it was.
	b.Revoked = true
	if err := s.ApplyUsers(ctx, 11, 12, []*User{b}); !errors.Is(err, ErrReplicaGap) {
		t.Fatalf("gap: %v, want ErrReplicaGap", err)
	}
	if u, _ := s.UserByName(ctx, "boris"); u.Revoked {
		t.Fatal("a refused batch changed the replica")
	}
	// In order: applied; again: skipped (a retried delivery).
	old := a.UUID
	a.UUID = NewUUID()
	for range 2 {
		if err := s.ApplyUsers(ctx, 10, 11, []*User{a, b}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.UserByUUID(ctx, old); !errors.Is(err, ErrNotFound) {
		t.Fatalf("old uuid still accepted: %v", err)
	}
	if u, _ := s.UserByName(ctx, "boris"); !u.Revoked {
		t.Fatal("revocation not applied")
	}
	// A snapshot drops users it does not list.
	if err := s.ReplaceUsers(ctx, 20, []*User{a}); err != nil {
		t.Fatal(err)
	}
	if users, _ := s.ListUsers(ctx); len(users) != 1 || users[0].Name != "anna" {
		t.Fatalf("after snapshot: %d users", len(users))
	}
}

func TestReplicaQueuesTraffic(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "users.db")
	s := openReplica(t, path)
	a := fleetUser(3, "anna", 1000)
	if err := s.ReplaceUsers(ctx, 1, []*User{a}); err != nil {
		t.Fatal(err)
	}
	for _, up := range []int64{10, 20} {
		if err := s.AddTraffic(ctx, map[int64]Traffic{3: {Up: up, Down: 1}}, "2026-12-07"); err != nil {
			t.Fatal(err)
		}
	}
	pend, err := s.PendingTraffic(ctx, 10)
	if err != nil || len(pend) != 2 || pend[0].Seq != 1 || pend[1].Seq != 2 || pend[1].Deltas[3].Up != 20 {
		t.Fatalf("pending %+v, %v", pend, err)
	}
	// The control plane's counters arrive without the unacknowledged
	// batches; the replica keeps counting them.
	if err := s.ApplyUsers(ctx, 1, 2, []*User{a}); err != nil {
		t.Fatal(err)
	}
	if u, _ := s.UserByName(ctx, "anna"); u.BytesUp != 1030 || u.BytesDown != 2 {
		t.Fatalf("counters %d/%d, want 1030/2", u.BytesUp, u.BytesDown)
	}
	if err := s.AckTraffic(ctx, 2); err != nil {
		t.Fatal(err)
	}
	if pend, _ := s.PendingTraffic(ctx, 10); len(pend) != 0 {
		t.Fatalf("after ack: %+v", pend)
	}
	// Numbers are never reused, also after every batch was acknowledged
	// and the database reopened.
	s.Close()
	s = openReplica(t, path)
	if err := s.AddTraffic(ctx, map[int64]Traffic{3: {Up: 5}}, "2026-12-07"); err != nil {
		t.Fatal(err)
	}
	if pend, _ := s.PendingTraffic(ctx, 10); len(pend) != 1 || pend[0].Seq != 3 {
		t.Fatalf("after ack, next batch %+v, want seq 3", pend)
	}
}
