package panel

import (
	"bytes"
	"errors"
	"net/http"
	"time"

	"github.com/burrow-vpn/burrow/internal/access"
)

// view is what every template gets: the language, the admin, the CSRF
// token, and the page's own data.
type view struct {
	Lang  string
	Me    *who
	Page  string // the nav entry to mark current
	Title string // message key
	Flash string // message key of a done action
	Err   string // translated error
	Data  any
}

// T translates a message key.
func (v *view) T(key string) string { return tr(v.Lang, key) }

// Size, Num, Date, DateTime format in the page's language.
func (v *view) Size(n int64) string         { return formatSize(v.Lang, n) }
func (v *view) Num(n int64) string          { return formatNum(v.Lang, n) }
func (v *view) Date(t time.Time) string     { return formatDate(v.Lang, t) }
func (v *view) DateTime(t time.Time) string { return formatDateTime(v.Lang, t) }
func (v *view) Uptime(sec int64) string {
	return formatDuration(v.Lang, time.Duration(sec)*time.Second)
}
func (v *view) Other() string               { return map[string]string{"en": "ru", "ru": "en"}[v.Lang] }
func (v *view) CSRF() string                { return v.Me.csrf }
func (v *view) Can(role string) bool        { return v.Me != nil && roleRank(v.Me.role) >= roleRank(role) }
func (v *view) Status(s string) string      { return tr(v.Lang, "status."+s) }
func (v *view) Role(r string) string        { return tr(v.Lang, "role."+r) }
func (v *view) Reset(r string) string       { return tr(v.Lang, "reset."+r) }
func (v *view) Add(a, b int64) int64        { return addSat(a, b) }
func (v *view) IsCurrent(page string) bool  { return v.Page == page }
func (v *view) Action(a string) string      { return tr(v.Lang, "audit."+a) }
func (v *view) Int(n int) int64             { return int64(n) }
func (v *view) Metric(m string) string      { return tr(v.Lang, "metric."+m) }
func (v *view) Dash(s string) string        { return orDash(v.Lang, s) }
func (v *view) DayOrDash(day string) string { return dayOrDash(v.Lang, day) }
func (v *view) Yes(b bool) string {
	return map[bool]string{true: tr(v.Lang, "yes"), false: tr(v.Lang, "no")}[b]
}
func (v *view) Quota(q int64) string        { return quotaText(v.Lang, q) }
func (v *view) Expiry(t time.Time) string   { return formatDate(v.Lang, t) }
func (v *view) Pages() []string             { return []string{"users", "server", "admins"} }
func (v *view) NavTitle(page string) string { return tr(v.Lang, "nav."+page) }
func (v *view) Selected(a, b string) bool   { return a == b }
func (v *view) Roles() []string {
	return []string{access.RoleViewer, access.RoleOperator, access.RoleOwner}
}
func (v *view) Resets() []string {
	return []string{access.ResetNever, access.ResetWeekly, access.ResetMonthly}
}
func (v *view) Filters() []string {
	return []string{"", access.FilterActive, access.FilterExpiring, access.FilterOverQuota, access.FilterRevoked, access.FilterOnline}
}
func (v *view) FilterName(f string) string { return tr(v.Lang, "filter."+orAll(f)) }
func (v *view) LangName(l string) string {
	return map[string]string{"en": "English", "ru": "Русский"}[l]
}
func (v *view) Pluralize(n int64, key string) string { return plural(v.Lang, n, key) }

func orAll(f string) string {
	if f == "" {
		return "all"
	}
	return f
}

func orDash(lang, s string) string {
	if s == "" {
		return "—"
	}
	return s
}

func dayOrDash(lang, day string) string {
	t, err := time.Parse(time.DateOnly, day)
	if err != nil {
		return "—"
	}
	return formatDate(lang, t)
}

func quotaText(lang string, q int64) string {
	if q <= 0 {
		return tr(lang, "unlimited")
	}
	return formatSize(lang, q)
}

func addSat(a, b int64) int64 {
	if a > 1<<62 || b > 1<<62 {
		return 1<<63 - 1
	}
	return a + b
}

// plural picks key.one / key.few / key.many (Russian) or key.one /
// key.many (English) for n.
func plural(lang string, n int64, key string) string {
	form := "many"
	if lang == "ru" {
		switch m10, m100 := n%10, n%100; {
		case m10 == 1 && m100 != 11:
			form = "one"
		case m10 >= 2 && m10 <= 4 && (m100 < 12 || m100 > 14):
			form = "few"
		}
	} else if n == 1 {
		form = "one"
	}
	return formatNum(lang, n) + " " + tr(lang, key+"."+form)
}

// render writes page with v, or a plain 500 if the template fails (the
// page is rendered to a buffer first, so a failure never sends half).
func (p *Panel) render(w http.ResponseWriter, r *http.Request, code int, page string, v *view) {
	if v.Lang == "" {
		v.Lang = pickLang(r)
	}
	if done := r.URL.Query().Get("done"); v.Flash == "" && r.Method == http.MethodGet && done != "" {
		if _, ok := catalog["done."+done]; ok {
			v.Flash = "done." + done
		}
	}
	t, ok := p.pages[page]
	var buf bytes.Buffer
	if !ok {
		p.cfg.Log.Error("panel: no such page", "page", page)
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	if err := t.Execute(&buf, v); err != nil {
		p.cfg.Log.Error("panel: render", "page", page, "err", err)
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Content-Language", v.Lang)
	w.WriteHeader(code)
	w.Write(buf.Bytes())
}

// fail shows an error page with the message key.
func (p *Panel) fail(w http.ResponseWriter, r *http.Request, me *who, code int, key string) {
	lang := pickLang(r)
	p.render(w, r, code, "error", &view{Lang: lang, Me: me, Title: "err.title", Err: tr(lang, key)})
}

// errText maps an error from the admin API to a message and a status.
func errText(lang string, err error) (string, int) {
	switch {
	case errors.Is(err, access.ErrNotFound):
		return tr(lang, "err.notfound"), http.StatusNotFound
	case errors.Is(err, access.ErrExists):
		return tr(lang, "err.exists"), http.StatusConflict
	case errors.Is(err, access.ErrInvalid), errors.Is(err, ErrPassword):
		// The detail says which field and why (in English: it comes from
		// the shared validation of the CLI and the API).
		return tr(lang, "err.invalid") + " " + err.Error(), http.StatusBadRequest
	}
	return tr(lang, "err.internal"), http.StatusInternalServerError
}
