package panel

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/burrow-vpn/burrow/internal/access"
	"github.com/burrow-vpn/burrow/internal/admin"
)

//go:embed templates/*.html
var templateFS embed.FS

//go:embed static
var staticFS embed.FS

// Users is the user administration the panel drives: the admin API (so a
// change here takes the same path as `burrow user`, revocations cutting live
// connections included) plus paging and per-day history. admin.Local
// implements it.
type Users interface {
	admin.API
	PageUsers(ctx context.Context, q access.UserQuery) ([]admin.UserInfo, int, error)
	DailyTraffic(ctx context.Context, name, since string) ([]access.DayTraffic, error)
}

// Admins stores the panel's administrators and its audit log.
// access.SQLiteStore implements it.
type Admins interface {
	CreateAdmin(ctx context.Context, a access.Admin) (*access.Admin, error)
	AdminByName(ctx context.Context, name string) (*access.Admin, error)
	AdminBySetupHash(ctx context.Context, hash string) (*access.Admin, error)
	ListAdmins(ctx context.Context) ([]*access.Admin, error)
	RemoveAdmin(ctx context.Context, name string) error
	SetAdminRole(ctx context.Context, name, role string) error
	SetAdminPassword(ctx context.Context, name, hash string) error
	SetAdminSetup(ctx context.Context, name, hash string, expires time.Time) error
	SetAdminTOTP(ctx context.Context, name, secret string) error
	AddAudit(ctx context.Context, e access.AuditEntry) error
	Audit(ctx context.Context, before int64, limit int) ([]access.AuditEntry, error)
}

// Link is one way to reach the server, as a client app imports it.
type Link struct {
	Transport string // "tcp", "xhttp", or a node or relay path in a fleet
	URL       string
}

// Config is what a panel serves. Users, Admins and Links are required.
type Config struct {
	Users  Users
	Admins Admins
	// Links returns the user's links (one per transport, node or path).
	Links func(u *admin.UserInfo) ([]Link, error)
	// Hosts are the host names the panel answers to besides IP addresses
	// and "localhost" (a request for any other Host is refused, which
	// stops DNS-rebinding pages from reaching it).
	Hosts []string
	// Nodes, set when the panel runs a fleet, lists its nodes for the
	// server page.
	Nodes func(ctx context.Context) ([]Node, error)
	Log   *slog.Logger     // default: discard
	Now   func() time.Time // default: time.Now
}

// Node is one server of a fleet as the server page shows it.
type Node struct {
	Name     string
	Role     string // "exit" or "relay"
	Revoked  bool
	Version  string    // what it last reported; "" before its first report
	LastSeen time.Time // its last report; zero if none
	// Lag is how many changes of the fleet's change log the node has not
	// applied yet, as of its last report.
	Lag       int64
	Online    int // users connected through it, last reported
	BytesUp   int64
	BytesDown int64
	Health    string // "ok", or what is wrong, as the node says
}

// NodeStale is how long after its last report a node shows as not
// reporting (nodes report every 10 s).
const NodeStale = time.Minute

// Panel is the web panel's http.Handler.
type Panel struct {
	cfg      Config
	pages    map[string]*template.Template
	mux      *http.ServeMux
	sessions *sessions
	bySource *limiter      // login attempts per client address
	byName   *limiter      // login attempts per account
	hashSem  chan struct{} // bounds the argon2 hashes running at once

	mu       sync.Mutex
	totpLast map[string]uint64 // per admin, the last TOTP step used; guarded by mu
}

// Login limits: a source may try 10 times, then once a minute; an account 5
// times, then once every 2 minutes, whatever the source.
const (
	sourceBurst, sourceEvery = 10, time.Minute
	nameBurst, nameEvery     = 5, 2 * time.Minute
)

