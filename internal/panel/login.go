package panel

import (
	"context"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/burrow-vpn/burrow/internal/access"
)

// preToken returns the login/setup form's CSRF token, setting the
// pre-session cookie that carries it when there is none.
func preToken(w http.ResponseWriter, r *http.Request) string {
	if c, err := r.Cookie(preCookie); err == nil && len(c.Value) == 43 {
		return c.Value
	}
	tok := NewToken()
	setCookie(w, r, preCookie, tok, 3600)
	return tok
}

// preOK checks a login or setup form's CSRF token against the cookie.
func preOK(r *http.Request) bool {
	c, err := r.Cookie(preCookie)
	return err == nil && sameToken(r.PostFormValue("csrf"), c.Value)
}

type loginData struct {
	CSRF string
	Name string
}

func (p *Panel) loginPage(w http.ResponseWriter, r *http.Request) {
	if _, ok := p.current(r); ok {
		http.Redirect(w, r, "/users", http.StatusSeeOther)
		return
	}
	p.render(w, r, http.StatusOK, "login", &view{Title: "login.title", Data: loginData{CSRF: preToken(w, r)}})
}

// login checks a name, password and (when the admin has one) TOTP code.
// Every failure looks the same; attempts are limited per source address
// and per account, checked before any password is hashed.
func (p *Panel) login(w http.ResponseWriter, r *http.Request) {
	now := p.cfg.Now()
	lang := pickLang(r)
	name := strings.TrimSpace(r.PostFormValue("name"))
	again := func(code int, key string) {
		p.render(w, r, code, "login", &view{Lang: lang, Title: "login.title", Err: tr(lang, key),
			Data: loginData{CSRF: preToken(w, r), Name: name}})
	}
	if !preOK(r) {
		again(http.StatusForbidden, "err.csrf")
		return
	}
	src, _, _ := net.SplitHostPort(r.RemoteAddr)
	if !p.bySource.allow(src, now) || !p.byName.allow(access.NameKey(name), now) {
		w.Header().Set("Retry-After", "120")
		again(http.StatusTooManyRequests, "err.ratelimit")
		return
	}
	a, ok := p.checkLogin(r.Context(), name, r.PostFormValue("password"), r.PostFormValue("code"), now)
	if !ok {
		again(http.StatusUnauthorized, "err.badlogin")
		return
	}
	p.byName.reset(access.NameKey(name))
	tok, _ := p.sessions.create(a.Name, now)
	setCookie(w, r, sessionCookie, tok, int(SessionTTL/time.Second))
	setCookie(w, r, preCookie, "", -1)
	p.audit(r.Context(), &who{name: a.Name}, "login", "", "")
	http.Redirect(w, r, "/users", http.StatusSeeOther)
}

// checkLogin returns the admin if the credentials are right. An unknown
// name costs one hash like a known one.
func (p *Panel) checkLogin(ctx context.Context, name, pw, code string, now time.Time) (*access.Admin, bool) {
	a, err := p.cfg.Admins.AdminByName(ctx, name)
	hash := dummyHash
	if err == nil && a.PasswordHash != "" {
		hash = a.PasswordHash
	}
	select {
	case p.hashSem <- struct{}{}:
	case <-ctx.Done():
		return nil, false
	}
	good := CheckPassword(hash, pw)
	<-p.hashSem
	if err != nil || a.PasswordHash == "" || !good {
		return nil, false
	}
	if a.TOTPSecret == "" {
		return a, true
	}
	step, ok := checkTOTP(a.TOTPSecret, strings.TrimSpace(code), now)
	if !ok {
		return nil, false
	}
	// A code works once: a second login with it (a shoulder-surfed or
	// replayed code) is refused.
	p.mu.Lock()
	defer p.mu.Unlock()
	if step <= p.totpLast[a.Name] {
		return nil, false
	}
	p.totpLast[a.Name] = step
	return a, true
}

func (p *Panel) logout(w http.ResponseWriter, r *http.Request, me *who) {
	p.sessions.end(me.token)
	setCookie(w, r, sessionCookie, "", -1)
	p.audit(r.Context(), me, "logout", "", "")
	http.Redirect(w, r, "/login", http.StatusSeeOther)
}

// setLang sets the language cookie and goes back where the switch was
// clicked (a path on this panel only).
func (p *Panel) setLang(w http.ResponseWriter, r *http.Request) {
	lang := r.PathValue("lang")
	if !supported(lang) {
		p.fail(w, r, nil, http.StatusNotFound, "err.notfound")
		return
	}
	setCookie(w, r, langCookie, lang, 365*24*3600)
	back := r.URL.Query().Get("back")
	if u, err := url.Parse(back); err != nil || !strings.HasPrefix(back, "/") || strings.HasPrefix(back, "//") || u.Host != "" {
		back = "/users"
	}
	http.Redirect(w, r, back, http.StatusSeeOther)
}

type setupData struct {
	CSRF, Name, Token string
}

// setupAdmin returns the admin whose setup token is in the path, if it is
// still valid.
func (p *Panel) setupAdmin(r *http.Request) (*access.Admin, bool) {
	tok := r.PathValue("token")
	if len(tok) != 43 {
		return nil, false
	}
	a, err := p.cfg.Admins.AdminBySetupHash(r.Context(), TokenHash(tok))
	if err != nil || !p.cfg.Now().Before(a.SetupExpires) {
		return nil, false
	}
	return a, true
}

func (p *Panel) setupPage(w http.ResponseWriter, r *http.Request) {
	a, ok := p.setupAdmin(r)
	if !ok {
		p.fail(w, r, nil, http.StatusNotFound, "err.setup")
		return
	}
	p.render(w, r, http.StatusOK, "setup", &view{Title: "setup.title",
		Data: setupData{CSRF: preToken(w, r), Name: a.Name, Token: r.PathValue("token")}})
}

// setup sets the password of the admin the setup link was made for; the
// link then stops working.
func (p *Panel) setup(w http.ResponseWriter, r *http.Request) {
	lang := pickLang(r)
	a, ok := p.setupAdmin(r)
	if !ok {
		p.fail(w, r, nil, http.StatusNotFound, "err.setup")
		return
	}
	again := func(code int, msg string) {
		p.render(w, r, code, "setup", &view{Lang: lang, Title: "setup.title", Err: msg,
			Data: setupData{CSRF: preToken(w, r), Name: a.Name, Token: r.PathValue("token")}})
	}
	if !preOK(r) {
		again(http.StatusForbidden, tr(lang, "err.csrf"))
		return
	}
	pw := r.PostFormValue("password")
	if pw != r.PostFormValue("password2") {
		again(http.StatusBadRequest, tr(lang, "err.mismatch"))
		return
	}
	if err := ValidatePassword(pw); err != nil {
		again(http.StatusBadRequest, tr(lang, "err.password"))
		return
	}
	hash, err := HashPassword(pw)
	if err == nil {
		err = p.cfg.Admins.SetAdminPassword(r.Context(), a.Name, hash)
	}
	if err != nil {
		msg, code := errText(lang, err)
		again(code, msg)
		return
	}
	p.sessions.endAdmin(a.Name)
	p.audit(r.Context(), &who{name: a.Name}, "admin.password", a.Name, "")
	http.Redirect(w, r, "/login?done=setup", http.StatusSeeOther)
}
