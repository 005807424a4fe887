package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/burrow-vpn/burrow/internal/access"
)

// UserSource is what the server needs of the user store.
type UserSource interface {
	ListUsers(ctx context.Context) ([]*access.User, error)
	AddTraffic(ctx context.Context, deltas map[int64]access.Traffic, day string) error
	ResetTraffic(ctx context.Context, id int64, periodStart time.Time) error
}

// ErrUnknownUser is returned by Acquire for a UUID no user has.
var ErrUnknownUser = errors.New("unknown user")

// Registry keeps the server's view of the users: an in-memory table
// refreshed from the store every second (so a revocation made by the CLI in
// another process takes effect within a second), the bytes counted since the
// last flush, and each user's live sessions so they can be cut.
//
// It keeps no record of destinations or client addresses.
type Registry struct {
	src UserSource
	log *slog.Logger
	now func() time.Time

	poke chan struct{} // Poke asks Run for a refresh now
	// refreshes counts the refreshes started and ended, so that PokeWait
	// can wait for one that began after a change.
	refreshes struct {
		mu            sync.Mutex
		started, done uint64
		ended         chan struct{} // closed and replaced when a refresh ends
	}
	leases Leases // set on a fleet node: the quota the control plane lent (SetLeases)
	// flushMu is held while counted bytes move from the sessions to the
	// store (Flush) and while allowances are read from the store or Leases,
	// so a read never sees bytes taken off a user's allowance and not yet
	// off the store's (or the loan's). Taken before mu.
	flushMu sync.Mutex

	mu     sync.Mutex
	byUUID map[[16]byte]*liveUser // guarded by mu
	byID   map[int64]*liveUser    // guarded by mu
}

type liveUser struct {
	id       int64                 // the user's; never changes
	user     access.User           // snapshot from the store; guarded by Registry.mu
	sessions map[*Session]struct{} // guarded by Registry.mu
	// allow is what budget was last set from: the snapshot's remaining quota
	// (unlimitedAllow without a quota). Guarded by Registry.mu.
	allow int64

	// budget is the bytes the user's sessions may still reserve: allow minus
	// the bytes counted since the last flush (up, down) minus what sessions
	// reserved and have not settled. Sessions reserve from it without a lock
	// (reserve); Refresh adds to it what a new snapshot changed.
	budget atomic.Int64
	// Bytes counted since the last successful flush.
	up, down atomic.Int64
	// seen is set when the user moved any byte since the last flush.
	seen atomic.Bool
}

// unlimitedAllow is the allowance of a user without a quota: more than any
// server will carry, so one budget serves users with and without a quota.
const unlimitedAllow = 1 << 62

// minGrant is the least a reservation is cut to while budget remains (see reserve).
const minGrant = 16 << 10

// reserve takes up to n bytes from the user's budget and returns how many (0
// when the budget is spent). A grant is also at most a 16th of the budget
// (and at least minGrant), so that near the end of a quota the chunks that
// streams hold while their data trickles in are small, and a busy stream
// still finds budget to reserve.
func (lu *liveUser) reserve(n int64) int64 {
	for {
		b := lu.budget.Load()
		if b <= 0 {
			return 0
		}
		g := min(n, b, max(b/16, minGrant))
		if lu.budget.CompareAndSwap(b, b-g) {
			return g
		}
	}
}

// allowance returns the bytes u may still move at now according to the snapshot.
func allowance(u *access.User, now time.Time) int64 {
	rem, limited := u.Remaining(now)
	if !limited {
		return unlimitedAllow
	}
	return rem
}

// setAllowLocked makes allow the user's allowance and moves the budget by
// the change, leaving the bytes counted and reserved since in place.
func (lu *liveUser) setAllowLocked(allow int64) {
	lu.budget.Add(allow - lu.allow)
	lu.allow = allow
}

// Leases is where a fleet node's quotas come from: the control plane lends
// each node slices of a user's remaining quota, so that the fleet together
// never moves more than the quota (internal/control). With Leases set, a
// user with a quota may move what Allowance says, not what the store's
// counters leave.
type Leases interface {
	// Allowance returns the bytes this node may still move for the user:
	// what was lent and not yet counted (AddTraffic), 0 once a loan expired.
	Allowance(id int64) int64
	// Lease asks the control plane for more now, until ctx ends, and
	// reports whether the user has any allowance after it. Concurrent
	// calls for one user share one request; a refusal is remembered for a
	// while.
	Lease(ctx context.Context, id int64) bool
	// Lendable reports whether asking again may help: the control plane
	// did not say the user's quota is spent.
	Lendable(id int64) bool
}

// leaseWait bounds how long a connection of a user with no loan left waits
// for the control plane to lend more; leaseRetry is how often it asks.
const (
	leaseWait  = 3 * time.Second
	leaseRetry = 250 * time.Millisecond
)

