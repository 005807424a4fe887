package admin

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/burrow-vpn/burrow/internal/access"
	"github.com/burrow-vpn/burrow/internal/metrics"
	"github.com/burrow-vpn/burrow/internal/telemetry"
)

// API is what the operator can do. Errors wrap access.ErrInvalid (with a
// message that says why), access.ErrNotFound or access.ErrExists where those
// apply, whichever implementation returns them.
type API interface {
	ListUsers(ctx context.Context) ([]UserInfo, error)
	AddUser(ctx context.Context, req AddRequest) (*UserInfo, error)
	User(ctx context.Context, name string) (*UserInfo, error)
	SetUser(ctx context.Context, name string, req SetRequest) (*UserInfo, error)
	Revoke(ctx context.Context, name string) (*UserInfo, error)
	// Enable lifts a revocation (nothing changes for a user not revoked).
	Enable(ctx context.Context, name string) (*UserInfo, error)
	// Rotate gives the user a new UUID; a revoked user is refused (ErrInvalid):
	// their new link would not work either.
	Rotate(ctx context.Context, name string) (*UserInfo, error)
	ResetTraffic(ctx context.Context, name string) (*UserInfo, error)
	Stats(ctx context.Context) (*Stats, error)
	Health(ctx context.Context) (*Health, error)
}

// UserInfo is a user as the API shows it: the stored fields plus live ones.
type UserInfo struct {
	ID          int64     `json:"id"`
	Name        string    `json:"name"`
	UUID        string    `json:"uuid"`
	SubToken    string    `json:"sub_token"`
	CreatedAt   time.Time `json:"created_at"`
	Quota       int64     `json:"quota"`               // bytes per period, 0 = unlimited
	ExpiresAt   time.Time `json:"expires_at,omitzero"` // absent = never
	Reset       string    `json:"reset"`
	Note        string    `json:"note,omitempty"`
	Revoked     bool      `json:"revoked"`
	BytesUp     int64     `json:"bytes_up"`
	BytesDown   int64     `json:"bytes_down"`
	LastSeenDay string    `json:"last_seen_day,omitempty"`
	PeriodStart time.Time `json:"period_start"`
	// Status is "active", "revoked", "expired" or "over quota".
	Status string `json:"status"`
	// Connected is the number of live connections (0 when the server is not running).
	Connected int `json:"connected"`
	// SubscriptionURL is set when the server serves subscriptions.
	SubscriptionURL string `json:"subscription_url,omitempty"`
}

// User converts the info back to an access.User (without the live fields).
func (ui *UserInfo) User() (*access.User, error) {
	id, err := access.ParseUUID(ui.UUID)
	if err != nil {
		return nil, fmt.Errorf("admin: user %q: %w", ui.Name, err)
	}
	return &access.User{ID: ui.ID, Name: ui.Name, UUID: id, CreatedAt: ui.CreatedAt, Quota: ui.Quota,
		ExpiresAt: ui.ExpiresAt, Reset: ui.Reset, Note: ui.Note, Revoked: ui.Revoked, BytesUp: ui.BytesUp,
		BytesDown: ui.BytesDown, LastSeenDay: ui.LastSeenDay, SubToken: ui.SubToken, PeriodStart: ui.PeriodStart}, nil
}

// AddRequest is a new user, in the words an operator types.
type AddRequest struct {
	Name    string `json:"name"`
	Quota   string `json:"quota,omitempty"`   // "50GB", "20GiB", "0"; "" = unlimited
	Expires string `json:"expires,omitempty"` // "30d", "2027-01-31", RFC 3339, "never"; "" = never
	Reset   string `json:"reset,omitempty"`   // "monthly", "weekly", "never"; "" = never
	Note    string `json:"note,omitempty"`
}

// SetRequest changes the fields that are not nil. Unlike AddRequest, an
// empty quota or expiry is refused: say "0" or "never".
type SetRequest struct {
	Quota   *string `json:"quota,omitempty"`
	Expires *string `json:"expires,omitempty"`
	Reset   *string `json:"reset,omitempty"`
	Note    *string `json:"note,omitempty"`
}

