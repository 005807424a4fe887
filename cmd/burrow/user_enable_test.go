package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"path/filepath"
	"strings"
	"testing"

	"github.com/burrow-vpn/burrow/internal/coversite"
)

// checkEnableCycle runs revoke, rotate (refused), enable and enable again
// on user NAME through user (the CLI on one data dir).
func checkEnableCycle(t *testing.T, user func(...string) (string, error), name string) {
	t.Helper()
	if _, err := user("revoke", name); err != nil {
		t.Fatal(err)
	}
	out, err := user("rotate", name)
	if err == nil || !strings.Contains(err.Error(), "burrow user enable "+name) {
		t.Errorf("user rotate of a revoked user: %q, %v; want an error that says to enable first", out, err)
	}
	if out, _ := user("show", name); !strings.Contains(out, "status:     revoked") {
		t.Errorf("after a refused rotate, user show:\n%s\nwant status revoked", out)
	}
	if out, err := user("enable", name); err != nil || !strings.Contains(out, "works again") {
		t.Errorf("user enable: %q, %v; want it to say the link works again", out, err)
	}
	if out, _ := user("show", name); !strings.Contains(out, "status:     active") {
		t.Errorf("after enable, user show:\n%s\nwant status active", out)
	}
	if out, err := user("enable", name); err != nil || !strings.Contains(out, "not revoked") {
		t.Errorf("user enable of an active user: %q, %v; want \"not revoked\"", out, err)
	}
	if _, err := user("enable", "nobody"); err == nil {
		t.Error("user enable of an unknown user succeeded")
	}
}

// TestUserEnableLive: through the running server's admin API, a revoked
// user's rotate is refused, enable lifts the revocation, and their old link
// carries traffic again at once.
func TestUserEnableLive(t *testing.T) {
	site := testSite(t)
	e := deployServer(t, true)
	link := e.addUser(t, "gina")
	proxy := connect(t, link)
	checkEnableCycle(t, e.user, "gina")
	if _, n, err := get(proxy, fmt.Sprintf("http://%s/data?n=1000", site)); err != nil || n != 1000 {
		t.Errorf("download after enable: %d bytes, %v; want 1000", n, err)
	}
}

// TestUserEnableStore: the same on the store of a server that is not running.
func TestUserEnableStore(t *testing.T) {
	cover, err := coversite.Start("127.0.0.1:0", "cover.test")
	if err != nil {
		t.Fatal(err)
	}
	defer cover.Close()
	data := filepath.Join(t.TempDir(), "srv")
	err = run(context.Background(), []string{"server", "init", "--data", data, "--listen", "127.0.0.1:4433",
		"--cover", cover.Addr, "--sni", "cover.test", "--public-addr", "127.0.0.1"}, io.Discard, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	user := func(args ...string) (string, error) {
		var out bytes.Buffer
		err := run(context.Background(), append(append([]string{"user"}, args...), "--data", data), &out, io.Discard)
		return out.String(), err
	}
	if _, err := user("add", "hank"); err != nil {
		t.Fatal(err)
	}
	checkEnableCycle(t, user, "hank")
}
