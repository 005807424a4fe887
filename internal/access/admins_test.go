package access

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"
)

func TestAdmins(t *testing.T) {
	ctx := context.Background()
	s, _ := openTemp(t)
	if _, err := s.CreateAdmin(ctx, Admin{Name: "Root", Role: RoleOwner, PasswordHash: "h1"}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.CreateAdmin(ctx, Admin{Name: "root", Role: RoleViewer}); !errors.Is(err, ErrExists) {
		t.Errorf("CreateAdmin(root again) = %v, want ErrExists", err)
	}
	for _, bad := range []Admin{{Name: "", Role: RoleOwner}, {Name: "x", Role: "god"}, {Name: "a/b", Role: RoleOwner}} {
		if _, err := s.CreateAdmin(ctx, bad); !errors.Is(err, ErrInvalid) {
			t.Errorf("CreateAdmin(%q, %q) = %v, want ErrInvalid", bad.Name, bad.Role, err)
		}
	}
	exp := time.Now().Add(time.Hour).UTC().Truncate(time.Second)
	v, err := s.CreateAdmin(ctx, Admin{Name: "vic", SetupHash: "abc", SetupExpires: exp})
	if err != nil || v.Role != RoleViewer || !v.SetupExpires.Equal(exp) {
		t.Fatalf("CreateAdmin(vic) = %+v, %v, want a viewer with the setup expiry", v, err)
	}
	if a, err := s.AdminBySetupHash(ctx, "abc"); err != nil || a.Name != "vic" {
		t.Errorf("AdminBySetupHash = %v, %v", a, err)
	}
	if _, err := s.AdminBySetupHash(ctx, ""); !errors.Is(err, ErrNotFound) {
		t.Errorf("AdminBySetupHash(\"\") = %v, want ErrNotFound", err)
	}
	if err := s.SetAdminPassword(ctx, "VIC", "h2"); err != nil {
		t.Fatal(err)
	}
	if a, _ := s.AdminByName(ctx, "vic"); a.PasswordHash != "h2" || a.SetupHash != "" || !a.SetupExpires.IsZero() {
		t.Errorf("after SetAdminPassword: %+v, want the hash and no setup token", a)
	}
	if _, err := s.AdminBySetupHash(ctx, "abc"); !errors.Is(err, ErrNotFound) {
		t.Errorf("setup token still valid after the password was set: %v", err)
	}
	if err := s.SetAdminTOTP(ctx, "vic", "JBSWY3DPEHPK3PXP"); err != nil {
		t.Fatal(err)
	}
	// The last owner can be neither removed nor demoted.
	if err := s.RemoveAdmin(ctx, "root"); !errors.Is(err, ErrInvalid) {
		t.Errorf("RemoveAdmin(last owner) = %v, want ErrInvalid", err)
	}
	if err := s.SetAdminRole(ctx, "root", RoleOperator); !errors.Is(err, ErrInvalid) {
		t.Errorf("SetAdminRole(last owner, operator) = %v, want ErrInvalid", err)
	}
	if err := s.SetAdminRole(ctx, "vic", RoleOwner); err != nil {
		t.Fatal(err)
	}
	if err := s.RemoveAdmin(ctx, "root"); err != nil {
		t.Errorf("RemoveAdmin(root, another owner exists) = %v", err)
	}
	if err := s.RemoveAdmin(ctx, "nobody"); !errors.Is(err, ErrNotFound) {
		t.Errorf("RemoveAdmin(nobody) = %v, want ErrNotFound", err)
	}
	list, err := s.ListAdmins(ctx)
	if err != nil || len(list) != 1 || list[0].Name != "vic" || list[0].Role != RoleOwner || list[0].TOTPSecret == "" {
		t.Errorf("ListAdmins = %+v, %v, want vic alone, owner, with TOTP", list, err)
	}
}

func TestAudit(t *testing.T) {
	ctx := context.Background()
	s, _ := openTemp(t)
	for i := range 5 {
		if err := s.AddAudit(ctx, AuditEntry{Admin: "root", Action: "user.add", Target: fmt.Sprintf("u%d", i)}); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.AddAudit(ctx, AuditEntry{Admin: "root", Action: "note", Detail: strings.Repeat("я", MaxAuditDetail)}); err != nil {
		t.Fatal(err)
	}
	if err := s.AddAudit(ctx, AuditEntry{Action: "x"}); !errors.Is(err, ErrInvalid) {
		t.Errorf("AddAudit(no admin) = %v, want ErrInvalid", err)
	}
	page, err := s.Audit(ctx, 0, 3)
	if err != nil || len(page) != 3 || page[0].Action != "note" || page[1].Target != "u4" {
		t.Fatalf("Audit(0, 3) = %+v, %v, want the newest three", page, err)
	}
	if d := page[0].Detail; len(d) > MaxAuditDetail || !strings.HasPrefix(d, "яя") || strings.ContainsRune(d, '\uFFFD') {
		t.Errorf("long detail stored as %d bytes, want at most %d of whole characters", len(d), MaxAuditDetail)
	}
	older, err := s.Audit(ctx, page[2].ID, 10)
	if err != nil || len(older) != 3 || older[2].Target != "u0" {
		t.Errorf("Audit(before %d) = %+v, %v, want u2..u0", page[2].ID, older, err)
	}
}

func TestDailyTraffic(t *testing.T) {
	ctx := context.Background()
	s, _ := openTemp(t)
	a, _ := s.CreateUser(ctx, NewUser{Name: "a"})
	b, _ := s.CreateUser(ctx, NewUser{Name: "b"})
	steps := []struct {
		day    string
		deltas map[int64]Traffic
	}{
		{"2026-11-01", map[int64]Traffic{a.ID: {1, 2}}},
		{"2026-12-01", map[int64]Traffic{a.ID: {10, 20}, b.ID: {5, 5}, 9999: {7, 7}}},
		{"2026-12-01", map[int64]Traffic{a.ID: {1, 1}, b.ID: {0, 0}}},
		{"2026-12-03", map[int64]Traffic{a.ID: {100, 0}}},
	}
	for _, st := range steps {
		if err := s.AddTraffic(ctx, st.deltas, st.day); err != nil {
			t.Fatal(err)
		}
	}
	got, err := s.DailyTraffic(ctx, a.ID, "2026-11-15")
	want := []DayTraffic{{"2026-12-01", Traffic{11, 21}}, {"2026-12-03", Traffic{100, 0}}}
	if err != nil || fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("DailyTraffic(a) = %v, %v, want %v", got, err, want)
	}
	if got, _ := s.DailyTraffic(ctx, 9999, "2000-01-01"); len(got) != 0 {
		t.Errorf("DailyTraffic(unknown user) = %v, want none", got)
	}
	// 2026-11-01 is older than DailyKeep days before 2027-02-15: pruned.
	if err := s.AddTraffic(ctx, map[int64]Traffic{b.ID: {1, 1}}, "2027-02-15"); err != nil {
		t.Fatal(err)
	}
	if got, _ := s.DailyTraffic(ctx, a.ID, "2000-01-01"); len(got) != 2 || got[0].Day != "2026-12-01" {
		t.Errorf("after pruning: %v, want 2026-11-01 gone and December kept", got)
	}
	if _, err := s.DailyTraffic(ctx, a.ID, "12/01"); !errors.Is(err, ErrInvalid) {
		t.Errorf("DailyTraffic(bad day) = %v, want ErrInvalid", err)
	}
}

func TestQueryUsers(t *testing.T) {
	ctx := context.Background()
	s, _ := openTemp(t)
	now := time.Now()
	mk := func(name string, nu NewUser) *User {
		nu.Name = name
		u, err := s.CreateUser(ctx, nu)
		if err != nil {
			t.Fatal(err)
		}
		return u
	}
	active := mk("alice", NewUser{})
	soon := mk("bob_soon", NewUser{ExpiresAt: now.Add(48 * time.Hour)})
	mk("carol_later", NewUser{ExpiresAt: now.Add(30 * 24 * time.Hour)})
	full := mk("dave", NewUser{Quota: 100})
	gone := mk("ALIce2", NewUser{})
	s.AddTraffic(ctx, map[int64]Traffic{full.ID: {60, 40}, active.ID: {1, 1}}, now.UTC().Format(time.DateOnly))
	s.RevokeUser(ctx, gone.ID)

	names := func(q UserQuery) string {
		t.Helper()
		q.Now = now
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
	for _, c := range []struct {
		q    UserQuery
		want string
	}{
		{UserQuery{}, "5:ALIce2,dave,carol_later,bob_soon,alice"},
		{UserQuery{Limit: 2, Offset: 1}, "5:dave,carol_later"},
		{UserQuery{Search: "ALI"}, "2:ALIce2,alice"},
		{UserQuery{Search: "ALI", Limit: 1}, "2:ALIce2"},
		{UserQuery{Search: "ALI", Offset: 5}, "2:"},
		{UserQuery{Offset: 9}, "5:"},
		{UserQuery{Search: "i%"}, "0:"},
		{UserQuery{Search: "_"}, "2:carol_later,bob_soon"},
		{UserQuery{Filter: FilterActive}, "3:carol_later,bob_soon,alice"},
		{UserQuery{Filter: FilterExpiring}, "1:bob_soon"},
		{UserQuery{Filter: FilterOverQuota}, "1:dave"},
		{UserQuery{Filter: FilterRevoked}, "1:ALIce2"},
		{UserQuery{Filter: FilterOnline, Online: []int64{active.ID, soon.ID}}, "2:bob_soon,alice"},
		{UserQuery{Filter: FilterOnline}, "0:"},
		{UserQuery{Filter: FilterActive, Search: "o"}, "2:carol_later,bob_soon"},
	} {
		if got := names(c.q); got != c.want {
			t.Errorf("QueryUsers(search %q, filter %q, offset %d) = %s, want %s", c.q.Search, c.q.Filter, c.q.Offset, got, c.want)
		}
	}
	for _, bad := range []UserQuery{{Limit: 0}, {Limit: MaxPage + 1}, {Limit: 5, Offset: -1}, {Limit: 5, Filter: "nope"}} {
		if _, _, err := s.QueryUsers(ctx, bad); !errors.Is(err, ErrInvalid) {
			t.Errorf("QueryUsers(%+v) = %v, want ErrInvalid", bad, err)
		}
	}
}

func TestTruncateUTF8(t *testing.T) {
	for _, c := range []struct {
		in   string
		n    int
		want string
	}{
		{"", 3, ""}, {"abc", 3, "abc"}, {"abcd", 3, "abc"}, {"aя", 2, "a"}, {"aя", 3, "aя"}, {"яя", 3, "я"}, {"€", 2, ""},
	} {
		if got := TruncateUTF8(c.in, c.n); got != c.want {
			t.Errorf("TruncateUTF8(%q, %d) = %q, want %q", c.in, c.n, got, c.want)
		}
	}
}
