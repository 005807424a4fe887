package control

import (
	"errors"
	"fmt"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/burrow-vpn/burrow/internal/access"
)

// What the web panel needs of the store (admins.go, query.go, daily.go),
// with access.SQLiteStore's rules, on both backends.

func TestAdmins(t *testing.T) {
	forEach(t, func(t *testing.T, s *SQLStore) {
		ctx := ctxT(t)
		newClock(s)
		root, err := s.CreateAdmin(ctx, access.Admin{Name: "Root", Role: access.RoleOwner, PasswordHash: "h1"})
		if err != nil || root.ID == 0 || root.Name != "Root" || root.Role != access.RoleOwner || root.PasswordHash != "h1" ||
			!root.CreatedAt.Equal(time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)) {
			t.Fatalf("CreateAdmin(Root) = %+v, %v", root, err)
		}
		if _, err := s.CreateAdmin(ctx, access.Admin{Name: "rOOT", Role: access.RoleViewer}); !errors.Is(err, access.ErrExists) {
			t.Errorf("CreateAdmin(rOOT, Root exists) = %v, want ErrExists", err)
		}
		for _, bad := range []access.Admin{{Name: "", Role: access.RoleOwner}, {Name: "x", Role: "god"}, {Name: "a/b", Role: access.RoleOwner}} {
			if _, err := s.CreateAdmin(ctx, bad); !errors.Is(err, access.ErrInvalid) {
				t.Errorf("CreateAdmin(%q, %q) = %v, want ErrInvalid", bad.Name, bad.Role, err)
			}
		}
		exp := time.Date(2026, 12, 2, 0, 0, 0, 0, time.UTC)
		v, err := s.CreateAdmin(ctx, access.Admin{Name: "vic", SetupHash: "abc", SetupExpires: exp})
		if err != nil || v.Role != access.RoleViewer || !v.SetupExpires.Equal(exp) {
			t.Fatalf("CreateAdmin(vic) = %+v, %v, want a viewer with the setup expiry", v, err)
		}
		if a, err := s.AdminBySetupHash(ctx, "abc"); err != nil || a.Name != "vic" {
			t.Errorf("AdminBySetupHash(abc) = %+v, %v, want vic", a, err)
		}
		for _, h := range []string{"", "abd"} {
			if _, err := s.AdminBySetupHash(ctx, h); !errors.Is(err, access.ErrNotFound) {
				t.Errorf("AdminBySetupHash(%q) = %v, want ErrNotFound", h, err)
			}
		}
		for _, name := range []string{"nobody", "a\x00b", "\xff"} {
			if _, err := s.AdminByName(ctx, name); !errors.Is(err, access.ErrNotFound) {
				t.Errorf("AdminByName(%q) = %v, want ErrNotFound", name, err)
			}
		}
		if err := s.SetAdminSetup(ctx, "VIC", "def", exp.Add(time.Hour)); err != nil {
			t.Fatal(err)
		}
		if a, err := s.AdminBySetupHash(ctx, "def"); err != nil || !a.SetupExpires.Equal(exp.Add(time.Hour)) {
			t.Errorf("AdminBySetupHash(def) after SetAdminSetup = %+v, %v", a, err)
		}
		if _, err := s.AdminBySetupHash(ctx, "abc"); !errors.Is(err, access.ErrNotFound) {
			t.Errorf("the replaced setup token still finds vic: %v", err)
		}
		if err := s.SetAdminPassword(ctx, "vic", ""); !errors.Is(err, access.ErrInvalid) {
			t.Errorf("SetAdminPassword(empty) = %v, want ErrInvalid", err)
		}
		if err := s.SetAdminPassword(ctx, "Vic", "h2"); err != nil {
			t.Fatal(err)
		}
		if a, _ := s.AdminByName(ctx, "VIC"); a.PasswordHash != "h2" || a.SetupHash != "" || !a.SetupExpires.IsZero() {
			t.Errorf("after SetAdminPassword: %+v, want the hash and no setup token", a)
		}
		if err := s.SetAdminTOTP(ctx, "vic", "JBSWY3DPEHPK3PXP"); err != nil {
			t.Fatal(err)
		}
		// The last owner can be neither removed nor demoted.
		if err := s.RemoveAdmin(ctx, "root"); !errors.Is(err, access.ErrInvalid) {
			t.Errorf("RemoveAdmin(last owner) = %v, want ErrInvalid", err)
		}
		if err := s.SetAdminRole(ctx, "root", access.RoleOperator); !errors.Is(err, access.ErrInvalid) {
			t.Errorf("SetAdminRole(last owner, operator) = %v, want ErrInvalid", err)
		}
		if err := s.SetAdminRole(ctx, "root", "god"); !errors.Is(err, access.ErrInvalid) {
			t.Errorf("SetAdminRole(god) = %v, want ErrInvalid", err)
		}
		if err := s.SetAdminRole(ctx, "root", access.RoleOwner); err != nil {
			t.Errorf("SetAdminRole(last owner, owner) = %v, want nil", err)
		}
		if err := s.SetAdminRole(ctx, "vic", access.RoleOwner); err != nil {
			t.Fatal(err)
		}
		if err := s.RemoveAdmin(ctx, "ROOT"); err != nil {
			t.Errorf("RemoveAdmin(root, another owner exists) = %v", err)
		}
		for name, err := range map[string]error{
			"remove":   s.RemoveAdmin(ctx, "nobody"),
			"role":     s.SetAdminRole(ctx, "root", access.RoleViewer),
			"password": s.SetAdminPassword(ctx, "root", "h"),
			"totp":     s.SetAdminTOTP(ctx, "a\x00", ""),
		} {
			if !errors.Is(err, access.ErrNotFound) {
				t.Errorf("%s of a missing admin = %v, want ErrNotFound", name, err)
			}
		}
		if _, err := s.CreateAdmin(ctx, access.Admin{Name: "amy", Role: access.RoleOperator}); err != nil {
			t.Fatal(err)
		}
		list, err := s.ListAdmins(ctx)
		if err != nil || len(list) != 2 || list[0].Name != "amy" || list[1].Name != "vic" ||
			list[1].Role != access.RoleOwner || list[1].TOTPSecret != "JBSWY3DPEHPK3PXP" {
			t.Errorf("ListAdmins = %+v, %v, want amy, then vic (owner, with TOTP)", list, err)
		}
		// Administrators are the control plane's own: nothing for nodes.
		if v, err := s.Version(ctx); err != nil || v != 0 {
			t.Errorf("Version() after administrator changes = %d, %v, want 0 (nothing logged)", v, err)
		}
	})
}

