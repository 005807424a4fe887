package panel

import (
	"context"
	"fmt"
	"html/template"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/burrow-vpn/burrow/internal/access"
	"github.com/burrow-vpn/burrow/internal/admin"
)

// TestLoginRateLimit: failures are limited per account whatever the source,
// and per source whatever the account; the right password does not get
// through a closed limit.
func TestLoginRateLimit(t *testing.T) {
	e := newEnv(t, false)
	e.addAdmin(t, "root", access.RoleOwner, false)
	b := e.browser(t)
	for i := range nameBurst {
		if st := b.login("root", fmt.Sprintf("wrong password %d", i), ""); st != http.StatusUnauthorized {
			t.Fatalf("attempt %d = %d, want 401", i, st)
		}
	}
	if st := b.login("root", "correct horse battery", ""); st != http.StatusTooManyRequests {
		t.Errorf("right password after %d failures = %d, want 429", nameBurst, st)
	}
	// Per account: another browser (same source here) is refused too; per
	// source: other account names from this source run out after sourceBurst.
	other := e.browser(t)
	if st := other.login("root", "correct horse battery", ""); st != http.StatusTooManyRequests {
		t.Errorf("account limit from another browser = %d, want 429", st)
	}
	refused := 0
	for i := range sourceBurst {
		if other.login(fmt.Sprintf("nobody%d", i), "x", "") == http.StatusTooManyRequests {
			refused++
		}
	}
	if refused == 0 {
		t.Errorf("%d more attempts from one source were never refused", sourceBurst)
	}

	// The limiter itself: per key, refilling with time.
	l := newLimiter(2, time.Minute, 2)
	t0 := time.Now()
	got := []bool{l.allow("a", t0), l.allow("a", t0), l.allow("a", t0)}
	if !got[0] || !got[1] || got[2] {
		t.Errorf("three attempts at once with a burst of 2: %v, want true true false", got)
	}
	if !l.allow("a", t0.Add(time.Minute)) {
		t.Error("no token after one interval")
	}
	if !l.allow("b", t0) || l.allow("c", t0) {
		t.Error("a full table (2 keys, none refilled) must refuse new keys")
	}
	if !l.allow("c", t0.Add(3*time.Minute)) {
		t.Error("refilled buckets were not swept for a new key")
	}
}

// TestCSRF: every state change without the session's token is refused and
// changes nothing.
func TestCSRF(t *testing.T) {
	e := newEnv(t, false)
	e.addAdmin(t, "root", access.RoleOwner, false)
	ctx := context.Background()
	e.local.AddUser(ctx, admin.AddRequest{Name: "alice"})
	b := e.browser(t)
	b.login("root", "correct horse battery", "")
	for _, path := range []string{"/users/alice/revoke", "/users/alice/rotate", "/users/alice/reset-traffic", "/users/alice/edit",
		"/users", "/admins", "/admins/root/remove", "/logout"} {
		for _, tok := range []string{"", "wrong"} {
			form := url.Values{"csrf": {tok}, "name": {"mallory"}, "quota": {"1MB"}, "role": {"owner"}}
			if st, _ := b.post(path, form); st != http.StatusForbidden {
				t.Errorf("POST %s with csrf %q = %d, want 403", path, tok, st)
			}
		}
	}
	u, _ := e.local.User(ctx, "alice")
	if u.Revoked || u.Quota != 0 {
		t.Errorf("alice changed by CSRF-less posts: %+v", u)
	}
	if _, err := e.local.User(ctx, "mallory"); err == nil {
		t.Error("a CSRF-less POST /users added a user")
	}
	if st, _ := b.get("/users"); st != http.StatusOK {
		t.Errorf("logged out by a CSRF-less POST /logout: %d", st)
	}
	// The login form carries its own token (double-submit cookie).
	o := e.browser(t)
	o.get("/login")
	if st, _ := o.post("/login", url.Values{"name": {"root"}, "password": {"correct horse battery"}, "csrf": {"forged"}}); st != http.StatusForbidden {
		t.Errorf("login with a forged token = %d, want 403", st)
	}
}

