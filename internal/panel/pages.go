package panel

import (
	"context"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/burrow-vpn/burrow/internal/access"
	"github.com/burrow-vpn/burrow/internal/admin"
)

type serverData struct {
	Health *admin.Health
	Stats  *admin.Stats
	Online int
	Fleet  bool
	Nodes  []nodeRow
}

// nodeRow is a Node with its state as one word: "ok", "unhealthy",
// "stale" (no report for NodeStale), "new" (never reported), "revoked".
type nodeRow struct {
	Node
	State string
}

func nodeState(n Node, now time.Time) string {
	switch {
	case n.Revoked:
		return "revoked"
	case n.LastSeen.IsZero():
		return "new"
	case now.Sub(n.LastSeen) > NodeStale:
		return "stale"
	case n.Health != "ok":
		return "unhealthy"
	}
	return "ok"
}

// serverPage shows health, counters and block telemetry.
func (p *Panel) serverPage(w http.ResponseWriter, r *http.Request, me *who) {
	h, err := p.cfg.Users.Health(r.Context())
	var st *admin.Stats
	if err == nil {
		st, err = p.cfg.Users.Stats(r.Context())
	}
	if err != nil {
		msg, code := errText(pickLang(r), err)
		p.render(w, r, code, "error", &view{Me: me, Title: "err.title", Err: msg})
		return
	}
	d := serverData{Health: h, Stats: st, Online: len(st.Connected), Fleet: p.cfg.Nodes != nil}
	if d.Fleet {
		nodes, err := p.cfg.Nodes(r.Context())
		if err != nil {
			msg, code := errText(pickLang(r), err)
			p.render(w, r, code, "error", &view{Me: me, Title: "err.title", Err: msg})
			return
		}
		now := p.cfg.Now()
		for _, n := range nodes {
			d.Nodes = append(d.Nodes, nodeRow{Node: n, State: nodeState(n, now)})
		}
	}
	p.render(w, r, http.StatusOK, "server", &view{Me: me, Page: "server", Title: "nav.server", Data: d})
}

// AuditPage is how many audit entries one page shows.
const AuditPage = 50

type adminsData struct {
	Admins    []*access.Admin
	Audit     []access.AuditEntry
	OlderURL  string
	SetupURL  string // a new admin's setup link, shown once
	SetupName string
	Add       struct{ Name, Role string }
}

func (p *Panel) adminsPage(w http.ResponseWriter, r *http.Request, me *who) {
	p.showAdmins(w, r, me, http.StatusOK, "", nil)
}

func (p *Panel) showAdmins(w http.ResponseWriter, r *http.Request, me *who, code int, errMsg string, d *adminsData) {
	if d == nil {
		d = &adminsData{}
	}
	before, _ := strconv.ParseInt(r.URL.Query().Get("before"), 10, 64)
	var err error
	if d.Admins, err = p.cfg.Admins.ListAdmins(r.Context()); err == nil {
		d.Audit, err = p.cfg.Admins.Audit(r.Context(), before, AuditPage)
	}
	if err != nil {
		msg, code := errText(pickLang(r), err)
		p.render(w, r, code, "error", &view{Me: me, Title: "err.title", Err: msg})
		return
	}
	if len(d.Audit) == AuditPage {
		d.OlderURL = "/admins?before=" + strconv.FormatInt(d.Audit[len(d.Audit)-1].ID, 10)
	}
	p.render(w, r, code, "admins", &view{Me: me, Page: "admins", Title: "nav.admins", Err: errMsg, Data: d})
}

// AddAdmin creates an administrator with role. With a password it is set
// now and token is ""; without, token is a one-time setup token, valid for
// SetupTTL, for the setup page at /setup/TOKEN. With totp the admin gets a
// TOTP secret (returned in a.TOTPSecret) that every login then needs.
func AddAdmin(ctx context.Context, st Admins, name, role, password string, totp bool, now time.Time) (token string, a *access.Admin, err error) {
	na := access.Admin{Name: name, Role: role}
	if password != "" {
		if na.PasswordHash, err = HashPassword(password); err != nil {
			return "", nil, err
		}
	} else {
		token = NewToken()
		na.SetupHash, na.SetupExpires = TokenHash(token), now.Add(SetupTTL)
	}
	if totp {
		na.TOTPSecret = NewTOTPSecret()
	}
	a, err = st.CreateAdmin(ctx, na)
	if err != nil {
		return "", nil, err
	}
	return token, a, nil
}

// SetupURL is the setup link for token on a panel at base ("http://host:port").
func SetupURL(base, token string) string {
	return strings.TrimSuffix(base, "/") + "/setup/" + token
}

// baseURL is the panel's own address as the browser reached it.
func baseURL(r *http.Request) string {
	if r.TLS != nil {
		return "https://" + r.Host
	}
	return "http://" + r.Host
}

func (p *Panel) addAdmin(w http.ResponseWriter, r *http.Request, me *who) {
	lang := pickLang(r)
	d := &adminsData{}
	d.Add.Name, d.Add.Role = strings.TrimSpace(r.PostFormValue("name")), r.PostFormValue("role")
	if key := fieldError(userFields{Name: &d.Add.Name}, p.cfg.Now()); key != "" {
		p.showAdmins(w, r, me, http.StatusBadRequest, tr(lang, key), d)
		return
	}
	tok, a, err := AddAdmin(r.Context(), p.cfg.Admins, d.Add.Name, d.Add.Role, "", false, p.cfg.Now())
	if err != nil {
		msg, code := errText(lang, err)
		p.showAdmins(w, r, me, code, msg, d)
		return
	}
	p.audit(r.Context(), me, "admin.add", a.Name, "role="+a.Role)
	d = &adminsData{SetupURL: SetupURL(baseURL(r), tok), SetupName: a.Name}
	p.showAdmins(w, r, me, http.StatusOK, "", d)
}

// adminAction removes an admin, changes their role, or makes a new setup
// link (a forgotten password).
func (p *Panel) adminAction(w http.ResponseWriter, r *http.Request, me *who) {
	lang := pickLang(r)
	name := r.PathValue("name")
	var err error
	var detail string
	d := &adminsData{}
	switch action := r.PathValue("action"); action {
	case "remove":
		err = p.cfg.Admins.RemoveAdmin(r.Context(), name)
	case "role":
		detail = "role=" + r.PostFormValue("role")
		err = p.cfg.Admins.SetAdminRole(r.Context(), name, r.PostFormValue("role"))
	case "setup":
		tok := NewToken()
		if err = p.cfg.Admins.SetAdminSetup(r.Context(), name, TokenHash(tok), p.cfg.Now().Add(SetupTTL)); err == nil {
			d.SetupURL, d.SetupName = SetupURL(baseURL(r), tok), name
		}
	default:
		p.fail(w, r, me, http.StatusNotFound, "err.notfound")
		return
	}
	if err != nil {
		msg, code := errText(lang, err)
		p.showAdmins(w, r, me, code, msg, nil)
		return
	}
	if r.PathValue("action") == "remove" {
		p.sessions.endAdmin(name)
	}
	p.audit(r.Context(), me, "admin."+r.PathValue("action"), name, detail)
	if d.SetupURL != "" {
		p.showAdmins(w, r, me, http.StatusOK, "", d)
		return
	}
	http.Redirect(w, r, "/admins?done=admin-"+r.PathValue("action"), http.StatusSeeOther)
}