// TestAdminsLastOwnerConcurrent: two owners demoting each other at once
// never leave the panel without an owner.
func TestAdminsLastOwnerConcurrent(t *testing.T) {
	forEach(t, func(t *testing.T, s *SQLStore) {
		ctx := ctxT(t)
		prev := ""
		for round := range 20 {
			a, b := fmt.Sprintf("a%d", round), fmt.Sprintf("b%d", round)
			for _, n := range []string{a, b} {
				if _, err := s.CreateAdmin(ctx, access.Admin{Name: n, Role: access.RoleOwner}); err != nil {
					t.Fatal(err)
				}
			}
			if prev != "" { // the survivor of the last round steps down
				if err := s.SetAdminRole(ctx, prev, access.RoleViewer); err != nil {
					t.Fatal(err)
				}
			}
			errs := make(chan error, 2)
			go func() { errs <- s.SetAdminRole(ctx, a, access.RoleViewer) }()
			go func() { errs <- s.RemoveAdmin(ctx, b) }()
			failed := 0
			for range 2 {
				if err := <-errs; errors.Is(err, access.ErrInvalid) {
					failed++
				} else if err != nil {
					t.Fatal(err)
				}
			}
			if failed != 1 {
				t.Fatalf("round %d: %d of the two demotions refused, want exactly 1", round, failed)
			}
			list, err := s.ListAdmins(ctx)
			if err != nil {
				t.Fatal(err)
			}
			var owners []string
			for _, x := range list {
				if x.Role == access.RoleOwner {
					owners = append(owners, x.Name)
				}
			}
			if len(owners) != 1 {
				t.Fatalf("round %d: owners left %v, want 1", round, owners)
			}
			prev = owners[0]
		}
	})
}