// SetLeases makes l decide the allowance of users with a quota. Call it
// before Refresh.
func (r *Registry) SetLeases(l Leases) { r.leases = l }

// allowanceOf is allowance, or the loan's on a fleet node.
func (r *Registry) allowanceOf(u *access.User, now time.Time) int64 {
	if r.leases == nil || u.Quota <= 0 {
		return allowance(u, now)
	}
	if u.Usable(now) != nil {
		return 0
	}
	return r.leases.Allowance(u.ID)
}

// NewRegistry returns a registry over src. Call Refresh once before serving
// and Run to keep it fresh.
func NewRegistry(src UserSource, log *slog.Logger) *Registry {
	return &Registry{src: src, log: log, now: time.Now, poke: make(chan struct{}, 1), byUUID: map[[16]byte]*liveUser{}, byID: map[int64]*liveUser{}}
}

// Session is one proxied connection of one user. Its counters feed the
// registry and enforce the user's quota.
type Session struct {
	r  *Registry
	lu *liveUser

	closeOnce sync.Once
	cut       chan struct{} // closed when the session must end
	closers   []func()      // guarded by r.mu
}

// Acquire starts a session for the user with uuid, or returns why not
// (ErrUnknownUser, access.ErrRevoked, access.ErrExpired, access.ErrQuotaExceeded).
// On a fleet node, a user whose loan is spent waits up to leaseWait for
// the control plane to lend more.
func (r *Registry) Acquire(uuid [16]byte) (*Session, error) {
	s, lu, err := r.acquire(uuid)
	if errors.Is(err, errLoanSpent) && r.borrow(lu) {
		s, _, err = r.acquire(uuid)
	}
	if errors.Is(err, errLoanSpent) {
		err = access.ErrQuotaExceeded
	}
	return s, err
}

// borrow asks the control plane for more of lu's quota (a fleet node whose
// loan is spent), waiting up to leaseWait, and reports whether the budget
// grew. Concurrent callers for one user share one request.
func (r *Registry) borrow(lu *liveUser) bool {
	ctx, cancel := context.WithTimeout(context.Background(), leaseWait)
	defer cancel()
	// Count what moved first, so the control plane sees this node's loan
	// as spent as it is, not as lent 5 s ago.
	if err := r.Flush(ctx); err != nil {
		r.log.Warn("flush traffic", "err", err)
	}
	more := r.leases.Lease(ctx, lu.id)
	// Nothing lent: what is left of the quota may sit in other nodes'
	// loans, which shrink as they push their counts; ask again a few
	// times while the wait lasts.
	for !more && r.leases.Lendable(lu.id) {
		select {
		case <-ctx.Done():
			return false
		case <-time.After(leaseRetry):
		}
		more = r.leases.Lease(ctx, lu.id)
	}
	if more {
		r.flushMu.Lock()
		r.mu.Lock()
		lu.setAllowLocked(r.leases.Allowance(lu.id))
		r.mu.Unlock()
		r.flushMu.Unlock()
	}
	return more
}

// errLoanSpent: the user may connect, but this node's loan of the user's
// quota is spent (fleet nodes only).
var errLoanSpent = fmt.Errorf("%w on this node", access.ErrQuotaExceeded)

func (r *Registry) acquire(uuid [16]byte) (*Session, *liveUser, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	lu := r.byUUID[uuid]
	if lu == nil {
		return nil, nil, ErrUnknownUser
	}
	if err := r.usableLocked(lu); err != nil {
		return nil, lu, err
	}
	s := &Session{r: r, lu: lu, cut: make(chan struct{})}
	lu.sessions[s] = struct{}{}
	lu.seen.Store(true)
	return s, lu, nil
}

func (r *Registry) usableLocked(lu *liveUser) error {
	if err := lu.user.Usable(r.now()); err != nil {
		return err
	}
	if lu.allow-lu.up.Load()-lu.down.Load() <= 0 {
		if r.leases != nil && lu.user.Quota > 0 {
			return errLoanSpent
		}
		return access.ErrQuotaExceeded
	}
	return nil
}

// OnCut registers f to run when the session is cut (revocation, expiry,
// quota, shutdown) or closed.
func (s *Session) OnCut(f func()) {
	s.r.mu.Lock()
	s.closers = append(s.closers, f)
	s.r.mu.Unlock()
	select {
	case <-s.cut:
		f()
	default:
	}
}

// Done is closed when the session has been cut or closed.
func (s *Session) Done() <-chan struct{} { return s.cut }

// Close ends the session and runs its cut hooks once.
func (s *Session) Close() {
	s.closeOnce.Do(func() {
		s.r.mu.Lock()
		delete(s.lu.sessions, s)
		closers := s.closers
		s.closers = nil
		s.r.mu.Unlock()
		close(s.cut)
		for _, f := range closers {
			f()
		}
	})
}

