package panel

import (
	"html/template"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/burrow-vpn/burrow/internal/access"
	"github.com/burrow-vpn/burrow/internal/admin"
)

// PageSize is how many users the users page shows at once.
const PageSize = 50

type usersData struct {
	Users       []admin.UserInfo
	Total       int
	Search      string
	Filter      string
	Page, Pages int
	PrevURL     string
	NextURL     string
	Add         admin.AddRequest // the add form's values after an error
}

func (p *Panel) usersPage(w http.ResponseWriter, r *http.Request, me *who) {
	p.showUsers(w, r, me, http.StatusOK, "", admin.AddRequest{})
}

// showUsers renders the users page for the request's search, filter and page.
func (p *Panel) showUsers(w http.ResponseWriter, r *http.Request, me *who, code int, errMsg string, add admin.AddRequest) {
	q := r.URL.Query()
	d := usersData{Search: strings.TrimSpace(q.Get("q")), Filter: q.Get("filter"), Add: add}
	d.Page, _ = strconv.Atoi(q.Get("page"))
	d.Page = max(d.Page, 1)
	users, total, err := p.cfg.Users.PageUsers(r.Context(), access.UserQuery{Search: d.Search, Filter: d.Filter,
		Offset: (d.Page - 1) * PageSize, Limit: PageSize})
	if err != nil {
		msg, code := errText(pickLang(r), err)
		p.render(w, r, code, "error", &view{Me: me, Title: "err.title", Err: msg})
		return
	}
	d.Users, d.Total = users, total
	d.Pages = max(1, (total+PageSize-1)/PageSize)
	link := func(page int) string {
		v := url.Values{}
		if d.Search != "" {
			v.Set("q", d.Search)
		}
		if d.Filter != "" {
			v.Set("filter", d.Filter)
		}
		v.Set("page", strconv.Itoa(page))
		return "/users?" + v.Encode()
	}
	if d.Page > 1 {
		d.PrevURL = link(d.Page - 1)
	}
	if d.Page < d.Pages {
		d.NextURL = link(d.Page + 1)
	}
	p.render(w, r, code, "users", &view{Me: me, Page: "users", Title: "nav.users", Err: errMsg, Data: d})
}

func (p *Panel) addUser(w http.ResponseWriter, r *http.Request, me *who) {
	req := admin.AddRequest{Name: strings.TrimSpace(r.PostFormValue("name")), Quota: strings.TrimSpace(r.PostFormValue("quota")),
		Expires: strings.TrimSpace(r.PostFormValue("expires")), Reset: r.PostFormValue("reset"), Note: r.PostFormValue("note")}
	if key := fieldError(userFields{Name: &req.Name, Quota: &req.Quota, Expires: &req.Expires, Reset: &req.Reset, Note: &req.Note}, p.cfg.Now()); key != "" {
		p.showUsers(w, r, me, http.StatusBadRequest, tr(pickLang(r), key), req)
		return
	}
	u, err := p.cfg.Users.AddUser(r.Context(), req)
	if err != nil {
		msg, code := errText(pickLang(r), err)
		p.showUsers(w, r, me, code, msg, req)
		return
	}
	p.audit(r.Context(), me, "user.add", u.Name, addDetail(req))
	http.Redirect(w, r, userURL(u.Name)+"?done=added", http.StatusSeeOther)
}

// addDetail says in the audit log what a new user got (no keys).
func addDetail(req admin.AddRequest) string {
	var parts []string
	for _, kv := range [][2]string{{"quota", req.Quota}, {"expires", req.Expires}, {"reset", req.Reset}} {
		if kv[1] != "" {
			parts = append(parts, kv[0]+"="+kv[1])
		}
	}
	return strings.Join(parts, " ")
}

func userURL(name string) string { return "/users/" + url.PathEscape(name) }

type userData struct {
	U        *admin.UserInfo
	Links    []shownLink
	SubURL   string
	Chart    template.HTML
	Days     int
	Edit     editForm
	ShowKeys bool
}

type shownLink struct {
	Transport, URL string
	QR             template.HTML
}

// editForm is the edit form's fields as the operator types them.
type editForm struct {
	Quota, Expires, Reset, Note string
}

func formOf(u *admin.UserInfo) editForm {
	f := editForm{Quota: "0", Expires: "never", Reset: u.Reset, Note: u.Note}
	if u.Quota > 0 {
		f.Quota = access.FormatSize(u.Quota)
		f.Quota = strings.ReplaceAll(f.Quota, " ", "")
	}
	if !u.ExpiresAt.IsZero() {
		f.Expires = u.ExpiresAt.UTC().Format(time.DateOnly)
	}
	return f
}

func (p *Panel) userPage(w http.ResponseWriter, r *http.Request, me *who) {
	p.showUser(w, r, me, http.StatusOK, "", nil)
}

// chartDays is how many days the traffic chart covers.
const chartDays = 30