func TestAudit(t *testing.T) {
	forEach(t, func(t *testing.T, s *SQLStore) {
		ctx := ctxT(t)
		clk := newClock(s)
		for i := range 5 {
			if err := s.AddAudit(ctx, access.AuditEntry{Admin: "root", Action: "user.add", Target: fmt.Sprintf("u%d", i)}); err != nil {
				t.Fatal(err)
			}
		}
		if err := s.AddAudit(ctx, access.AuditEntry{Admin: "root", Action: "note", Detail: strings.Repeat("я", access.MaxAuditDetail)}); err != nil {
			t.Fatal(err)
		}
		for _, bad := range []access.AuditEntry{{Action: "x"}, {Admin: "root"}} {
			if err := s.AddAudit(ctx, bad); !errors.Is(err, access.ErrInvalid) {
				t.Errorf("AddAudit(%+v) = %v, want ErrInvalid", bad, err)
			}
		}
		page, err := s.Audit(ctx, 0, 3)
		if err != nil || len(page) != 3 || page[0].Action != "note" || page[1].Target != "u4" || page[2].Target != "u3" {
			t.Fatalf("Audit(0, 3) = %+v, %v, want the newest three", page, err)
		}
		if !page[1].At.Equal(clk.now()) || page[1].Admin != "root" {
			t.Errorf("entry = %+v, want by root at the store's clock %v", page[1], clk.now())
		}
		if d := page[0].Detail; len(d) > access.MaxAuditDetail || len(d) < access.MaxAuditDetail-1 ||
			!strings.HasPrefix(d, "яя") || !utf8Whole(d) {
			t.Errorf("long detail stored as %d bytes, want at most %d of whole characters", len(d), access.MaxAuditDetail)
		}
		older, err := s.Audit(ctx, page[2].ID, 10)
		if err != nil || len(older) != 3 || older[0].Target != "u2" || older[2].Target != "u0" {
			t.Errorf("Audit(before %d) = %+v, %v, want u2..u0", page[2].ID, older, err)
		}
		if none, err := s.Audit(ctx, older[2].ID, 10); err != nil || len(none) != 0 {
			t.Errorf("Audit(before the oldest) = %+v, %v, want none", none, err)
		}
		if _, err := s.Audit(ctx, 0, 0); !errors.Is(err, access.ErrInvalid) {
			t.Errorf("Audit(limit 0) = %v, want ErrInvalid", err)
		}
		// Bytes PostgreSQL text cannot hold are kept as SQLite would show
		// them, never lost with the entry.
		at := time.Date(2026, 11, 30, 8, 0, 0, 0, time.UTC)
		if err := s.AddAudit(ctx, access.AuditEntry{At: at, Admin: "root", Action: "login", Target: "a\x00b", Detail: "\xffok"}); err != nil {
			t.Fatalf("AddAudit(NUL and invalid UTF-8) = %v", err)
		}
		last, err := s.Audit(ctx, 0, 1)
		if err != nil || len(last) != 1 || last[0].Target != "a\uFFFDb" || last[0].Detail != "\uFFFDok" || !last[0].At.Equal(at) {
			t.Errorf("odd entry read back as %+v, %v", last, err)
		}
	})
}

func utf8Whole(s string) bool {
	return !strings.ContainsRune(s, '\uFFFD') && strings.ToValidUTF8(s, "?") == s
}

