package panel

import (
	"context"
	"database/sql"
	"flag"
	"fmt"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/burrow-vpn/burrow/internal/access"
	"github.com/burrow-vpn/burrow/internal/admin"
	"github.com/burrow-vpn/burrow/internal/panel/browsertest"
	"github.com/burrow-vpn/burrow/internal/telemetry"
)

var screenshots = flag.String("panel-screenshots", "", "write screenshots of every page, 1280 and 390 px wide, to this directory (docs/panel)")

// bulkUsers adds n users named userN to the database at path in one
// statement (CreateUser would take one transaction each).
func bulkUsers(t testing.TB, path string, n int) {
	t.Helper()
	db, err := sql.Open("sqlite", path+"?_busy_timeout=30000")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	now := time.Now().Unix()
	_, err = db.Exec(`WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?)
		INSERT INTO users (name, name_key, uuid, sub_token, created_at, quota, bytes_up, bytes_down, last_seen_day, period_start)
		SELECT 'user' || i, 'user' || i, printf('%08x-0000-4000-8000-%012x', i, i), printf('tok%040d', i), ?,
			(i % 3) * 50000000000, i * 1000, i * 30000, '', ?
		FROM n`, n, now-86400, now-86400)
	if err != nil {
		t.Fatalf("bulk insert: %v", err)
	}
}

// fixture fills a store with what the pages show: many users, some with a
// history, one revoked, one expiring; administrators of each role.
func fixture(t *testing.T, e *env, bulk int) {
	t.Helper()
	ctx := context.Background()
	bulkUsers(t, filepath.Join(e.dir, "burrow.db"), bulk)
	alice, err := e.local.AddUser(ctx, admin.AddRequest{Name: "alice", Quota: "100GB", Reset: "monthly", Note: "family"})
	if err != nil {
		t.Fatal(err)
	}
	today := time.Now().UTC()
	for i := range 30 {
		if i%4 == 3 {
			continue
		}
		day := today.AddDate(0, 0, -i).Format(time.DateOnly)
		d := int64((i*37)%11+1) * 90_000_000
		if err := e.st.AddTraffic(ctx, map[int64]access.Traffic{alice.ID: {Up: d / 8, Down: d}}, day); err != nil {
			t.Fatal(err)
		}
	}
	e.local.AddUser(ctx, admin.AddRequest{Name: "carol", Expires: "3d"})
	e.local.AddUser(ctx, admin.AddRequest{Name: "bob"})
	e.local.Revoke(ctx, "bob")
	e.addAdmin(t, "root", access.RoleOwner, false)
	e.addAdmin(t, "otto", access.RoleOperator, true)
	e.addAdmin(t, "vera", access.RoleViewer, false)
	e.local.Counters = func() admin.Counters {
		return admin.Counters{Active: 12, Authenticated: 3456, Fallback: 78, Rejected: 2, EgressRefused: 5, BytesUp: 1_234_567_890, BytesDown: 98_765_432_100}
	}
	e.local.Telemetry = func() telemetry.Totals {
		return telemetry.Totals{Counts: []access.TelemetryCount{{Transport: "tcp", Metric: "conns_ok", Count: 812},
			{Transport: "tcp", Metric: "freeze", Bucket: 16, Count: 9}, {Transport: "xhttp", Metric: "conns_ok", Count: 230}}}
	}
}

// login fills the login form and waits for the users page.
func login(t *testing.T, ctx context.Context, base, name, pw string) {
	t.Helper()
	err := browsertest.Do(ctx,
		chromedp.Navigate(base+"/login"),
		chromedp.SendKeys(chromedp.ID("name"), name),
		chromedp.SendKeys(chromedp.ID("password"), pw),
		chromedp.Submit(chromedp.ID("password")),
		chromedp.WaitVisible(chromedp.CSS("table.users")),
	)
	if err != nil {
		t.Fatalf("log in as %s: %v", name, err)
	}
}

// post sends a form POST from the page with fetch and returns the status.
func post(t *testing.T, ctx context.Context, path string, withToken bool) int {
	t.Helper()
	js := fmt.Sprintf(`(async () => {
		const body = new URLSearchParams();
		const tok = document.querySelector('input[name=csrf]');
		if (%v && tok) body.set('csrf', tok.value);
		const r = await fetch(%q, {method: 'POST', body, redirect: 'manual'});
		return r.status;
	})()`, withToken, path)
	st, err := browsertest.Run(ctx, chromedp.Evaluate[int](js, chromedp.EvalAwaitPromise))
	if err != nil {
		t.Fatalf("POST %s from the page: %v", path, err)
	}
	return st
}