// Counters are the running server's totals since it started.
type Counters struct {
	Active        int64 `json:"active"`         // proxied connections now
	Authenticated int64 `json:"authenticated"`  // handshakes with a valid key
	Fallback      int64 `json:"fallback"`       // connections handed to the cover site
	Rejected      int64 `json:"rejected"`       // valid handshake, unknown or unusable user
	EgressRefused int64 `json:"egress_refused"` // destinations refused by the egress policy
	BytesUp       int64 `json:"bytes_up"`       // client → destination
	BytesDown     int64 `json:"bytes_down"`     // destination → client
	RelayLinks    int64 `json:"relay_links"`    // entry relays' pooled connections open now
	RelayStreams  int64 `json:"relay_streams"`  // client connections relays carried in
	RelayRefused  int64 `json:"relay_refused"`  // relayed streams refused: bad header or credential
}

// Stats is the live state of the server.
type Stats struct {
	Running bool     `json:"running"`
	Totals  Counters `json:"totals"`
	// Connected maps user names to their live connections (users with none are absent).
	Connected map[string]int `json:"connected"`
	// Telemetry is what clients reported since the server started
	// (internal/telemetry); absent when the server is not running.
	Telemetry *TelemetryStats `json:"telemetry,omitempty"`
}

// TelemetryStats are the block telemetry's counts since the server started.
type TelemetryStats struct {
	Rejected int64            `json:"rejected"` // reports refused as malformed
	Limited  int64            `json:"limited"`  // reports not counted: a user's second within a minute
	Counts   []TelemetryCount `json:"counts"`
}

// TelemetryCount is one count (access.TelemetryCount without the day).
type TelemetryCount struct {
	Transport string `json:"transport"`
	Metric    string `json:"metric"`
	Bucket    int    `json:"bucket,omitempty"`
	Count     int64  `json:"count"`
}

// Health says whether the server is up.
type Health struct {
	Status        string `json:"status"` // "ok"
	Version       string `json:"version"`
	UptimeSeconds int64  `json:"uptime_seconds"`
	Users         int    `json:"users"`
}

// Live is the running server's view of its connections (server.Registry).
type Live interface {
	Active() map[int64]int // live connections per user id
}

// usageSource is a Live that also knows the bytes not yet flushed
// (server.Registry does).
type usageSource interface {
	Usage() map[int64]access.Traffic // current period, per user id
}

// Local implements API on a store, in the process that opened it. Only Store
// is required; the zero value of every other field means "the server is not
// running in this process".
type Local struct {
	Store access.Store
	// Live, when set, supplies connected-now counts.
	Live Live
	// Counters, when set, supplies the server's totals.
	Counters func() Counters
	// Telemetry, when set, supplies the block telemetry's totals.
	Telemetry func() telemetry.Totals
	// Changed, when set, is called after every change to a user, so the
	// server applies it at once instead of at its next refresh.
	Changed func()
	// SubscriptionURL, when set, returns the subscription URL for a token.
	SubscriptionURL func(token string) string
	Version         string
	Started         time.Time
	Now             func() time.Time // default time.Now
}

var _ API = (*Local)(nil)

func (l *Local) now() time.Time {
	if l.Now != nil {
		return l.Now()
	}
	return time.Now()
}

// info is u as the API shows it. Its bytes (and so its status) are the
// live ones when the server counts for u: the store lags by up to a flush.
func (l *Local) info(u *access.User, live liveView) *UserInfo {
	if t, ok := live.usage[u.ID]; ok {
		lu := *u
		lu.BytesUp, lu.BytesDown = t.Up, t.Down
		u = &lu
	}
	ui := &UserInfo{ID: u.ID, Name: u.Name, UUID: access.FormatUUID(u.UUID), SubToken: u.SubToken,
		CreatedAt: u.CreatedAt, Quota: u.Quota, ExpiresAt: u.ExpiresAt, Reset: u.Reset, Note: u.Note,
		Revoked: u.Revoked, BytesUp: u.BytesUp, BytesDown: u.BytesDown, LastSeenDay: u.LastSeenDay,
		PeriodStart: u.PeriodStart, Status: Status(u, l.now()), Connected: live.active[u.ID]}
	if l.SubscriptionURL != nil && !u.Revoked {
		ui.SubscriptionURL = l.SubscriptionURL(u.SubToken)
	}
	return ui
}

