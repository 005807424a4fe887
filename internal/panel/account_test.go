package panel

import (
	"context"
	"net/http"
	"net/url"
	"regexp"
	"testing"
	"time"

	"github.com/burrow-vpn/burrow/internal/access"
)

// TestAccountPassword: an admin changes their own password with the
// current one; their other sessions end, this one goes on.
func TestAccountPassword(t *testing.T) {
	e := newEnv(t, false)
	e.addAdmin(t, "vera", access.RoleViewer, false)
	b, other := e.browser(t), e.browser(t)
	b.login("vera", "correct horse battery", "")
	other.login("vera", "correct horse battery", "")
	b.get("/account")
	for _, c := range []struct {
		form url.Values
		want int
	}{
		{url.Values{"current": {"wrong password!"}, "password": {"a brand new password"}, "password2": {"a brand new password"}}, http.StatusUnauthorized},
		{url.Values{"current": {"correct horse battery"}, "password": {"a brand new password"}, "password2": {"a brand new passwort"}}, http.StatusBadRequest},
		{url.Values{"current": {"correct horse battery"}, "password": {"short"}, "password2": {"short"}}, http.StatusBadRequest},
	} {
		if st, _ := b.post("/account/password", c.form); st != c.want {
			t.Errorf("change password %v = %d, want %d", c.form, st, c.want)
		}
	}
	if st, _ := b.post("/account/password", url.Values{"current": {"correct horse battery"}, "password": {"a brand new password"}, "password2": {"a brand new password"}}); st != http.StatusSeeOther {
		t.Fatalf("change password = %d", st)
	}
	if st, _ := b.get("/users"); st != http.StatusOK {
		t.Errorf("the session that changed the password: %d, want it kept", st)
	}
	if st, _ := other.get("/users"); st != http.StatusSeeOther {
		t.Errorf("another session after a password change: %d, want it ended", st)
	}
	if st := e.browser(t).login("vera", "correct horse battery", ""); st != http.StatusUnauthorized {
		t.Errorf("old password after the change = %d, want 401", st)
	}
	if st := e.browser(t).login("vera", "a brand new password", ""); st != http.StatusSeeOther {
		t.Errorf("new password = %d, want a redirect", st)
	}
}

var secretRE = regexp.MustCompile(`name="secret" value="([A-Z2-7]{32})"`)

// TestAccountTOTP: an admin turns TOTP on (a code from the new secret must
// check first), logins then need a code, and a current code turns it off.
func TestAccountTOTP(t *testing.T) {
	e := newEnv(t, false)
	e.addAdmin(t, "otto", access.RoleOperator, false)
	b := e.browser(t)
	b.login("otto", "correct horse battery", "")
	b.get("/account")
	st, body := b.post("/account/totp", url.Values{"step": {"start"}})
	m := secretRE.FindStringSubmatch(body)
	if st != http.StatusOK || m == nil {
		t.Fatalf("start TOTP = %d, no secret in the page", st)
	}
	secret := m[1]
	if st, _ := b.post("/account/totp", url.Values{"step": {"confirm"}, "secret": {secret}, "code": {"000000"}}); st != http.StatusBadRequest {
		t.Errorf("confirm with a wrong code = %d, want 400", st)
	}
	if a, _ := e.st.AdminByName(context.Background(), "otto"); a.TOTPSecret != "" {
		t.Fatal("TOTP turned on by a wrong code")
	}
	code, _ := TOTPCode(secret, time.Now())
	if st, _ := b.post("/account/totp", url.Values{"step": {"confirm"}, "secret": {secret}, "code": {code}}); st != http.StatusSeeOther {
		t.Fatalf("confirm TOTP = %d", st)
	}
	if st := e.browser(t).login("otto", "correct horse battery", ""); st != http.StatusUnauthorized {
		t.Errorf("login without a code after TOTP was turned on = %d, want 401", st)
	}
	b.get("/account")
	if st, _ := b.post("/account/totp", url.Values{"step": {"off"}, "code": {"123456"}}); st != http.StatusBadRequest {
		t.Errorf("turn off with a wrong code = %d, want 400", st)
	}
	code, _ = TOTPCode(secret, time.Now())
	if st, _ := b.post("/account/totp", url.Values{"step": {"off"}, "code": {code}}); st != http.StatusSeeOther {
		t.Errorf("turn off = %d", st)
	}
	if st := e.browser(t).login("otto", "correct horse battery", ""); st != http.StatusSeeOther {
		t.Errorf("login after TOTP was turned off = %d, want a redirect", st)
	}
	audit, _ := e.st.Audit(context.Background(), 0, 20)
	var acts []string
	for _, a := range audit {
		if a.Action == "admin.totp-on" || a.Action == "admin.totp-off" {
			acts = append(acts, a.Action)
		}
	}
	if len(acts) != 2 {
		t.Errorf("audit has %v, want the TOTP turned on and off", acts)
	}
}
