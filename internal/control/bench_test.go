package control

import (
	"context"
	"fmt"
	"path/filepath"
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

// BenchmarkQueryUsers100k is the web panel's users page on a fleet of
// 100,000 users (every 10th over its quota, every 20th revoked, every 7th
// expiring within days), on each backend: the first page of 50 for each
// filter, a search matching 10% and one matching every user (the worst
// case: the count is a window over all of them), the 1,000 users online,
// and a page deep in the list. The target is the panel's first paint
// within 300 ms.
//
//	go test -run XXX -bench QueryUsers100k -benchtime 20x ./internal/control/
func BenchmarkQueryUsers100k(b *testing.B) {
	ctx := context.Background()
	now := time.Now().UTC().Truncate(time.Second)
	users := benchUserList(benchUsers)
	online := make([]int64, 0, 1000)
	for i, u := range users {
		switch {
		case i%10 == 0:
			u.BytesUp, u.BytesDown = u.Quota/2, u.Quota/2
		case i%20 == 5:
			u.Revoked = true
		case i%7 == 0:
			u.ExpiresAt = now.Add(time.Duration(1+i%5) * 24 * time.Hour)
		}
		if i%100 == 3 {
			online = append(online, int64(i+1)) // IDs are given in order from 1
		}
	}
	open := map[string]func(b *testing.B) (*SQLStore, error){
		"sqlite": func(b *testing.B) (*SQLStore, error) {
			return OpenSQLite(ctx, filepath.Join(b.TempDir(), "control.db"))
		},
		"postgres": func(b *testing.B) (*SQLStore, error) { return OpenPostgres(ctx, pgtest.DB(b)) },
	}
	for _, name := range []string{"sqlite", "postgres"} {
		b.Run(name, func(b *testing.B) {
			s, err := open[name](b)
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			start := time.Now()
			if err := s.ImportUsers(ctx, users); err != nil {
				b.Fatal(err)
			}
			if _, err := s.db.ExecContext(ctx, `ANALYZE`); err != nil { // as autovacuum soon would
				b.Fatal(err)
			}
			b.Logf("imported %d users in %v", benchUsers, time.Since(start).Round(time.Millisecond))
			for _, c := range []struct {
				name  string
				q     access.UserQuery
				total int
			}{
				{"FirstPage", access.UserQuery{}, benchUsers},
				{"Active", access.UserQuery{Filter: access.FilterActive}, 85000},
				{"Expiring", access.UserQuery{Filter: access.FilterExpiring}, 12143},
				{"OverQuota", access.UserQuery{Filter: access.FilterOverQuota}, 10000},
				{"Revoked", access.UserQuery{Filter: access.FilterRevoked}, 5000},
				{"Online1000", access.UserQuery{Filter: access.FilterOnline, Online: online}, 1000},
				{"Search10pct", access.UserQuery{Search: "USER09"}, 10000},
				{"SearchAll", access.UserQuery{Search: "user"}, benchUsers},
				{"SearchOne", access.UserQuery{Search: "user099999"}, 1},
				{"Page1000", access.UserQuery{Offset: 999 * 50}, benchUsers},
			} {
				b.Run(c.name, func(b *testing.B) {
					q := c.q
					q.Now, q.Limit = now, 50
					for b.Loop() {
						us, total, err := s.QueryUsers(ctx, q)
						if err != nil || len(us) != min(50, c.total) || total != c.total {
							b.Fatalf("QueryUsers(%+v) = %d users, total %d, %v; want %d of %d", c.q, len(us), total, err, min(50, c.total), c.total)
						}
					}
				})
			}
		})
	}
}