// liveView is the running server's view of its users at one moment.
type liveView struct {
	active map[int64]int            // live connections per user id
	usage  map[int64]access.Traffic // current period's bytes per user id, unflushed ones included
}

// live reads the running server's in-memory counters; the zero view when
// no server runs in this process.
func (l *Local) live() liveView {
	if l.Live == nil {
		return liveView{}
	}
	v := liveView{active: l.Live.Active()}
	if us, ok := l.Live.(usageSource); ok {
		v.usage = us.Usage()
	}
	return v
}

// Status names why a user may not connect, or "active".
func Status(u *access.User, now time.Time) string {
	err := u.Usable(now)
	switch {
	case err == nil:
		return "active"
	case errors.Is(err, access.ErrRevoked):
		return "revoked"
	case errors.Is(err, access.ErrExpired):
		return "expired"
	case errors.Is(err, access.ErrQuotaExceeded):
		return "over quota"
	}
	return "unusable"
}

func (l *Local) changed() {
	if l.Changed != nil {
		l.Changed()
	}
}

// ListUsers implements API.
func (l *Local) ListUsers(ctx context.Context) ([]UserInfo, error) {
	users, err := l.Store.ListUsers(ctx)
	if err != nil {
		return nil, err
	}
	live := l.live()
	out := make([]UserInfo, 0, len(users))
	for _, u := range users {
		out = append(out, *l.info(u, live))
	}
	return out, nil
}

// AddUser implements API.
func (l *Local) AddUser(ctx context.Context, req AddRequest) (*UserInfo, error) {
	now := l.now()
	nu := access.NewUser{Name: req.Name, Note: req.Note}
	var err error
	if req.Quota != "" {
		if nu.Quota, err = access.ParseSize(req.Quota); err != nil {
			return nil, fmt.Errorf("quota: %w", err)
		}
	}
	if req.Expires != "" {
		if nu.ExpiresAt, err = access.ParseExpiry(req.Expires, now); err != nil {
			return nil, err
		}
	}
	if nu.Reset, err = access.ParseReset(req.Reset); err != nil {
		return nil, err
	}
	u, err := l.Store.CreateUser(ctx, nu)
	if err != nil {
		return nil, err
	}
	l.changed()
	return l.info(u, liveView{}), nil
}

// lookup finds a user by name, refusing names that cannot exist.
func (l *Local) lookup(ctx context.Context, name string) (*access.User, error) {
	if err := access.ValidateName(name); err != nil {
		return nil, fmt.Errorf("access: %w", err)
	}
	return l.Store.UserByName(ctx, name)
}

// User implements API.
func (l *Local) User(ctx context.Context, name string) (*UserInfo, error) {
	u, err := l.lookup(ctx, name)
	if err != nil {
		return nil, err
	}
	return l.info(u, l.live()), nil
}

// SetUser implements API.
func (l *Local) SetUser(ctx context.Context, name string, req SetRequest) (*UserInfo, error) {
	var upd access.UserUpdate
	now := l.now()
	if req.Quota == nil && req.Expires == nil && req.Reset == nil && req.Note == nil {
		return nil, fmt.Errorf("set: nothing to change; give quota, expires, reset or note: %w", access.ErrInvalid)
	}
	if req.Quota != nil {
		q, err := access.ParseSize(*req.Quota)
		if err != nil {
			return nil, fmt.Errorf("quota: %w", err)
		}
		upd.Quota = &q
	}
	if req.Expires != nil {
		t, err := access.ParseExpiry(*req.Expires, now)
		if err != nil {
			return nil, err
		}
		upd.ExpiresAt = &t
	}
	if req.Reset != nil {
		r, err := access.ParseReset(*req.Reset)
		if err != nil {
			return nil, err
		}
		upd.Reset = &r
	}
	upd.Note = req.Note
	u, err := l.lookup(ctx, name)
	if err != nil {
		return nil, err
	}
	if u, err = l.Store.UpdateUser(ctx, u.ID, upd); err != nil {
		return nil, err
	}
	l.changed()
	return l.info(u, l.live()), nil
}

// Revoke implements API.
func (l *Local) Revoke(ctx context.Context, name string) (*UserInfo, error) {
	return l.modify(ctx, name, true, func(u *access.User) error { return l.Store.RevokeUser(ctx, u.ID) })
}

