package main

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/burrow-vpn/burrow/internal/access"
	"github.com/burrow-vpn/burrow/internal/panel"
	"github.com/burrow-vpn/burrow/internal/server"
)

// initData makes a server data dir (server init) without running it.
func initData(t *testing.T) string {
	t.Helper()
	data := filepath.Join(t.TempDir(), "srv")
	var errOut bytes.Buffer
	err := run(context.Background(), []string{"server", "init", "--data", data, "--listen", "127.0.0.1:1", "--cover", "127.0.0.1:2",
		"--sni", "cover.test", "--public-addr", "127.0.0.1", "--skip-cover-check"}, io.Discard, &errOut)
	if err != nil {
		t.Fatalf("server init: %v\n%s", err, errOut.String())
	}
	return data
}

func adminCmd(data, stdin string, args ...string) (string, string, error) {
	var out, errOut bytes.Buffer
	err := runAdmin(append(args, "--data", data), strings.NewReader(stdin), &out, &errOut)
	return out.String(), errOut.String(), err
}

func TestAdminCommands(t *testing.T) {
	data := initData(t)
	out, _, err := adminCmd(data, "", "add", "root", "--role", "owner")
	if err != nil || !regexp.MustCompile(`^/setup/[A-Za-z0-9_-]{43}\n$`).MatchString(out) {
		t.Fatalf("admin add root = %q, %v; want a setup path", out, err)
	}
	// With the panel's address noted by the server, a whole link.
	os.WriteFile(filepath.Join(data, PanelURLFile), []byte("http://127.0.0.1:8089\n"), 0o600)
	out, _, err = adminCmd(data, "", "add", "vera")
	if err != nil || !strings.HasPrefix(out, "http://127.0.0.1:8089/setup/") {
		t.Errorf("admin add vera = %q, %v; want a setup link on the panel", out, err)
	}
	if _, _, err := adminCmd(data, "short\n", "add", "otto", "--password-stdin", "--role", "operator"); err == nil || !strings.Contains(err.Error(), "shorter") {
		t.Errorf("admin add with a short password = %v, want refused", err)
	}
	out, _, err = adminCmd(data, "correct horse battery\n", "add", "otto", "--password-stdin", "--role", "operator", "--totp")
	if err != nil || !strings.HasPrefix(out, "otpauth://totp/Burrow:otto?") {
		t.Errorf("admin add otto --totp = %q, %v; want the otpauth URI", out, err)
	}
	for _, bad := range [][]string{{"add", "root"}, {"add", "x", "--role", "god"}, {"add"}, {"remove", "nobody"}, {"remove", "root"}} {
		if _, _, err := adminCmd(data, "", bad...); err == nil {
			t.Errorf("admin %v = nil error", bad)
		}
	}
	out, _, err = adminCmd(data, "", "list")
	want := regexp.MustCompile(`(?s)NAME +ROLE +PASSWORD +TOTP.*otto +operator +set +on.*root +owner +pending setup +off.*vera +viewer +pending setup +off`)
	if err != nil || !want.MatchString(out) {
		t.Errorf("admin list =\n%s%v", out, err)
	}
	out, _, err = adminCmd(data, "", "totp", "vera")
	if err != nil || !strings.HasPrefix(out, "otpauth://totp/Burrow:vera?") {
		t.Errorf("admin totp vera = %q, %v", out, err)
	}
	if _, _, err := adminCmd(data, "", "totp", "otto", "--off"); err != nil {
		t.Errorf("admin totp otto --off = %v", err)
	}
	if _, _, err := adminCmd(data, "", "totp", "nobody"); err == nil {
		t.Error("admin totp nobody = nil error")
	}
	if _, _, err := adminCmd(data, "", "remove", "vera"); err != nil {
		t.Errorf("admin remove vera = %v", err)
	}
	st, err := access.OpenSQLite(filepath.Join(data, server.StoreFile))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	a, err := st.AdminByName(context.Background(), "otto")
	if err != nil || !panel.CheckPassword(a.PasswordHash, "correct horse battery") || a.TOTPSecret != "" {
		t.Errorf("otto: stored hash does not check, or TOTP still on: %v", err)
	}
	audit, _ := st.Audit(context.Background(), 0, 10)
	if len(audit) != 6 || audit[0].Action != "admin.cli-remove" || audit[0].Target != "vera" || audit[1].Action != "admin.cli-totp-off" {
		t.Errorf("audit = %+v, want three adds, two TOTP changes and a remove", audit)
	}
	if _, _, err := adminCmd(filepath.Join(t.TempDir(), "none"), "", "list"); err == nil || !strings.Contains(err.Error(), "server init") {
		t.Errorf("admin list on no server = %v, want a hint to run server init", err)
	}
}