// TestViewerChangesNothing calls every state-changing endpoint directly,
// with a valid session and CSRF token, as a viewer (and admin endpoints as
// an operator): all refused, nothing changed.
func TestViewerChangesNothing(t *testing.T) {
	e := newEnv(t, false)
	e.addAdmin(t, "root", access.RoleOwner, false)
	e.addAdmin(t, "vera", access.RoleViewer, false)
	e.addAdmin(t, "otto", access.RoleOperator, false)
	ctx := context.Background()
	before, _ := e.local.AddUser(ctx, admin.AddRequest{Name: "alice"})
	e.changed.Store(0)
	v := e.browser(t)
	if st := v.login("vera", "correct horse battery", ""); st != http.StatusSeeOther {
		t.Fatalf("viewer login = %d", st)
	}
	userPosts := []string{"/users/alice/revoke", "/users/alice/enable", "/users/alice/rotate", "/users/alice/reset-traffic", "/users/alice/edit", "/users"}
	adminPosts := []string{"/admins", "/admins/root/remove", "/admins/vera/role", "/admins/root/setup"}
	for _, path := range append(userPosts, adminPosts...) {
		if st, _ := v.post(path, url.Values{"name": {"mallory"}, "quota": {"1MB"}, "role": {"owner"}}); st != http.StatusForbidden {
			t.Errorf("viewer POST %s = %d, want 403", path, st)
		}
	}
	o := e.browser(t)
	o.login("otto", "correct horse battery", "")
	for _, path := range adminPosts {
		if st, _ := o.post(path, url.Values{"name": {"mallory"}, "role": {"owner"}}); st != http.StatusForbidden {
			t.Errorf("operator POST %s = %d, want 403", path, st)
		}
	}
	after, _ := e.local.User(ctx, "alice")
	if after.Revoked || after.UUID != before.UUID || after.Quota != 0 {
		t.Errorf("alice changed by a viewer: %+v", after)
	}
	if a, _ := e.st.AdminByName(ctx, "vera"); a.Role != access.RoleViewer {
		t.Errorf("vera's role = %s after her own POST, want viewer", a.Role)
	}
	if _, err := e.st.AdminByName(ctx, "mallory"); err == nil {
		t.Error("a viewer or operator added an admin")
	}
	if e.changed.Load() != 0 {
		t.Errorf("the server was told of %d changes", e.changed.Load())
	}
	// A viewer sees the user but not their keys.
	_, page := v.get("/users/alice")
	if strings.Contains(page, after.UUID) || strings.Contains(page, after.SubToken) || strings.Contains(page, "vless://") {
		t.Error("a viewer's page shows the user's link or subscription token")
	}
}

// TestOperatorRevokes: an operator's revoke goes through the admin API
// (which tells the running server at once) and lands in the audit log.
func TestOperatorRevokes(t *testing.T) {
	e := newEnv(t, false)
	e.addAdmin(t, "otto", access.RoleOperator, false)
	ctx := context.Background()
	e.local.AddUser(ctx, admin.AddRequest{Name: "alice"})
	b := e.browser(t)
	b.login("otto", "correct horse battery", "")
	b.get("/users/alice")
	changed := e.changed.Load()
	if st, _ := b.post("/users/alice/revoke", url.Values{}); st != http.StatusSeeOther {
		t.Fatalf("revoke = %d, want a redirect", st)
	}
	if u, _ := e.local.User(ctx, "alice"); !u.Revoked {
		t.Error("alice not revoked")
	}
	if e.changed.Load() == changed {
		t.Error("the revoke did not tell the server (admin.Local.Changed not called)")
	}
	if _, body := b.get("/users/alice?done=revoke"); !strings.Contains(body, template.HTMLEscapeString(tr("en", "done.revoke"))) {
		t.Error("no confirmation shown after the revoke")
	}
	audit, _ := e.st.Audit(ctx, 0, 1)
	if len(audit) != 1 || audit[0].Admin != "otto" || audit[0].Action != "user.revoke" || audit[0].Target != "alice" {
		t.Errorf("audit = %+v, want otto revoked alice", audit)
	}
}

var (
	inlineScript = regexp.MustCompile(`(?is)<script(?:[^>]*)>\s*[^<\s]`)
	scriptNoSrc  = regexp.MustCompile(`(?i)<script(?:[^>](?:[^s]|s[^r]|sr[^c]))*>`)
	handlerAttr  = regexp.MustCompile(`(?i)\son[a-z]+\s*=`)
	styleAttr    = regexp.MustCompile(`(?i)\sstyle\s*=`)
	externalRef  = regexp.MustCompile(`(?i)(src|href)="(https?:)?//`)
)