// UserName returns the session's user's name (the registry refreshes the
// user's record under its lock while sessions run).
func (s *Session) UserName() string {
	s.r.mu.Lock()
	defer s.r.mu.Unlock()
	return s.lu.user.Name
}

// Up and Down are the counters for client→server and server→client bytes.
func (s *Session) Up() *Direction   { return &Direction{s: s, lu: s.lu, n: &s.lu.up} }
func (s *Session) Down() *Direction { return &Direction{s: s, lu: s.lu, n: &s.lu.down} }

// Direction counts one direction of a session and admits bytes against the
// user's remaining quota, one budget for all the user's sessions and both
// directions. It implements meter.Counter; it takes no lock.
type Direction struct {
	s  *Session
	lu *liveUser
	n  *atomic.Int64 // lu.up or lu.down
}

// Reserve grants up to n bytes from the user's budget; 0 once the session is
// cut or the budget is spent. A spent budget asks the registry to refresh
// now, which cuts the user's other sessions (Refresh: over quota).
func (d *Direction) Reserve(n int64) int64 {
	select {
	case <-d.s.cut:
		return 0
	default:
	}
	g := d.lu.reserve(n)
	if g == 0 && d.s.r.leases != nil {
		if !d.s.r.borrow(d.lu) {
			// Nothing more to borrow: the session ends, as over quota.
			d.s.Close()
			return 0
		}
		g = d.lu.reserve(n)
	}
	if g == 0 {
		d.s.r.Poke()
	}
	return g
}

// Settle counts moved bytes and gives the rest of reserved back to the budget.
func (d *Direction) Settle(reserved, moved int64) {
	if reserved != moved {
		d.lu.budget.Add(reserved - moved)
	}
	if moved > 0 {
		d.n.Add(moved)
		if !d.lu.seen.Load() {
			d.lu.seen.Store(true)
		}
	}
}

// Refresh reloads users from the store and cuts the sessions of users who
// are gone, revoked, expired, over quota or whose UUID was rotated.
func (r *Registry) Refresh(ctx context.Context) error {
	r.flushMu.Lock()
	defer r.flushMu.Unlock()
	defer r.refreshEnded(r.refreshStarted())
	users, err := r.src.ListUsers(ctx)
	if err != nil {
		return err
	}
	now := r.now()
	for _, u := range users {
		if start, rolled := u.RolledPeriod(now); rolled {
			if err := r.src.ResetTraffic(ctx, u.ID, start); err != nil {
				r.log.Warn("reset traffic for new period", "err", err)
			} else {
				u.BytesUp, u.BytesDown, u.PeriodStart = 0, 0, start
			}
		}
	}
	var cut []*Session
	r.mu.Lock()
	byUUID := make(map[[16]byte]*liveUser, len(users))
	byID := make(map[int64]*liveUser, len(users))
	for _, u := range users {
		lu := r.byID[u.ID]
		if lu == nil {
			lu = &liveUser{id: u.ID, sessions: map[*Session]struct{}{}}
			lu.allow = r.allowanceOf(u, now)
			lu.budget.Store(lu.allow)
		} else if lu.user.UUID != u.UUID || (u.BytesUp+u.BytesDown < lu.user.BytesUp+lu.user.BytesDown) {
			// Rotated: the old link dies. Traffic reset: drop nothing, keep counting.
			if lu.user.UUID != u.UUID {
				for s := range lu.sessions {
					cut = append(cut, s)
				}
			}
		}
		lu.user = *u
		// A quota raised or traffic reset in the store refills the live budget.
		lu.setAllowLocked(r.allowanceOf(u, now))
		byUUID[u.UUID] = lu
		byID[u.ID] = lu
		// A fleet node's spent loan cuts nothing while more may be lent:
		// the next byte borrows.
		if err := r.usableLocked(lu); err != nil && (err != errLoanSpent || !r.leases.Lendable(lu.id)) {
			for s := range lu.sessions {
				cut = append(cut, s)
			}
		}
	}
	for id, lu := range r.byID {
		if byID[id] == nil {
			for s := range lu.sessions {
				cut = append(cut, s)
			}
			// Keep counting what it moved until the next flush.
			byID[id] = lu
		}
	}
	r.byUUID, r.byID = byUUID, byID
	r.mu.Unlock()
	for _, s := range cut {
		s.Close()
	}
	return nil
}

