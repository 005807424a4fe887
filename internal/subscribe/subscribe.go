// Package subscribe serves each user's subscription: the links of their
// access key in the format their client app reads, at an unguessable URL,
// so the app can pick up a new link (after `burrow user rotate`, or a new
// server) by itself.
//
// The URL is BASE/TOKEN, where TOKEN is the user's subscription token (32
// random bytes, base64url: 43 characters). The handler looks only at the
// last path segment, so it works the same behind a reverse proxy that keeps
// or strips a path prefix. Anything that is not a GET or HEAD of an existing,
// unrevoked user's token gets one fixed 404 response, byte for byte the same
// for a wrong token as for any other missing page; no response carries a
// Date header, so even that does not differ.
//
// Formats, chosen by ?format= (base64, sing-box, clash) or else by the
// User-Agent:
//
//	base64    v2rayN, v2rayNG, Streisand, Happ, anything unknown:
//	          standard base64 of the vless:// links, one per line
//	sing-box  sing-box, SFA, SFI, SFM, Hiddify: a sing-box JSON config
//	          (tun inbound, a selector, the VLESS REALITY outbounds, direct);
//	          tcp links only: sing-box has no XHTTP transport, and the
//	          profile title then ends in " (tcp only)"
//	clash     Clash, Clash Verge, Mihomo, Stash: a Clash/Mihomo YAML config
//	          (proxies, a select group, with several links a fallback group
//	          over them, MATCH rule); xhttp proxies need Mihomo v1.19.22+
//
// Each server template gives each user one link; a template without a name
// takes the user's name, with " (xhttp)" added for an xhttp template, so
// that a user's tcp and xhttp links of one server read apart in the app.
//
// The links are listed in the templates' order (tcp first), except when
// the block telemetry clients reported on this node (internal/telemetry)
// says the tcp transport is in trouble here — its handshakes reset after
// the ClientHello, its connections freeze, tcp links switch to xhttp —
// over the last telemetry.PreferDays days (the rule is telemetry.Prefer):
// then the xhttp links come first, so apps that pick the first link pick
// the one that works.
//
// Every answer carries the headers clients show to the user:
//
//	subscription-userinfo: upload=U; download=D; total=QUOTA; expire=UNIX
//	                       (total=0: unlimited; expire=0: never)
//	profile-title: TITLE             ("base64:" + base64(TITLE) when not ASCII)
//	profile-update-interval: HOURS
//
// Each format has a parser here (ParseBase64, ParseSingBox, ParseClash) that
// turns it back into links, so tests — and later our own client — can read
// subscriptions.
package subscribe

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/burrow-vpn/burrow/internal/access"
	"github.com/burrow-vpn/burrow/internal/links"
	"github.com/burrow-vpn/burrow/internal/telemetry"
)

// TokenSource finds users by subscription token (access.Store has this method).
type TokenSource interface {
	UserBySubToken(ctx context.Context, token string) (*access.User, error)
}

// TelemetrySource reads the block telemetry's daily counts
// (access.SQLiteStore has this method).
type TelemetrySource interface {
	TelemetrySince(ctx context.Context, day string) ([]access.TelemetryCount, error)
}

// Config configures Handler. Users and Servers are required.
type Config struct {
	Users TokenSource
	// Servers are link templates, one per server the user may use; each
	// user's links are these with the user's UUID (and, where the template
	// has no name, the user's name).
	Servers []links.VLESS
	// Title is the profile title clients show: at most 25 characters, no
	// control characters. Default "Burrow".
	Title string
	// UpdateInterval is how often clients should refetch. Default 12h;
	// sent in whole hours, at least 1.
	UpdateInterval time.Duration
	// Telemetry, when set, orders each user's links by what works best on
	// this node (see the package doc); nil keeps the templates' order.
	Telemetry TelemetrySource
	// Links, when set, gives each user's links instead of Servers, in the
	// order clients should try them (a fleet's control plane: every exit
	// and relay path, healthy nodes first).
	Links func(ctx context.Context, u *access.User) ([]*links.VLESS, error)
}

// MaxTitleLen is the longest profile title, in characters (Happ shows 25).
const MaxTitleLen = 25

// Format is a subscription body format.
type Format string

const (
	FormatBase64  Format = "base64"
	FormatSingBox Format = "sing-box"
	FormatClash   Format = "clash"
)