// firstPaint loads path and returns the browser's first contentful paint
// and the time to the last byte of the response, both from the start of
// navigation.
func firstPaint(t *testing.T, ctx context.Context, url string) (fcp, response float64) {
	t.Helper()
	if err := browsertest.Do(ctx, chromedp.Navigate(url), chromedp.WaitVisible(chromedp.CSS("table.users"))); err != nil {
		t.Fatal(err)
	}
	v, err := browsertest.Run(ctx, chromedp.Poll[[]float64](`(() => {
		const p = performance.getEntriesByName('first-contentful-paint')[0];
		const n = performance.getEntriesByType('navigation')[0];
		return p && n && n.responseEnd > 0 ? [p.startTime, n.responseEnd] : null;
	})()`))
	if err != nil {
		t.Fatalf("paint timing of %s: %v", url, err)
	}
	return v[0], v[1]
}

// TestBrowserPanel drives the panel in headless Chromium: log in, find a
// user among 100,000 (and report how fast the page paints), add a user and
// read their QR code back from a screenshot, refuse a CSRF-less POST and a
// viewer's revoke, check every page with axe-core, and log out.
func TestBrowserPanel(t *testing.T) {
	e := newEnv(t, false)
	const bulk = 100_000
	fixture(t, e, bulk)
	ctx := browsertest.New(t)
	browsertest.AcceptDialogs(ctx)
	base := e.srv.URL

	checkA11y := func(page string) {
		t.Helper()
		vs, err := browsertest.Axe(ctx)
		if err != nil {
			t.Fatalf("%s: axe-core: %v", page, err)
		}
		for _, v := range browsertest.Serious(vs) {
			t.Errorf("%s: accessibility: %s", page, v)
		}
		if len(vs) > 0 {
			t.Logf("%s: %d minor accessibility findings: %v", page, len(vs), vs)
		}
	}
	if err := browsertest.Do(ctx, chromedp.Navigate(base+"/login"), chromedp.WaitVisible(chromedp.ID("name"))); err != nil {
		t.Fatal(err)
	}
	checkA11y("login")
	login(t, ctx, base, "root", "correct horse battery")

	// The users page with 100,000 users: server-side paging, reported.
	var fcps, resps []float64
	for range 5 {
		f, r := firstPaint(t, ctx, base+"/users")
		fcps, resps = append(fcps, f), append(resps, r)
	}
	slices.Sort(fcps)
	slices.Sort(resps)
	t.Logf("users page with %d users: first contentful paint %.0f ms (median of 5; min %.0f, max %.0f), response complete %.0f ms",
		bulk+3, fcps[2], fcps[0], fcps[4], resps[2])
	text, _ := browsertest.Run(ctx, chromedp.Text(chromedp.CSS("main")))
	if !strings.Contains(text, "100,003 users") {
		t.Errorf("users page does not count 100,003 users:\n%.300s", text)
	}
	f, r := firstPaint(t, ctx, base+"/users?q=user99999&filter=active")
	t.Logf("search among %d users: first contentful paint %.0f ms, response complete %.0f ms", bulk+3, f, r)
	if rows, _ := browsertest.Run(ctx, chromedp.Evaluate[int](`document.querySelectorAll('table.users tbody tr').length`)); rows != 1 {
		t.Errorf("search user99999 shows %d rows, want 1", rows)
	}
	checkA11y("users")

	// Add a user with the form; their page shows the link and its QR code.
	err := browsertest.Do(ctx,
		chromedp.Navigate(base+"/users"),
		chromedp.SendKeys(chromedp.ID("add-name"), "dora"),
		chromedp.SendKeys(chromedp.ID("add-quota"), "20GB"),
		chromedp.Submit(chromedp.ID("add-name")),
		chromedp.WaitVisible(chromedp.CSS("svg.qr")),
	)
	if err != nil {
		t.Fatalf("add a user: %v", err)
	}
	link, err := browsertest.ReadQR(ctx, "svg.qr")
	if err != nil {
		t.Fatal(err)
	}
	dora, _ := e.local.User(context.Background(), "dora")
	if want, _ := testLinks(dora); link != want[0].URL {
		t.Errorf("QR code reads %q, want dora's link %q", link, want[0].URL)
	}
	checkA11y("user")
	// And at a phone's width, where tables become cards.
	if err := browsertest.Do(ctx, chromedp.EmulateViewport(390, 844)); err != nil {
		t.Fatal(err)
	}
	checkA11y("user at 390 px")
	if err := browsertest.Do(ctx, chromedp.Navigate(base+"/users"), chromedp.WaitVisible(chromedp.CSS("table.users"))); err != nil {
		t.Fatal(err)
	}
	checkA11y("users at 390 px")
	if err := browsertest.Do(ctx, chromedp.EmulateViewport(1280, 900), chromedp.Navigate(base+"/users/dora"), chromedp.WaitVisible(chromedp.CSS("svg.qr"))); err != nil {
		t.Fatal(err)
	}

	// A POST without the CSRF token is refused; dora keeps her access.
	if st := post(t, ctx, "/users/dora/revoke", false); st != http.StatusForbidden {
		t.Errorf("CSRF-less POST = %d, want 403", st)
	}
	if u, _ := e.local.User(context.Background(), "dora"); u.Revoked {
		t.Error("a CSRF-less POST revoked dora")
	}
	for _, page := range []string{"server", "admins", "account"} {
		if err := browsertest.Do(ctx, chromedp.Navigate(base+"/"+page), chromedp.WaitVisible(chromedp.CSS("main h2"))); err != nil {
			t.Fatal(err)
		}
		checkA11y(page)
	}
	if *screenshots != "" {
		shoot(t, ctx, base, *screenshots)
	}
	// Positive control: axe-core does find violations when there are some.
	if _, err := browsertest.Run(ctx, chromedp.Evaluate[chromedp.Void](
		`document.querySelector('main').insertAdjacentHTML('beforeend', '<img src="/static/app.css"><button></button>')`)); err != nil {
		t.Fatal(err)
	}
	if vs, err := browsertest.Axe(ctx); err != nil || len(browsertest.Serious(vs)) < 2 {
		t.Errorf("axe-core on a page with an unlabelled image and button: %v, %v; want two serious findings", vs, err)
	}

	// Log out, log in as a viewer: a revoke with a valid token is refused.
	if err := browsertest.Do(ctx, chromedp.Click(chromedp.CSS("form[action='/logout'] button")), chromedp.WaitVisible(chromedp.CSS("form[action='/login']"))); err != nil {
		t.Fatalf("log out: %v", err)
	}
	if st := post(t, ctx, "/users/dora/revoke", true); st != http.StatusUnauthorized {
		t.Errorf("POST after logout = %d, want 401", st)
	}
	login(t, ctx, base, "vera", "correct horse battery")
	if err := browsertest.Do(ctx, chromedp.Navigate(base+"/users/dora"), chromedp.WaitVisible(chromedp.CSS("dl.facts"))); err != nil {
		t.Fatal(err)
	}
	if n, _ := browsertest.Run(ctx, chromedp.Evaluate[int](`document.querySelectorAll('svg.qr, #revoke').length`)); n != 0 {
		t.Errorf("a viewer sees %d QR codes or revoke buttons", n)
	}
	if st := post(t, ctx, "/users/dora/revoke", true); st != http.StatusForbidden {
		t.Errorf("viewer's revoke = %d, want 403", st)
	}
	if u, _ := e.local.User(context.Background(), "dora"); u.Revoked {
		t.Error("a viewer revoked dora")
	}
	if err := browsertest.Do(ctx, chromedp.Click(chromedp.CSS("form[action='/logout'] button")), chromedp.WaitVisible(chromedp.CSS("form[action='/login']"))); err != nil {
		t.Fatalf("log out: %v", err)
	}
	if *screenshots != "" {
		for _, w := range []int64{1280, 390} {
			if err := browsertest.Screenshot(ctx, w, *screenshots, fmt.Sprintf("login-en-%d", w)); err != nil {
				t.Fatal(err)
			}
		}
	}
}

