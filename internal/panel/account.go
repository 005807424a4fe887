package panel

import (
	"net/http"
	"strings"
)

type accountData struct {
	TOTP      bool   // the admin has TOTP on
	NewSecret string // a secret being set up, shown with its QR code
	QR        any
}

// accountPage shows the logged-in admin's own settings: password and TOTP.
func (p *Panel) accountPage(w http.ResponseWriter, r *http.Request, me *who) {
	p.showAccount(w, r, me, http.StatusOK, "", "")
}

func (p *Panel) showAccount(w http.ResponseWriter, r *http.Request, me *who, code int, errKey, newSecret string) {
	lang := pickLang(r)
	a, err := p.cfg.Admins.AdminByName(r.Context(), me.name)
	if err != nil {
		msg, code := errText(lang, err)
		p.render(w, r, code, "error", &view{Me: me, Title: "err.title", Err: msg})
		return
	}
	d := accountData{TOTP: a.TOTPSecret != "", NewSecret: newSecret}
	if newSecret != "" {
		d.QR = qrSVG(TOTPURI("Burrow", a.Name, newSecret), tr(lang, "account.totpqr"))
	}
	v := &view{Lang: lang, Me: me, Page: "account", Title: "account.title", Data: d}
	if errKey != "" {
		v.Err = tr(lang, errKey)
	}
	p.render(w, r, code, "account", v)
}

// changePassword sets a new password after checking the current one; the
// admin's other sessions end, this one goes on.
func (p *Panel) changePassword(w http.ResponseWriter, r *http.Request, me *who) {
	a, err := p.cfg.Admins.AdminByName(r.Context(), me.name)
	if err != nil {
		p.fail(w, r, me, http.StatusInternalServerError, "err.internal")
		return
	}
	p.hashSem <- struct{}{}
	ok := CheckPassword(a.PasswordHash, r.PostFormValue("current"))
	<-p.hashSem
	pw := r.PostFormValue("password")
	switch {
	case !ok:
		p.showAccount(w, r, me, http.StatusUnauthorized, "err.current", "")
		return
	case pw != r.PostFormValue("password2"):
		p.showAccount(w, r, me, http.StatusBadRequest, "err.mismatch", "")
		return
	case ValidatePassword(pw) != nil:
		p.showAccount(w, r, me, http.StatusBadRequest, "err.password", "")
		return
	}
	hash, err := HashPassword(pw)
	if err == nil {
		err = p.cfg.Admins.SetAdminPassword(r.Context(), a.Name, hash)
	}
	if err != nil {
		p.fail(w, r, me, http.StatusInternalServerError, "err.internal")
		return
	}
	p.sessions.endAdminExcept(a.Name, me.token)
	p.audit(r.Context(), me, "admin.password", a.Name, "")
	http.Redirect(w, r, "/account?done=password", http.StatusSeeOther)
}

// totp turns the admin's TOTP on (start: show a new secret; confirm: store
// it once a code from it checks) or off (with a current code).
func (p *Panel) totp(w http.ResponseWriter, r *http.Request, me *who) {
	a, err := p.cfg.Admins.AdminByName(r.Context(), me.name)
	if err != nil {
		p.fail(w, r, me, http.StatusInternalServerError, "err.internal")
		return
	}
	code := strings.TrimSpace(r.PostFormValue("code"))
	now := p.cfg.Now()
	switch r.PostFormValue("step") {
	case "start":
		p.showAccount(w, r, me, http.StatusOK, "", NewTOTPSecret())
		return
	case "confirm":
		secret := r.PostFormValue("secret")
		if _, ok := checkTOTP(secret, code, now); !ok || len(secret) != 32 {
			p.showAccount(w, r, me, http.StatusBadRequest, "err.code", secret)
			return
		}
		err = p.cfg.Admins.SetAdminTOTP(r.Context(), a.Name, secret)
		p.audit(r.Context(), me, "admin.totp-on", a.Name, "")
	case "off":
		if _, ok := checkTOTP(a.TOTPSecret, code, now); !ok {
			p.showAccount(w, r, me, http.StatusBadRequest, "err.code", "")
			return
		}
		err = p.cfg.Admins.SetAdminTOTP(r.Context(), a.Name, "")
		p.audit(r.Context(), me, "admin.totp-off", a.Name, "")
	default:
		p.fail(w, r, me, http.StatusBadRequest, "err.notfound")
		return
	}
	if err != nil {
		p.fail(w, r, me, http.StatusInternalServerError, "err.internal")
		return
	}
	http.Redirect(w, r, "/account?done="+r.PostFormValue("step")+"-totp", http.StatusSeeOther)
}
