package server

import (
	"fmt"
	"testing"

	"github.com/burrow-vpn/burrow/internal/access"
)

// BenchmarkReserve is the per-chunk cost of admitting bytes against a quota:
// parallel goroutines reserving and settling 32 KiB on the sessions of one
// user, and of 64 users.
func BenchmarkReserve(b *testing.B) {
	for _, users := range []int{1, 64} {
		b.Run(fmt.Sprintf("users=%d", users), func(b *testing.B) {
			var us []access.User
			for i := range users {
				us = append(us, access.User{Name: fmt.Sprint("u", i), Quota: 1 << 60})
			}
			r, _ := newTestRegistry(b, us...)
			var sessions []*Session
			for i := range users {
				s, err := r.Acquire([16]byte{byte(i + 1)})
				if err != nil {
					b.Fatal(err)
				}
				sessions = append(sessions, s)
			}
			next := 0
			b.RunParallel(func(pb *testing.PB) {
				r.mu.Lock()
				d := sessions[next%users].Down()
				next++
				r.mu.Unlock()
				for pb.Next() {
					g := d.Reserve(32 << 10)
					d.Settle(g, g)
				}
			})
		})
	}
}
