package access

import (
	"context"
	"fmt"
	"testing"
)

// BenchmarkAddTraffic is one flush of the server's counters: 1,000 of
// 10,000 users moved bytes. "without-state-indexes" drops the panel's
// indexes over the byte counters, to show what they cost a flush.
func BenchmarkAddTraffic(b *testing.B) {
	for _, drop := range []bool{false, true} {
		name := "with-state-indexes"
		if drop {
			name = "without-state-indexes"
		}
		b.Run(name, func(b *testing.B) {
			s, _ := openTemp(b)
			ctx := context.Background()
			if _, err := s.db.Exec(`WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 10000)
				INSERT INTO users (name, name_key, uuid, sub_token, created_at, quota, period_start)
				SELECT 'u' || i, 'u' || i, printf('%08x-0000-4000-8000-%012x', i, i), 'tok' || i, 1, 1000000000, 1 FROM n`); err != nil {
				b.Fatal(err)
			}
			if drop {
				for _, idx := range []string{"users_state", "users_over_quota"} {
					if _, err := s.db.Exec("DROP INDEX " + idx); err != nil {
						b.Fatal(err)
					}
				}
			}
			deltas := map[int64]Traffic{}
			for i := int64(1); i <= 1000; i++ {
				deltas[i*10] = Traffic{Up: 1000, Down: 30000}
			}
			for i := 0; b.Loop(); i++ {
				if err := s.AddTraffic(ctx, deltas, fmt.Sprintf("2026-12-%02d", 1+i%28)); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