// showUser renders a user's page. Links, QR codes and the subscription URL
// are shown to those who may change the user (a viewer sees none: they are
// the keys).
func (p *Panel) showUser(w http.ResponseWriter, r *http.Request, me *who, code int, errMsg string, form *editForm) {
	lang := pickLang(r)
	u, err := p.cfg.Users.User(r.Context(), r.PathValue("name"))
	if err != nil {
		msg, code := errText(lang, err)
		p.render(w, r, code, "error", &view{Me: me, Title: "err.title", Err: msg})
		return
	}
	d := userData{U: u, Edit: formOf(u), Days: chartDays, ShowKeys: roleRank(me.role) >= roleRank(access.RoleOperator)}
	if form != nil {
		d.Edit = *form
	}
	today := p.cfg.Now().UTC().Truncate(24 * time.Hour)
	first := today.AddDate(0, 0, 1-chartDays)
	days, err := p.cfg.Users.DailyTraffic(r.Context(), u.Name, first.Format(time.DateOnly))
	if err != nil {
		msg, code := errText(lang, err)
		p.render(w, r, code, "error", &view{Me: me, Title: "err.title", Err: msg})
		return
	}
	d.Chart = trafficChart(lang, first, chartDays, days)
	if d.ShowKeys && !u.Revoked {
		links, err := p.cfg.Links(u)
		if err != nil {
			p.cfg.Log.Error("panel: user links", "err", err)
		}
		for _, l := range links {
			d.Links = append(d.Links, shownLink{Transport: l.Transport, URL: l.URL, QR: qrSVG(l.URL, tr(lang, "user.qr")+" "+l.Transport)})
		}
		d.SubURL = u.SubscriptionURL
	}
	p.render(w, r, code, "user", &view{Lang: lang, Me: me, Page: "users", Title: "nav.users", Err: errMsg, Data: d})
}

// editUser applies the fields that differ from the user's current ones.
func (p *Panel) editUser(w http.ResponseWriter, r *http.Request, me *who) {
	lang := pickLang(r)
	name := r.PathValue("name")
	u, err := p.cfg.Users.User(r.Context(), name)
	if err != nil {
		msg, code := errText(lang, err)
		p.render(w, r, code, "error", &view{Me: me, Title: "err.title", Err: msg})
		return
	}
	cur := formOf(u)
	f := editForm{Quota: strings.TrimSpace(r.PostFormValue("quota")), Expires: strings.TrimSpace(r.PostFormValue("expires")),
		Reset: r.PostFormValue("reset"), Note: r.PostFormValue("note")}
	var req admin.SetRequest
	var changed []string
	if f.Quota != cur.Quota {
		req.Quota, changed = &f.Quota, append(changed, "quota="+f.Quota)
	}
	if f.Expires != cur.Expires {
		req.Expires, changed = &f.Expires, append(changed, "expires="+f.Expires)
	}
	if f.Reset != cur.Reset {
		req.Reset, changed = &f.Reset, append(changed, "reset="+f.Reset)
	}
	if f.Note != cur.Note {
		req.Note, changed = &f.Note, append(changed, "note")
	}
	if len(changed) == 0 {
		http.Redirect(w, r, userURL(u.Name)+"?done=unchanged", http.StatusSeeOther)
		return
	}
	if key := fieldError(userFields{Quota: req.Quota, Expires: req.Expires, Reset: req.Reset, Note: req.Note}, p.cfg.Now()); key != "" {
		p.showUser(w, r, me, http.StatusBadRequest, tr(lang, key), &f)
		return
	}
	if _, err := p.cfg.Users.SetUser(r.Context(), u.Name, req); err != nil {
		msg, code := errText(lang, err)
		p.showUser(w, r, me, code, msg, &f)
		return
	}
	p.audit(r.Context(), me, "user.edit", u.Name, strings.Join(changed, " "))
	http.Redirect(w, r, userURL(u.Name)+"?done=saved", http.StatusSeeOther)
}

// userAction revokes, enables, rotates or resets a user through the admin
// API, as `burrow user` does.
func (p *Panel) userAction(w http.ResponseWriter, r *http.Request, me *who) {
	api := p.cfg.Users
	do := map[string]func(r *http.Request, name string) (*admin.UserInfo, error){
		"revoke":        func(r *http.Request, n string) (*admin.UserInfo, error) { return api.Revoke(r.Context(), n) },
		"enable":        func(r *http.Request, n string) (*admin.UserInfo, error) { return api.Enable(r.Context(), n) },
		"rotate":        func(r *http.Request, n string) (*admin.UserInfo, error) { return api.Rotate(r.Context(), n) },
		"reset-traffic": func(r *http.Request, n string) (*admin.UserInfo, error) { return api.ResetTraffic(r.Context(), n) },
	}
	action := r.PathValue("action")
	f, ok := do[action]
	if !ok {
		p.fail(w, r, me, http.StatusNotFound, "err.notfound")
		return
	}
	u, err := f(r, r.PathValue("name"))
	if err != nil {
		msg, code := errText(pickLang(r), err)
		p.showUser(w, r, me, code, msg, nil)
		return
	}
	p.audit(r.Context(), me, "user."+action, u.Name, "")
	http.Redirect(w, r, userURL(u.Name)+"?done="+action, http.StatusSeeOther)
}