// Flush writes the counted bytes to the store. On failure the counts stay
// pending and are retried at the next flush.
func (r *Registry) Flush(ctx context.Context) error {
	r.flushMu.Lock()
	defer r.flushMu.Unlock()
	r.mu.Lock()
	deltas := map[int64]access.Traffic{}
	lus := map[int64]*liveUser{}
	for id, lu := range r.byID {
		up, down := lu.up.Swap(0), lu.down.Swap(0)
		seen := lu.seen.Swap(false)
		if up == 0 && down == 0 && !seen {
			continue
		}
		deltas[id] = access.Traffic{Up: up, Down: down}
		lus[id] = lu
		// Fold into the snapshot so quota checks stay right until the next refresh.
		lu.user.BytesUp += up
		lu.user.BytesDown += down
		lu.allow -= up + down // the budget already had them taken
	}
	r.mu.Unlock()
	if len(deltas) == 0 {
		return nil
	}
	day := r.now().UTC().Format(time.DateOnly)
	if err := r.src.AddTraffic(ctx, deltas, day); err != nil {
		r.mu.Lock()
		for id, d := range deltas {
			lu := lus[id]
			lu.user.BytesUp -= d.Up
			lu.user.BytesDown -= d.Down
			lu.allow += d.Up + d.Down
			lu.up.Add(d.Up)
			lu.down.Add(d.Down)
			lu.seen.Store(true)
		}
		r.mu.Unlock()
		return err
	}
	return nil
}

// Active returns the number of live sessions per user id.
func (r *Registry) Active() map[int64]int {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make(map[int64]int, len(r.byID))
	for id, lu := range r.byID {
		if n := len(lu.sessions); n > 0 {
			out[id] = n
		}
	}
	return out
}

// Usage returns each user's bytes in the current period, including those
// counted but not yet flushed to the store (for metrics).
func (r *Registry) Usage() map[int64]access.Traffic {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make(map[int64]access.Traffic, len(r.byID))
	for id, lu := range r.byID {
		out[id] = access.Traffic{Up: lu.user.BytesUp + lu.up.Load(), Down: lu.user.BytesDown + lu.down.Load()}
	}
	return out
}

// Poke asks Run to refresh now rather than at its next tick: the admin API
// calls it after changing a user, so a revocation acts at once. It never
// blocks.
func (r *Registry) Poke() {
	select {
	case r.poke <- struct{}{}:
	default:
	}
}

// PokeWait asks Run for a refresh now and waits until one that started
// after the call has ended (successful or not), or ctx ends: a change made
// in the store before the call is then in force. Callers at the same moment
// share one refresh.
func (r *Registry) PokeWait(ctx context.Context) error {
	rf := &r.refreshes
	rf.mu.Lock()
	target := rf.started + 1
	rf.mu.Unlock()
	r.Poke()
	for {
		rf.mu.Lock()
		if rf.done >= target {
			rf.mu.Unlock()
			return nil
		}
		if rf.ended == nil {
			rf.ended = make(chan struct{})
		}
		ended := rf.ended
		rf.mu.Unlock()
		select {
		case <-ended:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// refreshStarted numbers a refresh that is starting; flushMu is held, so
// refreshes are numbered in the order they read the store.
func (r *Registry) refreshStarted() uint64 {
	rf := &r.refreshes
	rf.mu.Lock()
	defer rf.mu.Unlock()
	rf.started++
	return rf.started
}

// refreshEnded records that refresh g ended and wakes PokeWait.
func (r *Registry) refreshEnded(g uint64) {
	rf := &r.refreshes
	rf.mu.Lock()
	defer rf.mu.Unlock()
	rf.done = max(rf.done, g)
	if rf.ended != nil {
		close(rf.ended)
		rf.ended = nil
	}
}

// Run refreshes every refresh interval (and when poked) and flushes every flush interval
// until ctx ends, then flushes a last time.
func (r *Registry) Run(ctx context.Context, refresh, flush time.Duration) {
	rt := time.NewTicker(refresh)
	ft := time.NewTicker(flush)
	defer rt.Stop()
	defer ft.Stop()
	for {
		select {
		case <-ctx.Done():
			fctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			if err := r.Flush(fctx); err != nil {
				r.log.Error("final traffic flush failed", "err", err)
			}
			cancel()
			return
		case <-rt.C:
			if err := r.Refresh(ctx); err != nil && ctx.Err() == nil {
				r.log.Warn("refresh users", "err", err)
			}
		case <-r.poke:
			if err := r.Refresh(ctx); err != nil && ctx.Err() == nil {
				r.log.Warn("refresh users", "err", err)
			}
		case <-ft.C:
			if err := r.Flush(ctx); err != nil && ctx.Err() == nil {
				r.log.Warn("flush traffic", "err", err)
			}
		}
	}
}

// CutAll ends every live session (shutdown).
func (r *Registry) CutAll() {
	r.mu.Lock()
	var all []*Session
	for _, lu := range r.byID {
		for s := range lu.sessions {
			all = append(all, s)
		}
	}
	r.mu.Unlock()
	for _, s := range all {
		s.Close()
	}
}
