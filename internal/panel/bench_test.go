package panel

import (
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"testing"
	"time"

	"github.com/burrow-vpn/burrow/internal/access"
)

// BenchmarkUsersPage renders the users page with 100,000 users on the
// server side (the time a browser waits for the HTML): the first page, a
// search, a filter, and a deep page.
func BenchmarkUsersPage(b *testing.B) {
	e := newEnv(b, false)
	bulkUsers(b, filepath.Join(e.dir, "burrow.db"), 100_000)
	e.addAdmin(b, "root", access.RoleOwner, false)
	tok, _ := e.p.sessions.create("root", time.Now())
	for _, c := range []struct{ name, path string }{
		{"first", "/users"},
		{"search", "/users?q=user99999"},
		{"filter", "/users?filter=over_quota"},
		{"active", "/users?filter=active"},
		{"page1000", "/users?page=1000"},
	} {
		b.Run(c.name, func(b *testing.B) {
			for b.Loop() {
				req := httptest.NewRequest("GET", c.path, nil)
				req.Host = "127.0.0.1"
				req.AddCookie(&http.Cookie{Name: sessionCookie, Value: tok})
				rec := httptest.NewRecorder()
				e.p.ServeHTTP(rec, req)
				if rec.Code != http.StatusOK {
					b.Fatalf("GET %s = %d", c.path, rec.Code)
				}
			}
		})
	}
}