// TestPanelBindsLoopbackOnly: --panel refuses a public address unless
// --panel-public says so.
func TestPanelBindsLoopbackOnly(t *testing.T) {
	for _, c := range []struct {
		f  sideFlags
		ok bool
	}{
		{sideFlags{panelFlags: panelFlags{panel: "127.0.0.1:8089"}}, true},
		{sideFlags{panelFlags: panelFlags{panel: "[::1]:8089"}}, true},
		{sideFlags{panelFlags: panelFlags{panel: "localhost:8089"}}, true},
		{sideFlags{panelFlags: panelFlags{panel: "0.0.0.0:8089"}}, false},
		{sideFlags{panelFlags: panelFlags{panel: ":8089"}}, false},
		{sideFlags{panelFlags: panelFlags{panel: "203.0.113.5:8089"}}, false},
		{sideFlags{panelFlags: panelFlags{panel: "0.0.0.0:8089", panelPublic: true}}, true},
		{sideFlags{panelFlags: panelFlags{panelPublic: true}}, false},
		{sideFlags{panelFlags: panelFlags{panelHosts: "panel.example.com"}}, false},
		{sideFlags{panelFlags: panelFlags{panel: "127.0.0.1:8089", panelHosts: "panel.example.com"}}, true},
	} {
		c.f.subTitle = "Burrow"
		if err := c.f.validate(); (err == nil) != c.ok {
			t.Errorf("--panel %q --panel-public=%v: validate = %v, want ok %v", c.f.panel, c.f.panelPublic, err, c.ok)
		}
	}
}

// TestPanelServed: `server run --panel` serves the panel beside the proxy,
// notes its URL for `admin add`, and an admin made on the command line logs in.
func TestPanelServed(t *testing.T) {
	port, _ := freePort()
	e := deployServer(t, false, "--panel", "127.0.0.1:"+port, "--panel-host", "panel.example.com")
	base := "http://127.0.0.1:" + port
	// The server logs "web panel served" once the panel's listener is up
	// and its address noted (the proxy's port and the admin socket, which
	// deployServer waits for, may come first).
	for deadline := time.Now().Add(30 * time.Second); !strings.Contains(e.srv.stderr.String(), "web panel served"); {
		if time.Now().After(deadline) {
			t.Fatalf("the panel did not start within 30 s:\n%s", e.srv.stderr)
		}
		time.Sleep(20 * time.Millisecond) // the log is the only event there is
	}
	if b, err := os.ReadFile(filepath.Join(e.data, PanelURLFile)); err != nil || strings.TrimSpace(string(b)) != base {
		t.Fatalf("%s = %q, %v; want %s", PanelURLFile, b, err, base)
	}
	out, _, err := adminCmd(e.data, "", "add", "root", "--role", "owner")
	if err != nil || !strings.HasPrefix(out, base+"/setup/") {
		t.Fatalf("admin add = %q, %v", out, err)
	}
	// Host names: IP addresses, localhost and --panel-host; others refused.
	for host, want := range map[string]int{"panel.example.com": 200, "localhost": 200, "evil.example": http.StatusMisdirectedRequest} {
		req, _ := http.NewRequest("GET", base+"/login", nil)
		req.Host = host
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Errorf("Host %s: %d, want %d", host, resp.StatusCode, want)
		}
	}
	jar, _ := cookiejar.New(nil)
	c := &http.Client{Jar: jar}
	csrf := func(resp *http.Response, err error) string {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		m := regexp.MustCompile(`name="csrf" value="([^"]+)"`).FindSubmatch(b)
		if m == nil {
			t.Fatalf("%s: %d, no form token in\n%s", resp.Request.URL, resp.StatusCode, b)
		}
		return string(m[1])
	}
	link := strings.TrimSpace(out)
	tok := csrf(c.Get(link))
	resp, err := c.PostForm(link, url.Values{"csrf": {tok}, "password": {"correct horse battery"}, "password2": {"correct horse battery"}})
	if err != nil || resp.StatusCode != 200 || resp.Request.URL.Path != "/login" {
		t.Fatalf("setup: %v, %v", resp, err)
	}
	tok = csrf(resp, nil)
	resp, err = c.PostForm(base+"/login", url.Values{"csrf": {tok}, "name": {"root"}, "password": {"correct horse battery"}})
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.Request.URL.Path != "/users" || !strings.Contains(string(body), "owner") {
		t.Errorf("after login: %s, want the users page listing owner", resp.Request.URL)
	}
}
