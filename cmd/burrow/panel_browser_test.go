package main

import (
	"context"
	"fmt"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/burrow-vpn/burrow/internal/access"
	"github.com/burrow-vpn/burrow/internal/panel/browsertest"
	"github.com/burrow-vpn/burrow/internal/server"
)

// browserLogin fills the panel's login form and waits for the users page.
func browserLogin(t *testing.T, ctx context.Context, base, name, pw string) {
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

// browserPost POSTs to path from the page with fetch, with the page's CSRF
// token or without, and returns the status.
func browserPost(t *testing.T, ctx context.Context, path string, withToken bool) int {
	t.Helper()
	js := fmt.Sprintf(`(async () => {
		const body = new URLSearchParams();
		const tok = document.querySelector('input[name=csrf]');
		if (%v && tok) body.set('csrf', tok.value);
		return (await fetch(%q, {method: 'POST', body, redirect: 'manual'})).status;
	})()`, withToken, path)
	st, err := browsertest.Run(ctx, chromedp.Evaluate[int](js, chromedp.EvalAwaitPromise))
	if err != nil {
		t.Fatalf("POST %s from the page: %v", path, err)
	}
	return st
}

// TestPanelBrowserEndToEnd runs a real server with --panel and drives the
// panel in headless Chromium: log in, add a user, read the user's QR code
// from a screenshot and connect a burrow client with the link it holds,
// fetch through it, refuse a CSRF-less POST, revoke the user with the
// panel's button and see the client's live download cut, refuse a viewer's
// revoke, log out.
func TestPanelBrowserEndToEnd(t *testing.T) {
	site, slow := testSite(t), slowSite(t)
	port, _ := freePort()
	e := deployServer(t, true, "--panel", "127.0.0.1:"+port)
	base := "http://127.0.0.1:" + port
	if err := waitListening(context.Background(), "127.0.0.1:"+port); err != nil {
		t.Fatal(err)
	}
	for _, a := range [][2]string{{"root", "owner"}, {"vera", "viewer"}} {
		if _, _, err := adminCmd(e.data, "correct horse battery\n", "add", a[0], "--role", a[1], "--password-stdin"); err != nil {
			t.Fatalf("admin add %s: %v", a[0], err)
		}
	}
	e.addUser(t, "bob")
	ctx := browsertest.New(t)
	browsertest.AcceptDialogs(ctx)
	browserLogin(t, ctx, base, "root", "correct horse battery")

	err := browsertest.Do(ctx,
		chromedp.SendKeys(chromedp.ID("add-name"), "alice"),
		chromedp.Submit(chromedp.ID("add-name")),
		chromedp.WaitVisible(chromedp.CSS("svg.qr")),
	)
	if err != nil {
		t.Fatalf("add alice in the panel: %v", err)
	}
	link, err := browsertest.ReadQR(ctx, "svg.qr")
	if err != nil {
		t.Fatal(err)
	}
	if shown, _ := browsertest.Run(ctx, chromedp.Value(chromedp.ID("link-0"))); link != shown || !strings.HasPrefix(link, "vless://") {
		t.Fatalf("QR code reads %q, the page shows %q", link, shown)
	}
	proxy := connect(t, link)
	const size = 1 << 20
	sum, n, err := get(proxy, fmt.Sprintf("http://%s/data?n=%d", site, size))
	if err != nil || n != size || sum != streamSum(size) {
		t.Fatalf("fetch through the QR code's link: %d bytes, %v", n, err)
	}
	alice := openStreamOnceKnown(t, proxy, "http://"+slow+"/slow")
	alice.flowing(t, "alice", 256<<10)

	if st := browserPost(t, ctx, "/users/alice/revoke", false); st != http.StatusForbidden {
		t.Errorf("CSRF-less revoke = %d, want 403", st)
	}
	alice.flowing(t, "alice after a CSRF-less revoke", alice.n.Load()+256<<10)

	t0 := time.Now()
	// Done once the page holds what only a revoked user's has: the page
	// before it showed a flash too (alice added), which a loaded run took
	// for the revoke's, then clicked into the page being replaced.
	if err := browsertest.Do(ctx, chromedp.Click(chromedp.ID("revoke")), chromedp.WaitVisible(chromedp.CSS("form[action='/users/alice/enable']"))); err != nil {
		t.Fatalf("revoke in the panel: %v", err)
	}
	if !alice.endedWithin(cutBudget) {
		t.Fatalf("alice's download still running %v after the panel's revoke (%d bytes)", cutBudget, alice.n.Load())
	}
	t.Logf("alice's download cut %v after the revoke button was clicked", alice.ended.Sub(t0).Round(time.Millisecond))

	// A viewer's revoke, with a valid session and token, is refused.
	if err := browsertest.Do(ctx, chromedp.Click(chromedp.CSS("form[action='/logout'] button")), chromedp.WaitVisible(chromedp.CSS("form[action='/login']"))); err != nil {
		t.Fatalf("log out: %v", err)
	}
	browserLogin(t, ctx, base, "vera", "correct horse battery")
	if st := browserPost(t, ctx, "/users/bob/revoke", true); st != http.StatusForbidden {
		t.Errorf("viewer's revoke = %d, want 403", st)
	}
	st, err := access.OpenSQLite(filepath.Join(e.data, server.StoreFile))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if u, err := st.UserByName(context.Background(), "bob"); err != nil || u.Revoked {
		t.Errorf("bob after a viewer's revoke: %+v, %v; want not revoked", u, err)
	}
	if err := browsertest.Do(ctx, chromedp.Click(chromedp.CSS("form[action='/logout'] button")), chromedp.WaitVisible(chromedp.CSS("form[action='/login']"))); err != nil {
		t.Fatalf("log out: %v", err)
	}
	if st := browserPost(t, ctx, "/users/bob/revoke", true); st != http.StatusUnauthorized {
		t.Errorf("POST after logout = %d, want 401", st)
	}
}