// New makes a panel.
func New(cfg Config) (*Panel, error) {
	if cfg.Users == nil || cfg.Admins == nil || cfg.Links == nil {
		return nil, errors.New("panel: Users, Admins and Links are required")
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	p := &Panel{cfg: cfg, sessions: newSessions(),
		bySource: newLimiter(sourceBurst, sourceEvery, 100000),
		byName:   newLimiter(nameBurst, nameEvery, 100000),
		hashSem:  make(chan struct{}, 2), totpLast: map[string]uint64{}}
	var err error
	if p.pages, err = parsePages(); err != nil {
		return nil, err
	}
	p.routes()
	return p, nil
}

func parsePages() (map[string]*template.Template, error) {
	names, err := fs.Glob(templateFS, "templates/*.html")
	if err != nil {
		return nil, err
	}
	pages := map[string]*template.Template{}
	for _, n := range names {
		base := strings.TrimSuffix(strings.TrimPrefix(n, "templates/"), ".html")
		if base == "layout" {
			continue
		}
		t, err := template.New("layout.html").ParseFS(templateFS, "templates/layout.html", n)
		if err != nil {
			return nil, fmt.Errorf("panel: template %s: %w", n, err)
		}
		pages[base] = t
	}
	return pages, nil
}

func (p *Panel) routes() {
	m := http.NewServeMux()
	static, _ := fs.Sub(staticFS, "static")
	m.Handle("GET /static/", http.StripPrefix("/static/", http.FileServerFS(static)))
	m.HandleFunc("GET /login", p.loginPage)
	m.HandleFunc("POST /login", p.login)
	m.HandleFunc("GET /setup/{token}", p.setupPage)
	m.HandleFunc("POST /setup/{token}", p.setup)
	m.HandleFunc("GET /lang/{lang}", p.setLang)
	m.HandleFunc("POST /logout", p.authed(access.RoleViewer, p.logout))
	m.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) { http.Redirect(w, r, "/users", http.StatusSeeOther) })
	m.HandleFunc("GET /users", p.authed(access.RoleViewer, p.usersPage))
	m.HandleFunc("POST /users", p.authed(access.RoleOperator, p.addUser))
	m.HandleFunc("GET /users/{name}", p.authed(access.RoleViewer, p.userPage))
	m.HandleFunc("POST /users/{name}/edit", p.authed(access.RoleOperator, p.editUser))
	m.HandleFunc("POST /users/{name}/{action}", p.authed(access.RoleOperator, p.userAction))
	m.HandleFunc("GET /account", p.authed(access.RoleViewer, p.accountPage))
	m.HandleFunc("POST /account/password", p.authed(access.RoleViewer, p.changePassword))
	m.HandleFunc("POST /account/totp", p.authed(access.RoleViewer, p.totp))
	m.HandleFunc("GET /server", p.authed(access.RoleViewer, p.serverPage))
	m.HandleFunc("GET /admins", p.authed(access.RoleViewer, p.adminsPage))
	m.HandleFunc("POST /admins", p.authed(access.RoleOwner, p.addAdmin))
	m.HandleFunc("POST /admins/{name}/{action}", p.authed(access.RoleOwner, p.adminAction))
	m.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		p.fail(w, r, nil, http.StatusNotFound, "err.notfound")
	})
	p.mux = m
}

// csp allows scripts, styles and images from the panel itself only: no
// inline script, no framing, forms posting nowhere else.
const csp = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; " +
	"form-action 'self'; frame-ancestors 'none'; base-uri 'none'"

// ServeHTTP implements http.Handler.
func (p *Panel) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Content-Security-Policy", csp)
	h.Set("X-Frame-Options", "DENY")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("Cross-Origin-Opener-Policy", "same-origin")
	h.Set("Cross-Origin-Resource-Policy", "same-origin")
	h.Set("Cache-Control", "no-store")
	if !p.hostAllowed(r.Host) {
		http.Error(w, "unknown host", http.StatusMisdirectedRequest)
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
	p.mux.ServeHTTP(w, r)
}

// hostAllowed accepts IP literals, localhost and the configured names.
func (p *Panel) hostAllowed(hostport string) bool {
	host := hostport
	if h, _, err := net.SplitHostPort(hostport); err == nil {
		host = h
	}
	host = strings.TrimSuffix(strings.ToLower(host), ".")
	if _, err := netip.ParseAddr(strings.Trim(host, "[]")); err == nil || host == "localhost" {
		return true
	}
	for _, h := range p.cfg.Hosts {
		if strings.EqualFold(h, host) {
			return true
		}
	}
	return false
}

// roleRank orders roles by what they may do.
func roleRank(role string) int {
	switch role {
	case access.RoleOwner:
		return 3
	case access.RoleOperator:
		return 2
	case access.RoleViewer:
		return 1
	}
	return 0
}

// who is the logged-in admin of a request.
type who struct {
	name, role, csrf, token string
}

type authedHandler func(w http.ResponseWriter, r *http.Request, me *who)

// authed serves h to logged-in admins of at least role; on POST it also
// requires the session's CSRF token. Others are sent to the login page
// (GET) or refused (POST).
func (p *Panel) authed(role string, h authedHandler) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		me, ok := p.current(r)
		if !ok {
			if r.Method == http.MethodGet {
				http.Redirect(w, r, "/login", http.StatusSeeOther)
				return
			}
			p.fail(w, r, nil, http.StatusUnauthorized, "err.login")
			return
		}
		if r.Method != http.MethodGet && !sameToken(r.PostFormValue("csrf"), me.csrf) {
			p.fail(w, r, me, http.StatusForbidden, "err.csrf")
			return
		}
		if roleRank(me.role) < roleRank(role) {
			p.fail(w, r, me, http.StatusForbidden, "err.role")
			return
		}
		h(w, r, me)
	}
}

// current returns the request's admin, if its session is live and the
// admin still exists.
func (p *Panel) current(r *http.Request) (*who, bool) {
	c, err := r.Cookie(sessionCookie)
	if err != nil {
		return nil, false
	}
	se, ok := p.sessions.get(c.Value, p.cfg.Now())
	if !ok {
		return nil, false
	}
	a, err := p.cfg.Admins.AdminByName(r.Context(), se.admin)
	if err != nil || a.PasswordHash == "" {
		p.sessions.end(c.Value)
		return nil, false
	}
	return &who{name: a.Name, role: a.Role, csrf: se.csrf, token: c.Value}, true
}

// audit records an admin action. A failure to record is logged, not shown:
// the action itself has happened.
func (p *Panel) audit(ctx context.Context, me *who, action, target, detail string) {
	err := p.cfg.Admins.AddAudit(ctx, access.AuditEntry{Admin: me.name, Action: action, Target: target, Detail: detail})
	if err != nil {
		p.cfg.Log.Warn("panel: audit log", "err", err)
	}
}

// Name and Role are for the templates.
func (w *who) Name() string { return w.name }
func (w *who) Role() string { return w.role }