// Enable implements API.
func (l *Local) Enable(ctx context.Context, name string) (*UserInfo, error) {
	return l.modify(ctx, name, true, func(u *access.User) error { return l.Store.EnableUser(ctx, u.ID) })
}

// Rotate implements API.
func (l *Local) Rotate(ctx context.Context, name string) (*UserInfo, error) {
	return l.modify(ctx, name, true, func(u *access.User) error {
		if u.Revoked {
			return fmt.Errorf("user %s is revoked, so a new link would not work either; run `burrow user enable %s` first: %w", u.Name, u.Name, access.ErrInvalid)
		}
		_, err := l.Store.RotateUUID(ctx, u.ID)
		return err
	})
}

// ResetTraffic implements API.
func (l *Local) ResetTraffic(ctx context.Context, name string) (*UserInfo, error) {
	// The answer shows the stored (zeroed) bytes: the server's counters
	// still hold the old period's until its refresh, which Changed asks for.
	return l.modify(ctx, name, false, func(u *access.User) error {
		// A new period starts now. The store resets only for a start later
		// than the current one (so concurrent rollovers reset once); a user
		// created this very second gets a start one second later.
		start := l.now().UTC().Truncate(time.Second)
		if !start.After(u.PeriodStart) {
			start = u.PeriodStart.Add(time.Second)
		}
		return l.Store.ResetTraffic(ctx, u.ID, start)
	})
}

// modify applies f to the named user and returns the result, with live
// counters if live.
func (l *Local) modify(ctx context.Context, name string, live bool, f func(*access.User) error) (*UserInfo, error) {
	u, err := l.lookup(ctx, name)
	if err != nil {
		return nil, err
	}
	if err := f(u); err != nil {
		return nil, err
	}
	l.changed()
	if u, err = l.Store.UserByName(ctx, u.Name); err != nil {
		return nil, err
	}
	if !live {
		return l.info(u, liveView{}), nil
	}
	return l.info(u, l.live()), nil
}

// Stats implements API.
func (l *Local) Stats(ctx context.Context) (*Stats, error) {
	st := &Stats{Running: l.Counters != nil, Connected: map[string]int{}, Telemetry: l.telemetry()}
	if l.Counters != nil {
		st.Totals = l.Counters()
	}
	active := l.live().active
	if len(active) == 0 {
		return st, nil
	}
	users, err := l.usersAmong(ctx, active)
	if err != nil {
		return nil, err
	}
	for _, u := range users {
		if n := active[u.ID]; n > 0 {
			st.Connected[u.Name] = n
		}
	}
	return st, nil
}

// usersAmong returns the users whose ids are keys of ids: a page at a time
// from a store that pages (a fleet's hundred thousand users are not read
// to name the few online), else all of them.
func (l *Local) usersAmong(ctx context.Context, ids map[int64]int) ([]*access.User, error) {
	st, ok := l.Store.(userQuerier)
	if !ok {
		return l.Store.ListUsers(ctx)
	}
	q := access.UserQuery{Filter: access.FilterOnline, Now: l.now(), Limit: access.MaxPage}
	for id, n := range ids {
		if n > 0 {
			q.Online = append(q.Online, id)
		}
	}
	var out []*access.User
	for {
		page, total, err := st.QueryUsers(ctx, q)
		if err != nil {
			return nil, err
		}
		out = append(out, page...)
		q.Offset += len(page)
		if len(page) == 0 || q.Offset >= total {
			return out, nil
		}
	}
}

// countUsers counts the users: from the store's index when it pages.
func (l *Local) countUsers(ctx context.Context) (int, error) {
	if st, ok := l.Store.(userQuerier); ok {
		_, total, err := st.QueryUsers(ctx, access.UserQuery{Now: l.now(), Limit: 1})
		return total, err
	}
	users, err := l.Store.ListUsers(ctx)
	return len(users), err
}

// telemetry returns the telemetry totals, or nil without a server.
func (l *Local) telemetry() *TelemetryStats {
	if l.Telemetry == nil {
		return nil
	}
	t := l.Telemetry()
	ts := &TelemetryStats{Rejected: t.Rejected, Limited: t.Limited, Counts: make([]TelemetryCount, len(t.Counts))}
	for i, c := range t.Counts {
		ts.Counts[i] = TelemetryCount{Transport: c.Transport, Metric: c.Metric, Bucket: c.Bucket, Count: c.Count}
	}
	return ts
}