// TestPagesHeadersAndSource: every page sends the CSP and framing headers,
// and its source has no inline script, no event-handler or style
// attributes, nothing loaded from elsewhere, and no user's key.
func TestPagesHeadersAndSource(t *testing.T) {
	e := newEnv(t, false)
	e.addAdmin(t, "root", access.RoleOwner, false)
	ctx := context.Background()
	alice, _ := e.local.AddUser(ctx, admin.AddRequest{Name: "alice"})
	bob, _ := e.local.AddUser(ctx, admin.AddRequest{Name: "bob"})
	b := e.browser(t)
	b.login("root", "correct horse battery", "")
	for _, path := range []string{"/login", "/users", "/users?filter=revoked", "/users/alice", "/server", "/admins", "/account", "/nope", "/static/app.js"} {
		req, _ := http.NewRequest("GET", e.srv.URL+path, nil)
		resp, err := b.c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		h := resp.Header
		csp := h.Get("Content-Security-Policy")
		for _, want := range []string{"default-src 'none'", "script-src 'self'", "frame-ancestors 'none'"} {
			if !strings.Contains(csp, want) {
				t.Errorf("%s: CSP %q lacks %q", path, csp, want)
			}
		}
		if strings.Contains(csp, "unsafe-inline") || strings.Contains(csp, "unsafe-eval") {
			t.Errorf("%s: CSP %q allows inline script or eval", path, csp)
		}
		if h.Get("X-Frame-Options") != "DENY" || h.Get("X-Content-Type-Options") != "nosniff" || h.Get("Cache-Control") != "no-store" {
			t.Errorf("%s: headers %v", path, h)
		}
		_, body := b.get(path)
		if path == "/static/app.js" {
			continue
		}
		for name, re := range map[string]*regexp.Regexp{"inline script": inlineScript, "script without src": scriptNoSrc,
			"event handler attribute": handlerAttr, "style attribute": styleAttr, "external reference": externalRef} {
			if m := re.FindString(body); m != "" {
				t.Errorf("%s: %s in the page: %q", path, name, m)
			}
		}
		for _, u := range []*admin.UserInfo{alice, bob} {
			shown := path == "/users/"+u.Name
			if !shown && (strings.Contains(body, u.UUID) || strings.Contains(body, u.SubToken)) {
				t.Errorf("%s shows %s's key or subscription token", path, u.Name)
			}
		}
	}
	_, body := b.get("/users/alice")
	if !strings.Contains(body, alice.UUID) || !strings.Contains(body, alice.SubToken) || !strings.Contains(body, `<svg class="qr"`) {
		t.Error("alice's own page lacks her link, subscription URL or QR code")
	}
}

// TestHostCheck: a request naming another host (a DNS-rebinding page) is refused.
func TestHostCheck(t *testing.T) {
	e := newEnv(t, false)
	b := e.browser(t)
	for host, want := range map[string]int{"evil.example": http.StatusMisdirectedRequest, "localhost:1": 200, "127.0.0.1": 200, "[::1]:80": 200} {
		req, _ := http.NewRequest("GET", e.srv.URL+"/login", nil)
		req.Host = host
		if st, _ := b.do(req); st != want {
			t.Errorf("Host %s: %d, want %d", host, st, want)
		}
	}
}

func TestTOTP(t *testing.T) {
	// RFC 6238 appendix B, SHA-1 secret "12345678901234567890": the 8-digit
	// codes' last 6 digits.
	secret := b32.EncodeToString([]byte("12345678901234567890"))
	for _, c := range []struct {
		at   int64
		want string
	}{{59, "287082"}, {1111111109, "081804"}, {1234567890, "005924"}, {2000000000, "279037"}} {
		if got, err := TOTPCode(secret, time.Unix(c.at, 0)); err != nil || got != c.want {
			t.Errorf("TOTPCode(T=%d) = %s, %v, want %s", c.at, got, err, c.want)
		}
	}
	e := newEnv(t, false)
	a := e.addAdmin(t, "root", access.RoleOwner, true)
	b := e.browser(t)
	if st := b.login("root", "correct horse battery", ""); st != http.StatusUnauthorized {
		t.Errorf("login without the code = %d, want 401", st)
	}
	code, _ := TOTPCode(a.TOTPSecret, time.Now().Add(-time.Hour))
	if st := b.login("root", "correct horse battery", code); st != http.StatusUnauthorized {
		t.Errorf("login with an hour-old code = %d, want 401", st)
	}
	code, _ = TOTPCode(a.TOTPSecret, time.Now())
	if st := b.login("root", "correct horse battery", code); st != http.StatusSeeOther {
		t.Fatalf("login with the code = %d, want a redirect", st)
	}
	if st := e.browser(t).login("root", "correct horse battery", code); st != http.StatusUnauthorized {
		t.Errorf("second login with the same code = %d, want 401 (a code works once)", st)
	}
}