// ParseFormat maps a ?format= value to a Format.
func ParseFormat(s string) (Format, error) {
	switch strings.ToLower(s) {
	case "base64", "v2ray", "links":
		return FormatBase64, nil
	case "sing-box", "singbox", "json":
		return FormatSingBox, nil
	case "clash", "mihomo", "yaml":
		return FormatClash, nil
	}
	return "", fmt.Errorf("subscribe: unknown format %.40q (want base64, sing-box or clash)", s)
}

// FormatFor picks the format a client app reads from its User-Agent.
func FormatFor(userAgent string) Format {
	ua := strings.ToLower(userAgent)
	switch {
	case strings.Contains(ua, "hiddify"):
		// Hiddify says "like ClashMeta v2ray sing-box"; it runs sing-box.
		return FormatSingBox
	case strings.Contains(ua, "sing-box"), strings.HasPrefix(ua, "sfa/"), strings.HasPrefix(ua, "sfi/"),
		strings.HasPrefix(ua, "sfm/"), strings.HasPrefix(ua, "sft/"):
		return FormatSingBox
	case strings.Contains(ua, "clash"), strings.Contains(ua, "mihomo"), strings.Contains(ua, "stash"):
		return FormatClash
	}
	return FormatBase64
}

// URL returns the subscription URL of token under base (the operator's
// public URL of the subscription server, e.g. https://sub.example.com/s).
func URL(base, token string) string {
	return strings.TrimRight(base, "/") + "/" + token
}

// ValidateTitle reports why title cannot be a profile title, or nil.
func ValidateTitle(title string) error {
	if !utf8.ValidString(title) {
		return errors.New("subscribe: title: not valid UTF-8")
	}
	if n := utf8.RuneCountInString(title); n > MaxTitleLen {
		return fmt.Errorf("subscribe: title: %d characters, at most %d (clients cut it)", n, MaxTitleLen)
	}
	for _, r := range title {
		if unicode.IsControl(r) {
			return fmt.Errorf("subscribe: title: control character %U", r)
		}
	}
	return nil
}

type handler struct {
	cfg      Config
	title    string // header value
	tcpTitle string // header value for a format that left xhttp links out
	hours    string
}

// TCPOnlySuffix ends the profile title of a sing-box subscription that
// left the user's xhttp links out.
const TCPOnlySuffix = " (tcp only)"

// NewHandler returns the subscription server's handler.
func NewHandler(cfg Config) (http.Handler, error) {
	if cfg.Users == nil || len(cfg.Servers) == 0 && cfg.Links == nil {
		return nil, errors.New("subscribe: Users and at least one server (or Links) are required")
	}
	if cfg.Title == "" {
		cfg.Title = "Burrow"
	}
	if err := ValidateTitle(cfg.Title); err != nil {
		return nil, err
	}
	if cfg.UpdateInterval == 0 {
		cfg.UpdateInterval = 12 * time.Hour
	}
	return &handler{cfg: cfg, title: headerTitle(cfg.Title), tcpTitle: headerTitle(cfg.Title + TCPOnlySuffix),
		hours: strconv.FormatInt(max(int64(cfg.UpdateInterval/time.Hour), 1), 10)}, nil
}

// headerTitle encodes a title for the profile-title header.
func headerTitle(t string) string {
	for i := 0; i < len(t); i++ {
		if t[i] >= 0x80 {
			return "base64:" + base64.StdEncoding.EncodeToString([]byte(t))
		}
	}
	return t
}

// DecodeTitle decodes a profile-title header value.
func DecodeTitle(v string) (string, error) {
	rest, ok := strings.CutPrefix(v, "base64:")
	if !ok {
		return v, nil
	}
	b, err := base64.StdEncoding.DecodeString(rest)
	if err != nil {
		return "", fmt.Errorf("subscribe: profile-title: %w", err)
	}
	return string(b), nil
}

// NotFoundBody is the body of the one 404 response.
const NotFoundBody = "404 page not found\n"

// notFound writes the one 404 response.
func notFound(w http.ResponseWriter) {
	h := w.Header()
	h["Date"] = nil // suppress: it would differ between two requests
	h.Set("Content-Type", "text/plain; charset=utf-8")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Content-Length", strconv.Itoa(len(NotFoundBody)))
	w.WriteHeader(http.StatusNotFound)
	io.WriteString(w, NotFoundBody)
}