// Health implements API.
func (l *Local) Health(ctx context.Context) (*Health, error) {
	n, err := l.countUsers(ctx)
	if err != nil {
		return nil, fmt.Errorf("admin: health: user store: %w", err)
	}
	h := &Health{Status: "ok", Version: l.Version, Users: n}
	if !l.Started.IsZero() {
		h.UptimeSeconds = int64(l.now().Sub(l.Started) / time.Second)
	}
	return h, nil
}

// Snapshot returns the metrics of the running server; per-user series only
// when perUser (the operator opted in).
func (l *Local) Snapshot(ctx context.Context, perUser bool) (*metrics.Snapshot, error) {
	var c Counters
	if l.Counters != nil {
		c = l.Counters()
	}
	s := &metrics.Snapshot{Active: c.Active, Authenticated: c.Authenticated, Fallback: c.Fallback,
		Rejected: c.Rejected, EgressRefused: c.EgressRefused, BytesUp: c.BytesUp, BytesDown: c.BytesDown,
		RelayLinks: c.RelayLinks, RelayStreams: c.RelayStreams, RelayRefused: c.RelayRefused}
	if t := l.telemetry(); t != nil {
		s.Telemetry = &metrics.Telemetry{Rejected: t.Rejected, Counts: make([]metrics.TelemetryCount, len(t.Counts))}
		for i, c := range t.Counts {
			s.Telemetry.Counts[i] = metrics.TelemetryCount{Transport: c.Transport, Metric: c.Metric, Bucket: c.Bucket, Count: c.Count}
		}
	}
	if !perUser {
		return s, nil
	}
	users, err := l.Store.ListUsers(ctx)
	if err != nil {
		return nil, err
	}
	live := l.live()
	s.Users = make([]metrics.User, 0, len(users))
	for _, u := range users {
		mu := metrics.User{Name: u.Name, Up: u.BytesUp, Down: u.BytesDown, Connections: live.active[u.ID]}
		if t, ok := live.usage[u.ID]; ok {
			mu.Up, mu.Down = t.Up, t.Down
		}
		s.Users = append(s.Users, mu)
	}
	return s, nil
}

// userQuerier is a store that pages through users (access.SQLiteStore).
type userQuerier interface {
	QueryUsers(ctx context.Context, q access.UserQuery) ([]*access.User, int, error)
}

// dailySource is a store that keeps traffic per day (access.SQLiteStore).
type dailySource interface {
	DailyTraffic(ctx context.Context, userID int64, since string) ([]access.DayTraffic, error)
}

// PageUsers returns one page of the users q selects, as the API shows them,
// and how many it selects in all. q.Now and, for the "online" filter,
// q.Online are filled in here.
func (l *Local) PageUsers(ctx context.Context, q access.UserQuery) ([]UserInfo, int, error) {
	st, ok := l.Store.(userQuerier)
	if !ok {
		return nil, 0, errors.New("admin: this store cannot page through users")
	}
	live := l.live()
	q.Now = l.now()
	if q.Filter == access.FilterOnline {
		q.Online = make([]int64, 0, len(live.active))
		for id, n := range live.active {
			if n > 0 {
				q.Online = append(q.Online, id)
			}
		}
	}
	users, total, err := st.QueryUsers(ctx, q)
	if err != nil {
		return nil, 0, err
	}
	out := make([]UserInfo, len(users))
	for i, u := range users {
		out[i] = *l.info(u, live)
	}
	return out, total, nil
}

// DailyTraffic returns the named user's traffic per UTC day from day since
// on (days without traffic absent).
func (l *Local) DailyTraffic(ctx context.Context, name, since string) ([]access.DayTraffic, error) {
	st, ok := l.Store.(dailySource)
	if !ok {
		return nil, errors.New("admin: this store keeps no daily traffic")
	}
	u, err := l.lookup(ctx, name)
	if err != nil {
		return nil, err
	}
	return st.DailyTraffic(ctx, u.ID, since)
}