func TestQueryUsers(t *testing.T) {
	forEach(t, func(t *testing.T, s *SQLStore) {
		ctx := ctxT(t)
		clk := newClock(s)
		now := clk.now()
		mk := func(name string, nu access.NewUser) *access.User {
			nu.Name = name
			u, err := s.CreateUser(ctx, nu)
			if err != nil {
				t.Fatal(err)
			}
			return u
		}
		active := mk("alice", access.NewUser{})
		soon := mk("bob_soon", access.NewUser{ExpiresAt: now.Add(48 * time.Hour)})
		mk("carol_later", access.NewUser{ExpiresAt: now.Add(30 * 24 * time.Hour)})
		full := mk("dave", access.NewUser{Quota: 100})
		gone := mk("ALIce2", access.NewUser{})
		expired := mk("Ёлка", access.NewUser{ExpiresAt: now.Add(time.Hour)})
		if err := s.AddTraffic(ctx, map[int64]access.Traffic{full.ID: {Up: 60, Down: 40}, active.ID: {Up: 1, Down: 1}}, "2026-12-01"); err != nil {
			t.Fatal(err)
		}
		if err := s.RevokeUser(ctx, gone.ID); err != nil {
			t.Fatal(err)
		}
		later := now.Add(2 * time.Hour) // Ёлка has expired

		names := func(q access.UserQuery) string {
			t.Helper()
			if q.Now.IsZero() {
				q.Now = later
			}
			if q.Limit == 0 {
				q.Limit = 10
			}
			us, total, err := s.QueryUsers(ctx, q)
			if err != nil {
				t.Fatalf("QueryUsers(%+v) = %v", q, err)
			}
			var n []string
			for _, u := range us {
				n = append(n, u.Name)
			}
			return fmt.Sprintf("%d:%s", total, strings.Join(n, ","))
		}
		many := make([]int64, 5000) // thousands online: one argument all the same
		for i := range many {
			many[i] = int64(100000 + i)
		}
		many[2500], many[4999] = active.ID, expired.ID
		for _, c := range []struct {
			q    access.UserQuery
			want string
		}{
			{access.UserQuery{}, "6:Ёлка,ALIce2,dave,carol_later,bob_soon,alice"},
			{access.UserQuery{Limit: 2, Offset: 1}, "6:ALIce2,dave"},
			{access.UserQuery{Limit: 2, Offset: 5}, "6:alice"},
			{access.UserQuery{Offset: 9}, "6:"},
			{access.UserQuery{Search: "ALI"}, "2:ALIce2,alice"},
			{access.UserQuery{Search: "lIc"}, "2:ALIce2,alice"},
			{access.UserQuery{Search: "ALI", Limit: 1}, "2:ALIce2"},
			{access.UserQuery{Search: "ALI", Limit: 1, Offset: 1}, "2:alice"},
			{access.UserQuery{Search: "ALI", Offset: 5}, "2:"},
			{access.UserQuery{Search: "ёЛ"}, "1:Ёлка"},
			{access.UserQuery{Search: "i%"}, "0:"},
			{access.UserQuery{Search: "_"}, "2:carol_later,bob_soon"},
			{access.UserQuery{Search: "a\x00"}, "0:"},
			{access.UserQuery{Search: "\xff"}, "0:"},
			{access.UserQuery{Filter: access.FilterActive}, "3:carol_later,bob_soon,alice"},
			{access.UserQuery{Filter: access.FilterActive, Now: now}, "4:Ёлка,carol_later,bob_soon,alice"},
			{access.UserQuery{Filter: access.FilterExpiring}, "1:bob_soon"},
			{access.UserQuery{Filter: access.FilterExpiring, Now: now}, "2:Ёлка,bob_soon"},
			{access.UserQuery{Filter: access.FilterOverQuota}, "1:dave"},
			{access.UserQuery{Filter: access.FilterRevoked}, "1:ALIce2"},
			{access.UserQuery{Filter: access.FilterOnline, Online: []int64{active.ID, soon.ID}}, "2:bob_soon,alice"},
			{access.UserQuery{Filter: access.FilterOnline, Online: many}, "2:Ёлка,alice"},
			{access.UserQuery{Filter: access.FilterOnline}, "0:"},
			{access.UserQuery{Filter: access.FilterActive, Search: "o"}, "2:carol_later,bob_soon"},
			{access.UserQuery{Filter: access.FilterRevoked, Search: "bob"}, "0:"},
		} {
			if got := names(c.q); got != c.want {
				t.Errorf("QueryUsers(search %q, filter %q, offset %d, limit %d) = %s, want %s",
					c.q.Search, c.q.Filter, c.q.Offset, c.q.Limit, got, c.want)
			}
		}
		us, _, err := s.QueryUsers(ctx, access.UserQuery{Filter: access.FilterOverQuota, Limit: 1, Now: later})
		if err != nil || len(us) != 1 || *us[0] != *mustByName(t, s, "dave") {
			t.Errorf("QueryUsers row = %+v, %v, want dave's whole row as UserByName reads it", us, err)
		}
		for _, bad := range []access.UserQuery{{Limit: 0}, {Limit: access.MaxPage + 1}, {Limit: 5, Offset: -1}, {Limit: 5, Filter: "nope"}} {
			if _, _, err := s.QueryUsers(ctx, bad); !errors.Is(err, access.ErrInvalid) {
				t.Errorf("QueryUsers(%+v) = %v, want ErrInvalid", bad, err)
			}
		}
	})
}

