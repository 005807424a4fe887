package control

import (
	"context"
	"net/http"
	"sync"
	"time"

	"github.com/burrow-vpn/burrow/internal/access"
)

// Loans of quota on a node (server.Leases). The control plane lends each
// node slices of a user's remaining quota (Store.LeaseQuota) so that the
// bytes used plus every node's outstanding loan never exceed the quota; a
// node moves only what it was lent. The node counts a loan as what was
// granted minus what its server counted since (Consumed), never from the
// control plane's figure, so a loan is never spent twice. What is flushed
// but not pushed yet still counts as lent at the control plane: it errs on
// the side of lending less.
const (
	// minSlice and maxSlice bound the slice asked for at once: a
	// sixteenth of the quota in between.
	minSlice = 1 << 20
	maxSlice = 256 << 20
	// loanMargin: a node stops spending a loan this long before the control
	// plane stops counting it (clocks run at different speeds, requests
	// take time).
	loanMargin = LeaseTTL / 10
	// loanIdle: a loan not spent from for this long goes back, so other
	// nodes may be lent it.
	loanIdle = 15 * time.Second
	// deniedFor: after the control plane said the user's quota is spent
	// fleet-wide, connections of the user are refused without asking again
	// for this long.
	deniedFor = 10 * time.Second
)

type loan struct {
	left     int64     // granted minus counted since
	expires  time.Time // local clock: stop spending then
	used     time.Time // when bytes were last counted against it
	quota    int64     // the user's quota, for the slice size
	inFlight bool      // a request for more is under way
	denied   time.Time // when the control plane last lent nothing
	grants   uint64    // how many requests were granted bytes
}

// Leases keeps a node's loans. It implements server.Leases; Consumed must
// see every AddTraffic of the node's server.
type Leases struct {
	f      *Follower
	poke   func() // the server rereads allowances
	wantCh chan int64

	mu    sync.Mutex
	loans map[int64]*loan // guarded by mu
}

// NewLeases returns the loan keeper of a node that follows f. poke is
// called when a loan grew in the background.
func NewLeases(f *Follower, poke func()) *Leases {
	return &Leases{f: f, poke: poke, wantCh: make(chan int64, 1024), loans: map[int64]*loan{}}
}

func sliceFor(quota int64) int64 { return min(max(quota/16, minSlice), maxSlice) }

// Allowance implements server.Leases.
func (l *Leases) Allowance(id int64) int64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	ln := l.loans[id]
	if ln == nil || !time.Now().Before(ln.expires) {
		return 0
	}
	return max(ln.left, 0)
}

// Noted tells the keeper each user's quota (from the server's reread), so
// it knows how much to ask for; users without a quota need no loan.
func (l *Leases) Noted(users []*access.User) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, u := range users {
		if ln := l.loans[u.ID]; ln != nil {
			ln.quota = u.Quota
		} else if u.Quota > 0 {
			l.loans[u.ID] = &loan{quota: u.Quota}
		}
	}
}

// Consumed counts bytes the server moved against the users' loans, and
// asks for more where less than half a slice is left.
func (l *Leases) Consumed(deltas map[int64]access.Traffic) {
	now := time.Now()
	var low []int64
	l.mu.Lock()
	for id, t := range deltas {
		ln := l.loans[id]
		if ln == nil {
			continue
		}
		ln.left -= t.Up + t.Down
		ln.used = now
		if ln.quota > 0 && ln.left < sliceFor(ln.quota)/2 {
			low = append(low, id)
		}
	}
	l.mu.Unlock()
	for _, id := range low {
		l.Want(id)
	}
}

// Want implements server.Leases.
func (l *Leases) Want(id int64) {
	select {
	case l.wantCh <- id:
	default: // full: the next reread asks again
	}
}

