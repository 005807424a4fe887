package access

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"
)

// BenchmarkReplaceUsers100k: a node loading a snapshot of 100,000 users
// into its replica, the larger part of a new node's full sync
// (BenchmarkFullSync100k in internal/control).
func BenchmarkReplaceUsers100k(b *testing.B) {
	users := make([]*User, 100_000)
	now := time.Now().UTC().Truncate(time.Second)
	for i := range users {
		u := &User{ID: int64(i + 1), Name: fmt.Sprintf("user%d", i+1), CreatedAt: now, PeriodStart: now, Reset: ResetNever,
			Quota: int64(i%3) * 50 << 30, BytesUp: int64(i) * 1000, BytesDown: int64(i) * 30000}
		u.UUID[0], u.UUID[1], u.UUID[2], u.UUID[3] = byte(i>>24), byte(i>>16), byte(i>>8), byte(i)
		u.UUID[6], u.UUID[8] = 0x40, 0x80
		users[i] = u
	}
	for b.Loop() {
		b.StopTimer()
		st, err := OpenSQLite(filepath.Join(b.TempDir(), "users.db"))
		if err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		if err := st.ReplaceUsers(context.Background(), 1, users); err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		st.Close()
		b.StartTimer()
	}
}
