package control

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/burrow-vpn/burrow/internal/access"
	"github.com/burrow-vpn/burrow/internal/control/pgtest"
)

// benchUsers is the fleet size the benchmarks load.
const benchUsers = 100_000

// BenchmarkPostgres100k loads 100,000 users into a fresh PostgreSQL store
// (one import, so 100,000 change log entries), then measures what a
// joining node costs the control plane: one Snapshot, and reading the log
// in pages of 1000.
//
//	go test -run XXX -bench Postgres100k -benchtime 5x ./internal/control/
func BenchmarkPostgres100k(b *testing.B) {
	ctx := context.Background()
	s, err := OpenPostgres(ctx, pgtest.DB(b))
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	start := time.Now()
	if err := s.ImportUsers(ctx, benchUserList(benchUsers)); err != nil {
		b.Fatal(err)
	}
	b.Logf("imported %d users in %v", benchUsers, time.Since(start).Round(time.Millisecond))

	b.Run("Snapshot", func(b *testing.B) {
		for b.Loop() {
			snap, err := s.Snapshot(ctx)
			if err != nil || len(snap.Users) != benchUsers {
				b.Fatalf("Snapshot: %d users, %v", len(snap.Users), err)
			}
		}
	})
	b.Run("ChangesPage1000", func(b *testing.B) {
		after := int64(0)
		for b.Loop() {
			cs, err := s.Changes(ctx, after, 1000)
			if err != nil || len(cs) != 1000 {
				b.Fatalf("Changes(%d, 1000): %d, %v", after, len(cs), err)
			}
			after = (after + 1000) % (benchUsers - 1000)
		}
	})
	b.Run("ChangesAll", func(b *testing.B) {
		for b.Loop() {
			n, after := 0, int64(0)
			for {
				cs, err := s.Changes(ctx, after, 1000)
				if err != nil {
					b.Fatal(err)
				}
				n += len(cs)
				if len(cs) < 1000 {
					break
				}
				after = cs[len(cs)-1].Version
			}
			if n != benchUsers {
				b.Fatalf("paged %d changes, want %d", n, benchUsers)
			}
		}
	})
	b.Run("CreateUser", func(b *testing.B) {
		i := 0
		for b.Loop() {
			i++
			if _, err := s.CreateUser(ctx, access.NewUser{Name: fmt.Sprintf("new%d", i)}); err != nil {
				b.Fatal(err)
			}
		}
	})
}

func benchUserList(n int) []*access.User {
	now := time.Now().UTC().Truncate(time.Second)
	users := make([]*access.User, n)
	for i := range users {
		users[i] = &access.User{Name: fmt.Sprintf("user%06d", i), UUID: access.NewUUID(), SubToken: access.NewSubToken(),
			CreatedAt: now, PeriodStart: now, Quota: 50 << 30, Reset: access.ResetMonthly}
	}
	return users
}