// shoot writes every page at 1280 and 390 px, in English and Russian.
func shoot(t *testing.T, ctx context.Context, base, dir string) {
	t.Helper()
	pages := []struct{ name, path string }{
		{"users", "/users"}, {"users-search", "/users?filter=expiring"}, {"user", "/users/alice"},
		{"server", "/server"}, {"admins", "/admins"}, {"account", "/account"},
	}
	for _, lang := range []string{"en", "ru"} {
		if err := browsertest.Do(ctx, chromedp.Navigate(base+"/lang/"+lang+"?back=/users"), chromedp.WaitVisible(chromedp.CSS("main"))); err != nil {
			t.Fatal(err)
		}
		for _, p := range pages {
			if err := browsertest.Do(ctx, chromedp.Navigate(base+p.path), chromedp.WaitVisible(chromedp.CSS("main"))); err != nil {
				t.Fatal(err)
			}
			for _, w := range []int64{1280, 390} {
				if err := browsertest.Screenshot(ctx, w, dir, fmt.Sprintf("%s-%s-%d", p.name, lang, w)); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
	if err := browsertest.Do(ctx, chromedp.Navigate(base+"/lang/en?back=/users"), chromedp.EmulateViewport(1280, 900)); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshots written to %s", dir)
}

// TestBrowserFleetServerPage: a fleet's server page (Config.Nodes) lists
// every node with its state, in both languages, at both widths, with no
// serious accessibility finding.
func TestBrowserFleetServerPage(t *testing.T) {
	now := time.Now()
	nodes := []Node{
		{Name: "exit-de", Role: "exit", Version: "1.4.0", LastSeen: now.Add(-4 * time.Second), Online: 37, BytesUp: 3 << 30, BytesDown: 41 << 30, Health: "ok"},
		{Name: "exit-fi", Role: "exit", Version: "1.4.0", LastSeen: now.Add(-7 * time.Second), Lag: 3, Online: 12, BytesUp: 1 << 30, BytesDown: 9 << 30, Health: "cover site unreachable"},
		{Name: "relay-msk", Role: "relay", Version: "1.3.2", LastSeen: now.Add(-10 * time.Minute), BytesUp: 5 << 30, BytesDown: 50 << 30, Health: "ok"},
		{Name: "exit-nl", Role: "exit"},
		{Name: "exit-old", Role: "exit", Revoked: true, LastSeen: now.Add(-72 * time.Hour), Health: "ok"},
	}
	e := newEnv(t, false, func(c *Config) {
		c.Nodes = func(context.Context) ([]Node, error) { return nodes, nil }
	})
	e.addAdmin(t, "root", access.RoleOwner, false)
	ctx := browsertest.New(t)
	base := e.srv.URL
	login(t, ctx, base, "root", "correct horse battery")
	for _, lang := range []string{"en", "ru"} {
		if err := browsertest.Do(ctx, chromedp.Navigate(base+"/lang/"+lang+"?back=/server"), chromedp.WaitVisible(chromedp.CSS("main"))); err != nil {
			t.Fatal(err)
		}
		text, err := browsertest.Run(ctx, chromedp.Text(chromedp.CSS("main")))
		if err != nil {
			t.Fatal(err)
		}
		want := map[string][]string{
			"en": {"exit-de", "ok", "unhealthy", "cover site unreachable", "not reporting", "never reported", "revoked"},
			"ru": {"exit-de", "работает", "неисправен", "не отвечает", "ещё не подключался", "отозван"},
		}[lang]
		for _, w := range want {
			if !strings.Contains(text, w) {
				t.Errorf("%s server page lacks %q:\n%s", lang, w, text)
			}
		}
		// A single server's counters and telemetry are the exits' own.
		if strings.Contains(text, tr(lang, "server.auth")) || strings.Contains(text, tr(lang, "server.telemetry")) {
			t.Errorf("%s fleet server page shows a single server's counters:\n%s", lang, text)
		}
		vs, err := browsertest.Axe(ctx)
		if err != nil {
			t.Fatalf("axe-core: %v", err)
		}
		for _, v := range browsertest.Serious(vs) {
			t.Errorf("%s fleet server page: accessibility: %s", lang, v)
		}
		if *screenshots != "" {
			for _, w := range []int64{1280, 390} {
				if err := browsertest.Screenshot(ctx, w, *screenshots, fmt.Sprintf("server-fleet-%s-%d", lang, w)); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
}