func TestPasswordHash(t *testing.T) {
	h, err := HashPassword("correct horse battery")
	if err != nil || !strings.HasPrefix(h, "$argon2id$v=19$m=19456,t=2,p=1$") {
		t.Fatalf("HashPassword = %q, %v", h, err)
	}
	if !CheckPassword(h, "correct horse battery") || CheckPassword(h, "correct horse batterY") {
		t.Error("CheckPassword does not tell the right password from a wrong one")
	}
	if h2, _ := HashPassword("correct horse battery"); h2 == h {
		t.Error("two hashes of one password are equal: no salt")
	}
	for _, bad := range []string{"", "$argon2i$v=19$m=1,t=1,p=1$AA$AA", dummyHash, "$argon2id$v=19$m=99999999,t=1,p=1$AA$AA"} {
		if CheckPassword(bad, "correct horse battery") {
			t.Errorf("CheckPassword(%q) matched", bad)
		}
	}
	if _, err := HashPassword("short"); err == nil {
		t.Error("HashPassword(short) = nil error")
	}
}

// TestLanguage: Accept-Language picks Russian, the switch overrides it, and
// sizes and dates follow.
func TestLanguage(t *testing.T) {
	e := newEnv(t, false)
	e.addAdmin(t, "root", access.RoleOwner, false)
	e.local.AddUser(context.Background(), admin.AddRequest{Name: "alice", Quota: "1500MB"})
	b := e.browser(t)
	b.login("root", "correct horse battery", "")
	_, body := b.get("/users", "Accept-Language", "ru-RU,ru;q=0.9,en;q=0.5")
	if !strings.Contains(body, `lang="ru"`) || !strings.Contains(body, "Пользователи") || !strings.Contains(body, "1,5\u00a0ГБ") {
		t.Error("Accept-Language ru: page not in Russian or size not localised")
	}
	_, body = b.get("/users", "Accept-Language", "de, en;q=0.5")
	if !strings.Contains(body, `lang="en"`) || !strings.Contains(body, "1.5\u00a0GB") {
		t.Error("Accept-Language de,en: page not in English")
	}
	if st, _ := b.get("/lang/ru?back=//evil.example/"); st != http.StatusSeeOther {
		t.Fatalf("language switch = %d", st)
	}
	_, body = b.get("/users", "Accept-Language", "en")
	if !strings.Contains(body, `lang="ru"`) {
		t.Error("the language switch did not override Accept-Language")
	}
	if got := formatDate("ru", time.Date(2026, 12, 7, 0, 0, 0, 0, time.UTC)); got != "7 дек. 2026" {
		t.Errorf("formatDate(ru) = %q", got)
	}
	if got := plural("ru", 22, "users.count"); got != "22 пользователя" {
		t.Errorf("plural(ru, 22) = %q", got)
	}
	if got := formatNum("ru", 100000); got != "100\u00a0000" {
		t.Errorf("formatNum(ru, 100000) = %q", got)
	}
}

// TestFormErrorsTranslated: a refused field is named in the page's language,
// and nothing is changed.
func TestFormErrorsTranslated(t *testing.T) {
	e := newEnv(t, false)
	e.addAdmin(t, "root", access.RoleOwner, false)
	e.local.AddUser(context.Background(), admin.AddRequest{Name: "alice"})
	b := e.browser(t)
	b.login("root", "correct horse battery", "")
	for _, lang := range []string{"en", "ru"} {
		b.get("/lang/" + lang)
		b.get("/users")
		for _, c := range []struct {
			path string
			form url.Values
			key  string
		}{
			{"/users", url.Values{"name": {"bad/name"}}, "field.name"},
			{"/users", url.Values{"name": {"zed"}, "quota": {"lots"}}, "field.quota"},
			{"/users", url.Values{"name": {"zed"}, "expires": {"2001-01-01"}}, "field.expires"},
			{"/users/alice/edit", url.Values{"quota": {"0"}, "expires": {"soon"}, "reset": {"never"}}, "field.expires"},
			{"/users/alice/edit", url.Values{"quota": {"-5GB"}, "expires": {"never"}, "reset": {"never"}}, "field.quota"},
			{"/users/alice/edit", url.Values{"quota": {"0"}, "expires": {"never"}, "reset": {"daily"}}, "field.reset"},
			{"/admins", url.Values{"name": {""}, "role": {"viewer"}}, "field.name"},
		} {
			st, body := b.post(c.path, c.form)
			if want := template.HTMLEscapeString(tr(lang, c.key)); st != http.StatusBadRequest || !strings.Contains(body, want) {
				t.Errorf("%s: POST %s %v = %d, want 400 saying %q", lang, c.path, c.form, st, tr(lang, c.key))
			}
		}
	}
	if _, err := e.local.User(context.Background(), "zed"); err == nil {
		t.Error("a refused form added a user")
	}
	if u, _ := e.local.User(context.Background(), "alice"); u.Quota != 0 || !u.ExpiresAt.IsZero() || u.Reset != "never" {
		t.Errorf("alice changed by refused forms: %+v", u)
	}
}