// validToken reports whether s has the shape of a subscription token.
func validToken(s string) bool {
	if len(s) != 43 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		notFound(w)
		return
	}
	path := r.URL.Path
	token := path[strings.LastIndexByte(path, '/')+1:]
	if !validToken(token) {
		notFound(w)
		return
	}
	u, err := h.cfg.Users.UserBySubToken(r.Context(), token)
	if errors.Is(err, access.ErrNotFound) || err == nil && u.Revoked {
		notFound(w)
		return
	}
	if err != nil {
		w.Header()["Date"] = nil
		http.Error(w, "temporarily unavailable, try again later", http.StatusServiceUnavailable)
		return
	}
	f := FormatFor(r.UserAgent())
	if q := r.URL.Query().Get("format"); q != "" {
		if f, err = ParseFormat(q); err != nil {
			w.Header()["Date"] = nil
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
	}
	ls := h.links(u)
	if h.cfg.Links != nil {
		if ls, err = h.cfg.Links(r.Context(), u); err != nil {
			w.Header()["Date"] = nil
			http.Error(w, "temporarily unavailable, try again later", http.StatusServiceUnavailable)
			return
		}
	}
	if h.cfg.Telemetry != nil && h.preferred(r.Context()) == links.TypeXHTTP {
		ls = Order(ls, links.TypeXHTTP)
	}
	var body []byte
	var ctype string
	title := h.title
	switch f {
	case FormatSingBox:
		body, err = EncodeSingBox(ls)
		ctype = "application/json; charset=utf-8"
		if slices.ContainsFunc(ls, func(l *links.VLESS) bool { return !SingBoxCarries(l) }) {
			title = h.tcpTitle
		}
	case FormatClash:
		body, err = EncodeClash(ls)
		ctype = "text/yaml; charset=utf-8"
	default:
		body = EncodeBase64(ls)
		ctype = "text/plain; charset=utf-8"
	}
	if err != nil {
		w.Header()["Date"] = nil
		http.Error(w, "temporarily unavailable, try again later", http.StatusInternalServerError)
		return
	}
	hd := w.Header()
	hd["Date"] = nil
	hd.Set("Content-Type", ctype)
	hd.Set("Cache-Control", "no-store")
	hd.Set("Subscription-Userinfo", UserInfo(u))
	hd.Set("Profile-Title", title)
	hd.Set("Profile-Update-Interval", h.hours)
	hd.Set("Content-Length", strconv.Itoa(len(body)))
	w.Write(body)
}

// UserInfo formats the subscription-userinfo header for u.
func UserInfo(u *access.User) string {
	var expire int64
	if !u.ExpiresAt.IsZero() {
		expire = u.ExpiresAt.Unix()
	}
	return fmt.Sprintf("upload=%d; download=%d; total=%d; expire=%d", u.BytesUp, u.BytesDown, u.Quota, expire)
}

// preferred is the transport whose links go first: telemetry.Prefer over
// the last telemetry.PreferDays days; "tcp" if the store cannot say.
func (h *handler) preferred(ctx context.Context) string {
	since := time.Now().UTC().AddDate(0, 0, 1-telemetry.PreferDays).Format(time.DateOnly)
	rows, err := h.cfg.Telemetry.TelemetrySince(ctx, since)
	if err != nil {
		return links.TypeTCP
	}
	return telemetry.Prefer(rows)
}

// Order returns ls with the links of type first (links.TypeTCP or
// links.TypeXHTTP) ahead of the others, each group in its order.
func Order(ls []*links.VLESS, first string) []*links.VLESS {
	out := slices.Clone(ls)
	slices.SortStableFunc(out, func(a, b *links.VLESS) int {
		return cmpBool(b.Type == first, a.Type == first)
	})
	return out
}

// cmpBool orders false before true.
func cmpBool(a, b bool) int {
	switch {
	case a == b:
		return 0
	case a:
		return 1
	}
	return -1
}

func (h *handler) links(u *access.User) []*links.VLESS {
	out := make([]*links.VLESS, 0, len(h.cfg.Servers))
	for _, tmpl := range h.cfg.Servers {
		l := tmpl
		l.UUID = u.UUID
		if l.Name == "" {
			l.Name = u.Name
			if l.Type == links.TypeXHTTP {
				l.Name += " (xhttp)"
			}
		}
		out = append(out, &l)
	}
	return out
}
