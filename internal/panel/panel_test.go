package panel

import (
	"context"
	"crypto/tls"
	"io"
	"log/slog"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/burrow-vpn/burrow/internal/access"
	"github.com/burrow-vpn/burrow/internal/admin"
)

// env is a panel on a real SQLite store behind a real HTTP server.
type env struct {
	dir     string
	p       *Panel
	st      *access.SQLiteStore
	local   *admin.Local
	srv     *httptest.Server
	changed atomic.Int64 // calls of Local.Changed: what makes the server apply a change at once
	ahead   atomic.Int64 // how far the panel's clock is ahead of time.Now, in ns
}

func newEnv(t testing.TB, tlsOn bool, opts ...func(*Config)) *env {
	t.Helper()
	dir := t.TempDir()
	st, err := access.OpenSQLite(filepath.Join(dir, "burrow.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	e := &env{st: st, dir: dir}
	e.local = &admin.Local{Store: st, Version: "test", Started: time.Now(), Changed: func() { e.changed.Add(1) },
		SubscriptionURL: func(tok string) string { return "http://127.0.0.1:1/s/" + tok }}
	cfg := Config{Users: e.local, Admins: st, Links: testLinks, Log: slog.New(slog.NewTextHandler(tWriter{t}, nil)),
		Now: func() time.Time { return time.Now().Add(time.Duration(e.ahead.Load())) }}
	for _, o := range opts {
		o(&cfg)
	}
	p, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	e.p = p
	if tlsOn {
		e.srv = httptest.NewTLSServer(p)
	} else {
		e.srv = httptest.NewServer(p)
	}
	t.Cleanup(e.srv.Close)
	return e
}

func testLinks(u *admin.UserInfo) ([]Link, error) {
	return []Link{{"tcp", "vless://" + u.UUID + "@127.0.0.1:443?type=tcp#" + url.PathEscape(u.Name)}}, nil
}

// addAdmin creates an admin with a password directly in the store.
func (e *env) addAdmin(t testing.TB, name, role string, totp bool) *access.Admin {
	t.Helper()
	_, a, err := AddAdmin(context.Background(), e.st, name, role, "correct horse battery", totp, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// browser is an HTTP client with a cookie jar that does not follow redirects.
type browser struct {
	t    *testing.T
	e    *env
	c    *http.Client
	csrf string
}

func (e *env) browser(t *testing.T) *browser {
	jar, _ := cookiejar.New(nil)
	c := &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	return &browser{t: t, e: e, c: c}
}

var csrfRE = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

// get fetches path and remembers the page's CSRF token.
func (b *browser) get(path string, hdr ...string) (int, string) {
	b.t.Helper()
	req, _ := http.NewRequest("GET", b.e.srv.URL+path, nil)
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	return b.do(req)
}

func (b *browser) do(req *http.Request) (int, string) {
	b.t.Helper()
	resp, err := b.c.Do(req)
	if err != nil {
		b.t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if m := csrfRE.FindSubmatch(body); m != nil {
		b.csrf = string(m[1])
	}
	return resp.StatusCode, string(body)
}

// post submits form to path, with the remembered CSRF token unless the
// form says otherwise.
func (b *browser) post(path string, form url.Values) (int, string) {
	b.t.Helper()
	if _, ok := form["csrf"]; !ok {
		form.Set("csrf", b.csrf)
	}
	req, _ := http.NewRequest("POST", b.e.srv.URL+path, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	return b.do(req)
}

func (b *browser) login(name, pw, code string) int {
	b.t.Helper()
	b.get("/login")
	st, _ := b.post("/login", url.Values{"name": {name}, "password": {pw}, "code": {code}})
	if st == http.StatusSeeOther {
		b.get("/users") // the session's CSRF token
	}
	return st
}

func TestSetupLinkAndLogin(t *testing.T) {
	e := newEnv(t, false)
	tok, _, err := AddAdmin(context.Background(), e.st, "root", access.RoleOwner, "", false, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	b := e.browser(t)
	if st, _ := b.get("/users"); st != http.StatusSeeOther {
		t.Fatalf("GET /users logged out = %d, want a redirect to the login", st)
	}
	// No default credentials: nothing logs in before setup.
	if st := b.login("root", "", ""); st != http.StatusUnauthorized {
		t.Errorf("login before setup = %d, want 401", st)
	}
	if st, _ := b.get("/setup/" + NewToken()); st != http.StatusNotFound {
		t.Errorf("GET /setup/(wrong token) = %d, want 404", st)
	}
	if st, body := b.get("/setup/" + tok); st != 200 || !strings.Contains(body, "root") {
		t.Fatalf("GET /setup/TOKEN = %d", st)
	}
	if st, _ := b.post("/setup/"+tok, url.Values{"password": {"short"}, "password2": {"short"}}); st != http.StatusBadRequest {
		t.Errorf("setup with a short password = %d, want 400", st)
	}
	if st, _ := b.post("/setup/"+tok, url.Values{"password": {"a long enough pw"}, "password2": {"a long enough pw"}, "csrf": {"x"}}); st != http.StatusForbidden {
		t.Errorf("setup without the form's CSRF token = %d, want 403", st)
	}
	if st, _ := b.post("/setup/"+tok, url.Values{"password": {"a long enough pw"}, "password2": {"a long enough pw"}}); st != http.StatusSeeOther {
		t.Fatalf("setup = %d, want a redirect", st)
	}
	if st, _ := b.get("/setup/" + tok); st != http.StatusNotFound {
		t.Errorf("setup link after use = %d, want 404: it works once", st)
	}
	if st := b.login("root", "a long enough pw!", ""); st != http.StatusUnauthorized {
		t.Errorf("login with a wrong password = %d, want 401", st)
	}
	if st := b.login("ROOT", "a long enough pw", ""); st != http.StatusSeeOther {
		t.Fatalf("login = %d, want a redirect", st)
	}
	if st, body := b.get("/users"); st != 200 || !strings.Contains(body, "root") {
		t.Fatalf("GET /users logged in = %d", st)
	}
	// Logging out ends the session on the server, not only in the browser.
	resp, _ := b.c.Get(e.srv.URL + "/users")
	cookies := b.c.Jar.Cookies(resp.Request.URL)
	resp.Body.Close()
	if st, _ := b.post("/logout", url.Values{}); st != http.StatusSeeOther {
		t.Fatalf("logout = %d", st)
	}
	stale := e.browser(t)
	stale.c.Jar.SetCookies(resp.Request.URL, cookies)
	if st, _ := stale.get("/users"); st != http.StatusSeeOther {
		t.Errorf("old session cookie after logout = %d, want a redirect to the login", st)
	}
	audit, _ := e.st.Audit(context.Background(), 0, 10)
	var actions []string
	for _, a := range audit {
		actions = append(actions, a.Action)
	}
	if got := strings.Join(actions, ","); got != "logout,login,admin.password" {
		t.Errorf("audit = %s, want logout,login,admin.password", got)
	}
}

// TestCookies: the session cookie is HttpOnly and SameSite=Strict, and
// Secure when the panel is served over TLS.
func TestCookies(t *testing.T) {
	for _, tlsOn := range []bool{false, true} {
		e := newEnv(t, tlsOn)
		e.addAdmin(t, "root", access.RoleOwner, false)
		b := e.browser(t)
		b.get("/login")
		req, _ := http.NewRequest("POST", e.srv.URL+"/login", strings.NewReader(url.Values{"name": {"root"},
			"password": {"correct horse battery"}, "csrf": {b.csrf}}.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		resp, err := b.c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		var sc *http.Cookie
		for _, c := range resp.Cookies() {
			if c.Name == sessionCookie {
				sc = c
			}
		}
		if sc == nil {
			t.Fatalf("tls %v: no session cookie set (status %d)", tlsOn, resp.StatusCode)
		}
		if !sc.HttpOnly || sc.SameSite != http.SameSiteStrictMode || sc.Secure != tlsOn || sc.MaxAge <= 0 || sc.MaxAge > int(SessionTTL/time.Second) {
			t.Errorf("tls %v: session cookie %+v, want HttpOnly, SameSite=Strict, Secure=%v, expiring", tlsOn, sc, tlsOn)
		}
	}
}

func TestSessionExpires(t *testing.T) {
	s := newSessions()
	t0 := time.Now()
	tok, _ := s.create("root", t0)
	if _, ok := s.get(tok, t0.Add(SessionIdle-time.Second)); !ok {
		t.Fatal("session ended before its idle time")
	}
	if _, ok := s.get(tok, t0.Add(2*SessionIdle-2*time.Second)); !ok {
		t.Fatal("session used within its idle time ended")
	}
	if _, ok := s.get(tok, t0.Add(3*SessionIdle)); ok {
		t.Error("session idle longer than SessionIdle still valid")
	}
	tok, _ = s.create("root", t0)
	for d := time.Duration(0); d < SessionTTL; d += SessionIdle / 2 {
		s.get(tok, t0.Add(d))
	}
	if _, ok := s.get(tok, t0.Add(SessionTTL+time.Second)); ok {
		t.Error("session older than SessionTTL still valid although kept busy")
	}
}

// tWriter sends the panel's log to the test's.
type tWriter struct{ t testing.TB }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

// TestSetupLinkExpires: a setup link stops working after SetupTTL.
func TestSetupLinkExpires(t *testing.T) {
	e := newEnv(t, false)
	tok, _, err := AddAdmin(context.Background(), e.st, "root", access.RoleOwner, "", false, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	b := e.browser(t)
	if st, _ := b.get("/setup/" + tok); st != http.StatusOK {
		t.Fatalf("fresh setup link = %d", st)
	}
	e.ahead.Store(int64(SetupTTL + time.Minute))
	if st, _ := b.get("/setup/" + tok); st != http.StatusNotFound {
		t.Errorf("setup link after %v = %d, want 404", SetupTTL, st)
	}
	if st, _ := b.post("/setup/"+tok, url.Values{"password": {"a long enough pw"}, "password2": {"a long enough pw"}}); st != http.StatusNotFound {
		t.Errorf("POST to an expired setup link = %d, want 404", st)
	}
}

// TestRemovedAdminLoggedOut: removing or demoting an admin acts on their
// open session at once.
func TestRemovedAdminLoggedOut(t *testing.T) {
	e := newEnv(t, false)
	e.addAdmin(t, "root", access.RoleOwner, false)
	e.addAdmin(t, "otto", access.RoleOperator, false)
	e.local.AddUser(context.Background(), admin.AddRequest{Name: "alice"})
	otto := e.browser(t)
	otto.login("otto", "correct horse battery", "")
	otto.get("/users/alice")
	if err := e.st.SetAdminRole(context.Background(), "otto", access.RoleViewer); err != nil {
		t.Fatal(err)
	}
	if st, _ := otto.post("/users/alice/revoke", url.Values{}); st != http.StatusForbidden {
		t.Errorf("revoke by an operator demoted to viewer = %d, want 403", st)
	}
	root := e.browser(t)
	root.login("root", "correct horse battery", "")
	if st, _ := root.post("/admins/otto/remove", url.Values{}); st != http.StatusSeeOther {
		t.Fatalf("remove otto = %d", st)
	}
	if st, _ := otto.get("/users"); st != http.StatusSeeOther {
		t.Errorf("removed admin's session: GET /users = %d, want a redirect to the login", st)
	}
}

// TestNodeState: the server page names each fleet node's state from its
// last report.
func TestNodeState(t *testing.T) {
	now := time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC)
	for _, c := range []struct {
		n    Node
		want string
	}{
		{Node{LastSeen: now.Add(-5 * time.Second), Health: "ok"}, "ok"},
		{Node{LastSeen: now.Add(-5 * time.Second), Health: "no exit reachable"}, "unhealthy"},
		{Node{LastSeen: now.Add(-NodeStale - time.Second), Health: "ok"}, "stale"},
		{Node{}, "new"},
		{Node{Revoked: true, LastSeen: now, Health: "ok"}, "revoked"},
	} {
		if got := nodeState(c.n, now); got != c.want {
			t.Errorf("nodeState(%+v) = %q, want %q", c.n, got, c.want)
		}
	}
}