func mustByName(t *testing.T, s *SQLStore, name string) *access.User {
	t.Helper()
	u, err := s.UserByName(ctxT(t), name)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

// TestOverQuotaSaturated: over_quota follows the counters across the quota,
// and counters saturated at 2^63-1 still take writes on both backends (a
// computed bytes_up + bytes_down would overflow PostgreSQL's bigint and
// fail every write of the user, and each push of a node carrying them).
func TestOverQuotaSaturated(t *testing.T) {
	forEach(t, func(t *testing.T, s *SQLStore) {
		ctx := ctxT(t)
		clk := newClock(s)
		n := mustNode(t, s, "exit1", RoleExit)
		capped := mustUser(t, s, "capped", 1000)
		unlimited := mustUser(t, s, "unlimited", 0)
		huge := mustUser(t, s, "huge", math.MaxInt64)
		over := func() string {
			t.Helper()
			us, total, err := s.QueryUsers(ctx, access.UserQuery{Filter: access.FilterOverQuota, Limit: 10, Now: time.Now()})
			if err != nil {
				t.Fatal(err)
			}
			var names []string
			for _, u := range us {
				names = append(names, u.Name)
			}
			return fmt.Sprintf("%d:%s", total, strings.Join(names, ","))
		}
		day := "2026-12-01"
		seq := uint64(0)
		add := func(d map[int64]access.Traffic) error { return s.AddTraffic(ctx, d, day) }
		push := func(d map[int64]access.Traffic) error {
			seq++
			ok, err := s.PushTraffic(ctx, n.ID, seq, d, day)
			if err == nil && !ok {
				err = errors.New("not applied")
			}
			return err
		}
		maxT := access.Traffic{Up: math.MaxInt64, Down: math.MaxInt64}
		steps := []struct {
			name   string
			write  func(map[int64]access.Traffic) error
			deltas map[int64]access.Traffic
			want   string
		}{
			{"under", add, map[int64]access.Traffic{capped.ID: {Up: 500, Down: 499}}, "0:"},
			{"at the quota", push, map[int64]access.Traffic{capped.ID: {Down: 1}}, "1:capped"},
			{"saturate", add, map[int64]access.Traffic{capped.ID: maxT, unlimited.ID: maxT, huge.ID: {Up: math.MaxInt64 - 1}}, "1:capped"},
			{"saturated again", push, map[int64]access.Traffic{capped.ID: {Up: 1, Down: math.MaxInt64}, unlimited.ID: maxT, huge.ID: {Down: 1}}, "2:huge,capped"},
			{"all saturated", add, map[int64]access.Traffic{capped.ID: maxT, unlimited.ID: maxT, huge.ID: maxT}, "2:huge,capped"},
			{"and pushed", push, map[int64]access.Traffic{capped.ID: maxT, unlimited.ID: {Up: 1}, huge.ID: {Down: 1}}, "2:huge,capped"},
		}
		for _, st := range steps {
			if err := st.write(st.deltas); err != nil {
				t.Fatalf("%s: traffic write = %v", st.name, err)
			}
			if got := over(); got != st.want {
				t.Errorf("after %s: over quota = %s, want %s", st.name, got, st.want)
			}
		}
		for _, u := range []*access.User{capped, unlimited} {
			got := mustByName(t, s, u.Name)
			if got.BytesUp != math.MaxInt64 || got.BytesDown != math.MaxInt64 {
				t.Errorf("%s counters = %d/%d, want both saturated", u.Name, got.BytesUp, got.BytesDown)
			}
			days, err := s.DailyTraffic(ctx, u.ID, day)
			if err != nil || len(days) != 1 || days[0].Up != math.MaxInt64 || days[0].Down != math.MaxInt64 {
				t.Errorf("%s daily = %+v, %v, want one saturated day", u.Name, days, err)
			}
		}
		// The rest of the user's writes still work.
		q := int64(math.MaxInt64)
		if _, err := s.UpdateUser(ctx, unlimited.ID, access.UserUpdate{Quota: &q}); err != nil {
			t.Fatalf("UpdateUser of a saturated user = %v", err)
		}
		if got := over(); got != "3:huge,unlimited,capped" {
			t.Errorf("after a quota of 2^63-1 on saturated counters: over quota = %s, want all three", got)
		}
		if err := s.ResetTraffic(ctx, capped.ID, clk.now().Add(time.Hour)); err != nil {
			t.Fatal(err)
		}
		if got := over(); got != "2:huge,unlimited" {
			t.Errorf("after resetting capped: over quota = %s, want huge,unlimited", got)
		}
	})
}

// TestDailyTraffic: both writes that count traffic count it per day too,
// a replayed push adds nothing to either, unknown users and zero deltas
// leave no row, and rows older than access.DailyKeep days go.
func TestDailyTraffic(t *testing.T) {
	forEach(t, func(t *testing.T, s *SQLStore) {
		ctx := ctxT(t)
		newClock(s)
		a := mustUser(t, s, "a", 0)
		b := mustUser(t, s, "b", 0)
		n := mustNode(t, s, "exit1", RoleExit)
		if err := s.AddTraffic(ctx, map[int64]access.Traffic{a.ID: {Up: 1, Down: 2}}, "2026-11-01"); err != nil {
			t.Fatal(err)
		}
		pushes := []struct {
			seq    uint64
			day    string
			deltas map[int64]access.Traffic
			want   bool
		}{
			{1, "2026-12-01", map[int64]access.Traffic{a.ID: {Up: 10, Down: 20}, b.ID: {Up: 5, Down: 5}, 9999: {Up: 7, Down: 7}}, true},
			{1, "2026-12-01", map[int64]access.Traffic{a.ID: {Up: 10, Down: 20}, b.ID: {Up: 5, Down: 5}}, false}, // a retry
			{2, "2026-12-01", map[int64]access.Traffic{a.ID: {Up: 1, Down: 1}, b.ID: {}}, true},
			{1, "2026-12-03", map[int64]access.Traffic{a.ID: {Up: 1000}}, false}, // an old batch, another day
		}
		for _, p := range pushes {
			ok, err := s.PushTraffic(ctx, n.ID, p.seq, p.deltas, p.day)
			if err != nil || ok != p.want {
				t.Fatalf("PushTraffic(seq %d) = %v, %v, want %v", p.seq, ok, err, p.want)
			}
		}
		if err := s.AddTraffic(ctx, map[int64]access.Traffic{a.ID: {Up: 100}}, "2026-12-03"); err != nil {
			t.Fatal(err)
		}
		daily := func(id int64, since string) string {
			t.Helper()
			got, err := s.DailyTraffic(ctx, id, since)
			if err != nil {
				t.Fatalf("DailyTraffic(%d, %s) = %v", id, since, err)
			}
			return fmt.Sprint(got)
		}
		for _, c := range []struct {
			id          int64
			since, want string
		}{
			{a.ID, "2026-11-15", "[{2026-12-01 {11 21}} {2026-12-03 {100 0}}]"},
			{a.ID, "2026-11-01", "[{2026-11-01 {1 2}} {2026-12-01 {11 21}} {2026-12-03 {100 0}}]"},
			{a.ID, "2026-12-02", "[{2026-12-03 {100 0}}]"},
			{a.ID, "2026-12-04", "[]"},
			{b.ID, "2000-01-01", "[{2026-12-01 {5 5}}]"},
			{9999, "2000-01-01", "[]"},
		} {
			if got := daily(c.id, c.since); got != c.want {
				t.Errorf("DailyTraffic(%d, %s) = %s, want %s", c.id, c.since, got, c.want)
			}
		}
		// The days add up to the counters (the 2026-11-01 day included).
		if u := mustByName(t, s, "a"); u.BytesUp != 112 || u.BytesDown != 23 {
			t.Errorf("a's counters = %d/%d, want 112/23", u.BytesUp, u.BytesDown)
		}
		// A node whose clock runs far ahead prunes nothing: its bytes go
		// under the control plane's today (2026-12-01 by the test clock).
		if ok, err := s.PushTraffic(ctx, n.ID, 3, map[int64]access.Traffic{a.ID: {Up: 1}}, "9999-12-31"); !ok || err != nil {
			t.Fatalf("PushTraffic(9999-12-31) = %v, %v", ok, err)
		}
		if got, want := daily(a.ID, "2000-01-01"), "[{2026-11-01 {1 2}} {2026-12-01 {12 21}} {2026-12-03 {100 0}}]"; got != want {
			t.Errorf("after a push dated 9999-12-31: %s, want %s", got, want)
		}
		// On 2027-02-15 (by the store's clock, whatever the writer's day),
		// 2026-11-01 is more than DailyKeep days old: pruned, by this
		// process or by another one on the same database.
		other := s
		for _, be := range backends {
			if be.name == s.Backend() {
				other = be.reopen(t, s)
			}
		}
		newClock(other).add(76 * 24 * time.Hour)
		if err := other.AddTraffic(ctx, map[int64]access.Traffic{b.ID: {Up: 1, Down: 1}}, "2026-12-01"); err != nil {
			t.Fatal(err)
		}
		if got := daily(a.ID, "2000-01-01"); got != "[{2026-12-01 {12 21}} {2026-12-03 {100 0}}]" {
			t.Errorf("after pruning: %s, want 2026-11-01 gone and December kept", got)
		}
		for _, bad := range []string{"12/01", "", "2026-13-01", "2026-12-1"} {
			if _, err := s.DailyTraffic(ctx, a.ID, bad); !errors.Is(err, access.ErrInvalid) {
				t.Errorf("DailyTraffic(since %q) = %v, want ErrInvalid", bad, err)
			}
		}
	})
}

// TestMigrateToPanelSchema: a database of schema 2 with users in it, some
// over their quota and some with saturated counters, takes migration 3
// (PostgreSQL computes the stored over_quota of every row then) and pages
// them at once.
func TestMigrateToPanelSchema(t *testing.T) {
	for _, be := range backends {
		t.Run(be.name, func(t *testing.T) {
			ctx := ctxT(t)
			saved := map[string][]migration{"sqlite": sqliteMigrations, "postgres": postgresMigrations}
			sqliteMigrations, postgresMigrations = saved["sqlite"][:2], saved["postgres"][:2]
			old := be.open(t)
			sqliteMigrations, postgresMigrations = saved["sqlite"], saved["postgres"]
			if v, err := old.SchemaVersion(ctx); err != nil || v != 2 {
				t.Fatalf("SchemaVersion() = %d, %v, want 2", v, err)
			}
			users := benchUserList(4)
			users[1].BytesUp, users[1].BytesDown = math.MaxInt64, math.MaxInt64
			users[2].BytesDown = users[2].Quota
			users[3].Quota, users[3].BytesUp, users[3].BytesDown = 0, math.MaxInt64, math.MaxInt64
			if err := old.ImportUsers(ctx, users); err != nil {
				t.Fatal(err)
			}
			s := be.reopen(t, old)
			if v, err := s.SchemaVersion(ctx); err != nil || v != 3 {
				t.Fatalf("SchemaVersion() after reopening = %d, %v, want 3", v, err)
			}
			us, total, err := s.QueryUsers(ctx, access.UserQuery{Filter: access.FilterOverQuota, Limit: 10, Now: time.Now()})
			if err != nil || total != 2 || len(us) != 2 || us[0].Name != users[2].Name || us[1].Name != users[1].Name {
				t.Fatalf("over quota after migrating = %d %v, %v; want %s and %s", total, us, err, users[2].Name, users[1].Name)
			}
			if err := s.AddTraffic(ctx, map[int64]access.Traffic{1: {Up: 1}, 2: {Up: 1}}, "2026-12-01"); err != nil {
				t.Fatal(err)
			}
			if days, err := s.DailyTraffic(ctx, 2, "2026-12-01"); err != nil || len(days) != 1 || days[0].Up != 1 {
				t.Errorf("DailyTraffic after migrating = %v, %v, want 1 byte up", days, err)
			}
		})
	}
}