// Lease implements server.Leases: it asks for a slice now, and reports
// whether the loan grew (by this request or one under way already).
func (l *Leases) Lease(ctx context.Context, id int64) bool {
	l.mu.Lock()
	ln := l.loans[id]
	if ln == nil || ln.quota <= 0 {
		l.mu.Unlock()
		return false
	}
	before := ln.grants
	if ln.inFlight {
		l.mu.Unlock()
		return l.waitFlight(ctx, id, before)
	}
	if time.Since(ln.denied) < deniedFor {
		l.mu.Unlock()
		return false
	}
	ln.inFlight = true
	// A whole slice: left lags behind what the server moved since its
	// last flush, so it cannot say how much of the loan is really left.
	want := sliceFor(ln.quota)
	l.mu.Unlock()

	// What this node counted goes first: the control plane then lends
	// from what is really left.
	l.f.pushAll(ctx, 0)
	var got Lease
	err := l.f.call(ctx, http.MethodPost, pathLease, leaseRequest{User: id, Bytes: want}, &got)
	now := time.Now()
	l.mu.Lock()
	defer l.mu.Unlock()
	ln.inFlight = false
	if err != nil {
		l.f.log.Warn("could not borrow quota from the control plane", "err", err)
		return false
	}
	l.f.log.Debug("loan", "granted", got.Granted, "outstanding", got.Outstanding, "spent", got.Spent)
	if !now.Before(ln.expires) {
		ln.left = 0 // the control plane no longer counted the old loan either
	}
	ln.left += got.Granted
	ln.expires = now.Add(LeaseTTL - loanMargin)
	if ln.used.IsZero() {
		ln.used = now
	}
	if got.Granted == 0 {
		if got.Spent {
			ln.denied = now
		}
		return false
	}
	ln.grants++
	return true
}

// Lendable implements server.Leases.
func (l *Leases) Lendable(id int64) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	ln := l.loans[id]
	return ln != nil && ln.quota > 0 && time.Since(ln.denied) >= deniedFor
}

// waitFlight waits for another caller's request for the same user and
// reports whether the loan grew since grants was before.
func (l *Leases) waitFlight(ctx context.Context, id int64, before uint64) bool {
	t := time.NewTicker(20 * time.Millisecond)
	defer t.Stop()
	for {
		l.mu.Lock()
		ln := l.loans[id]
		done, grew := ln == nil || !ln.inFlight, ln != nil && ln.grants != before
		l.mu.Unlock()
		if done || grew {
			return grew
		}
		select {
		case <-ctx.Done():
			return false
		case <-t.C:
		}
	}
}

// Run serves background requests for more, renews loans in use before they
// expire and gives back idle ones, until ctx ends; then it gives back every
// loan it can.
func (l *Leases) Run(ctx context.Context) {
	t := time.NewTicker(loanIdle / 3)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			l.giveBack(context.WithoutCancel(ctx), func(*loan) bool { return true })
			return
		case id := <-l.wantCh:
			rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			if l.Lease(rctx, id) && l.poke != nil {
				l.poke()
			}
			cancel()
		case <-t.C:
			l.renew(ctx)
			now := time.Now()
			l.giveBack(ctx, func(ln *loan) bool { return now.Sub(ln.used) > loanIdle })
		}
	}
}

// renew asks again for loans in use that would expire within half their
// time, which also renews them.
func (l *Leases) renew(ctx context.Context) {
	now := time.Now()
	var ids []int64
	l.mu.Lock()
	for id, ln := range l.loans {
		if ln.left > 0 && ln.expires.Sub(now) < LeaseTTL/2 && now.Sub(ln.used) <= loanIdle {
			ids = append(ids, id)
		}
	}
	l.mu.Unlock()
	for _, id := range ids {
		rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		l.Lease(rctx, id)
		cancel()
	}
}

// giveBack returns the unspent part of loans that match, and forgets them.
func (l *Leases) giveBack(ctx context.Context, match func(*loan) bool) {
	now := time.Now()
	type back struct {
		id   int64
		left int64
	}
	var backs []back
	l.mu.Lock()
	for id, ln := range l.loans {
		if ln.left > 0 && now.Before(ln.expires) && !ln.inFlight && match(ln) {
			backs = append(backs, back{id, ln.left})
			ln.left, ln.expires = 0, time.Time{}
		}
	}
	l.mu.Unlock()
	for _, b := range backs {
		rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		l.f.call(rctx, http.MethodPost, pathLeaseReturn, leaseRequest{User: b.id, Bytes: b.left}, nil)
		cancel()
	}
}

// NodeUsers is a fleet exit's user source for its server: the replica, with
// each counted batch also spent from the loans.
type NodeUsers struct {
	*access.SQLiteStore
	Leases *Leases
}

// ListUsers reads the replica and tells the loan keeper the quotas.
func (n NodeUsers) ListUsers(ctx context.Context) ([]*access.User, error) {
	users, err := n.SQLiteStore.ListUsers(ctx)
	if err == nil {
		n.Leases.Noted(users)
	}
	return users, err
}

// AddTraffic counts traffic in the replica (queued for the control plane)
// and spends it from the loans.
func (n NodeUsers) AddTraffic(ctx context.Context, deltas map[int64]access.Traffic, day string) error {
	if err := n.SQLiteStore.AddTraffic(ctx, deltas, day); err != nil {
		return err
	}
	n.Leases.Consumed(deltas)
	return nil
}
