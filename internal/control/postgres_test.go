package control

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/burrow-vpn/burrow/internal/access"
	"github.com/burrow-vpn/burrow/internal/control/pgtest"
)

// TestPostgresRestart: after PostgreSQL crashes and comes back, the store
// works again (a query may fail once per broken connection) and its
// listener reconnects, so WaitChange wakes for another process's change
// without polling.
func TestPostgresRestart(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	c := pgtest.New(t)
	dsn, err := c.NewDB(ctx)
	if err != nil {
		t.Fatal(err)
	}
	s := mustOpenPG(t, ctx, dsn)
	other := mustOpenPG(t, ctx, dsn)
	s.poll = func() time.Duration { return 0 }
	mustUser(t, other, "before", 0)
	if err := c.Halt(); err != nil {
		t.Fatal(err)
	}
	if _, err := other.Version(ctx); err == nil {
		t.Fatal("Version() with PostgreSQL down: want an error")
	}
	if err := c.Resume(); err != nil {
		t.Fatal(err)
	}
	eventually(t, ctx, func() error { _, err := other.CreateUser(ctx, access.NewUser{Name: "after"}); return err })
	var v int64
	eventually(t, ctx, func() (err error) { v, err = s.Version(ctx); return err })
	woke := make(chan error, 1)
	go func() {
		got, err := s.WaitChange(ctx, v)
		if err == nil && got != v+1 {
			err = errorf("WaitChange(%d) = %d, want %d", v, got, v+1)
		}
		woke <- err
	}()
	if _, err := other.CreateUser(ctx, access.NewUser{Name: "later"}); err != nil {
		t.Fatal(err)
	}
	if err := <-woke; err != nil {
		t.Fatal(err)
	}
}

func mustOpenPG(t *testing.T, ctx context.Context, dsn string) *SQLStore {
	t.Helper()
	s, err := OpenPostgres(ctx, dsn)
	return mustOpen(t, s, err)
}

// eventually runs fn until it succeeds, at most once per broken pooled
// connection plus a few, failing the test when ctx ends first.
func eventually(t *testing.T, ctx context.Context, fn func() error) {
	t.Helper()
	var err error
	for range 40 {
		if err = fn(); err == nil {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("still failing when the test's time ran out: %v", err)
		case <-time.After(100 * time.Millisecond): // a retry pause, not synchronisation
		}
	}
	t.Fatalf("still failing after 40 tries: %v", err)
}

func errorf(format string, args ...any) error { return fmt.Errorf(format, args...) }
