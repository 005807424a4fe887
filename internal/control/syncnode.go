package control

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/burrow-vpn/burrow/internal/access"
	"github.com/burrow-vpn/burrow/internal/camo"
)

// Replica is what a node keeps of the control plane's state: access's
// SQLite store in replica mode (access/replica.go).
type Replica interface {
	ReplicaVersion(ctx context.Context) (int64, error)
	ReplaceUsers(ctx context.Context, version int64, users []*access.User) error
	ApplyUsers(ctx context.Context, from, to int64, users []*access.User) error
	PendingTraffic(ctx context.Context, max int) ([]access.TrafficBatch, error)
	AckTraffic(ctx context.Context, seq uint64) error
}

// FollowerConfig configures a node's side of the sync protocol.
type FollowerConfig struct {
	// Addr is the control plane's HOST:PORT.
	Addr string
	// Camo is the REALITY client configuration for the control plane's
	// endpoint: its server name and public key, and this node's short ID.
	Camo camo.ClientConfig
	// Key is the node's identity key (from its join token).
	Key ed25519.PrivateKey
	// Replica is where the node keeps users; nil for a relay.
	Replica Replica
	// Endpoint is registered with the control plane whenever the node
	// connects: where clients reach it.
	Endpoint Endpoint
	// Status, if set, is called for each status report.
	Status func() NodeStatus
	// Applied, if set, is called after changes were applied to the replica
	// (the server then rereads its users at once).
	Applied func()
	// Peers, if set, is given the node's peers (peers.go) whenever the
	// control plane sends them: at a snapshot, when relay paths change or a
	// node is revoked, and at least every peersEvery otherwise (endpoints
	// and rekeys are not in the change log).
	Peers func(*Peers)
	// Dial opens the TCP connection to Addr; default a net.Dialer.
	Dial   func(ctx context.Context, network, addr string) (net.Conn, error)
	Logger *slog.Logger
	// PushEvery is how often queued traffic is sent (default 2 s); StatusEvery
	// how often the node reports its status (default 10 s).
	PushEvery, StatusEvery time.Duration
}

// peersEvery is how old a node's peers may grow before it asks again.
const peersEvery = 20 * time.Second

// Follower keeps a node in step with the control plane: it applies the
// change log to the replica, sends the traffic the node counted and its
// status, and keeps trying, quietly, while the control plane is away; the
// node serves from its replica meanwhile.
type Follower struct {
	cfg    FollowerConfig
	client *http.Client
	log    *slog.Logger

	mu      sync.Mutex
	version int64     // the replica's version; guarded by mu
	down    bool      // the control plane was unreachable last time; guarded by mu
	peersAt time.Time // when peers last came; only syncLoop uses it
	synced  chan struct{}
	once    sync.Once
}

// NewFollower checks cfg and returns a Follower.
func NewFollower(cfg FollowerConfig) (*Follower, error) {
	if cfg.Addr == "" || len(cfg.Key) != ed25519.PrivateKeySize {
		return nil, errors.New("control: follower: no control address or identity key")
	}
	if cfg.Dial == nil {
		var d net.Dialer
		cfg.Dial = d.DialContext
	}
	if cfg.PushEvery <= 0 {
		cfg.PushEvery = 2 * time.Second
	}
	if cfg.StatusEvery <= 0 {
		cfg.StatusEvery = 10 * time.Second
	}
	f := &Follower{cfg: cfg, log: cfg.Logger, synced: make(chan struct{})}
	if f.log == nil {
		f.log = slog.New(slog.DiscardHandler)
	}
	tr := &http.Transport{
		DialTLSContext:        f.dial,
		MaxIdleConnsPerHost:   2,
		IdleConnTimeout:       maxWait,
		ResponseHeaderTimeout: maxWait + 15*time.Second,
		DisableCompression:    true,
	}
	f.client = &http.Client{Transport: tr}
	return f, nil
}

// dial opens a REALITY connection to the control plane.
func (f *Follower) dial(ctx context.Context, _, _ string) (net.Conn, error) {
	c, err := f.cfg.Dial(ctx, "tcp", f.cfg.Addr)
	if err != nil {
		return nil, err
	}
	return camo.Client(ctx, c, f.cfg.Camo)
}

// Synced is closed once the replica holds a state of the control plane's
// (at start, if it already did).
func (f *Follower) Synced() <-chan struct{} { return f.synced }

// Version returns the version of the change log the replica holds.
func (f *Follower) Version() int64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.version
}

// Run follows the control plane until ctx ends.
func (f *Follower) Run(ctx context.Context) error {
	if f.cfg.Replica != nil {
		v, err := f.cfg.Replica.ReplicaVersion(ctx)
		if err != nil {
			return err
		}
		f.setVersion(v)
		if v > 0 {
			f.once.Do(func() { close(f.synced) })
		}
	}
	var wg sync.WaitGroup
	wg.Add(3)
	go func() { defer wg.Done(); f.syncLoop(ctx) }()
	go func() { defer wg.Done(); f.pushLoop(ctx) }()
	go func() { defer wg.Done(); f.statusLoop(ctx) }()
	wg.Wait()
	f.client.CloseIdleConnections()
	return nil
}

func (f *Follower) setVersion(v int64) {
	f.mu.Lock()
	f.version = v
	f.mu.Unlock()
}

// reachable logs the control plane's going away and coming back, once each.
func (f *Follower) reachable(err error) {
	f.mu.Lock()
	was := f.down
	f.down = err != nil
	f.mu.Unlock()
	switch {
	case err != nil && !was:
		if errors.Is(err, camo.ErrNotReality) {
			f.log.Warn("control plane refused this node (revoked, or a new key?); serving from the replica", "err", err)
		} else {
			f.log.Warn("control plane unreachable; serving from the replica", "err", err)
		}
	case err == nil && was:
		f.log.Info("control plane reachable again")
	}
}

// backoff waits before a retry: d doubles up to 10 s.
func backoff(ctx context.Context, d *time.Duration) bool {
	*d = min(max(2**d, 250*time.Millisecond), 10*time.Second)
	select {
	case <-ctx.Done():
		return false
	case <-time.After(*d):
		return true
	}
}

func (f *Follower) syncLoop(ctx context.Context) {
	var wait time.Duration
	registered := false
	for ctx.Err() == nil {
		if !registered {
			if err := f.call(ctx, http.MethodPost, pathRegister, f.cfg.Endpoint, nil); err != nil {
				if ctx.Err() != nil {
					return
				}
				f.reachable(err)
				backoff(ctx, &wait)
				continue
			}
			registered = true
		}
		err := f.syncOnce(ctx)
		if ctx.Err() != nil {
			return
		}
		f.reachable(err)
		if err != nil {
			if ctx.Err() == nil {
				f.log.Debug("sync failed", "err", err)
			}
			if errors.Is(err, camo.ErrNotReality) {
				registered = false
			}
			backoff(ctx, &wait)
			continue
		}
		wait = 0
	}
}

// syncOnce asks for what changed after the replica's version (waiting for
// it) and applies it.
func (f *Follower) syncOnce(ctx context.Context) error {
	v := f.Version()
	wait := int(maxWait / time.Second)
	target := pathSync + "?after=" + strconv.FormatInt(v, 10) + "&wait=" + strconv.Itoa(wait)
	if f.cfg.Peers != nil && time.Since(f.peersAt) > peersEvery {
		target += "&peers=1"
	}
	var ans syncAnswer
	if err := f.call(ctx, http.MethodGet, target, nil, &ans); err != nil {
		return err
	}
	if ans.Peers != nil && f.cfg.Peers != nil {
		ps, err := ans.Peers.peers()
		if err != nil {
			return fmt.Errorf("control plane sent bad peers: %w", err)
		}
		f.peersAt = time.Now()
		f.cfg.Peers(ps)
	}
	rep := f.cfg.Replica
	if ans.Snapshot {
		if rep != nil {
			users, err := wireUsers(ans.Users)
			if err != nil {
				return err
			}
			if err := rep.ReplaceUsers(ctx, ans.Version, users); err != nil {
				return err
			}
		}
		f.log.Info("replica loaded from the control plane", "version", ans.Version, "users", len(ans.Users))
	} else if ans.Version > v {
		if rep != nil {
			if err := f.apply(ctx, &ans); errors.Is(err, access.ErrReplicaGap) {
				f.setVersion(0) // start over from a snapshot
				return nil
			} else if err != nil {
				return err
			}
		}
	} else {
		f.once.Do(func() { close(f.synced) }) // up to date
		return nil                            // nothing new in the wait
	}
	f.setVersion(ans.Version)
	f.once.Do(func() { close(f.synced) })
	if f.cfg.Applied != nil {
		f.cfg.Applied()
	}
	return nil
}

// apply writes a batch of changes to the replica: the last state of each
// user changed.
func (f *Follower) apply(ctx context.Context, ans *syncAnswer) error {
	last := map[int64]wireUser{}
	var order []int64
	for _, ch := range ans.Changes {
		if ch.Kind != ChangeUser || ch.User == nil {
			continue
		}
		if _, ok := last[ch.User.ID]; !ok {
			order = append(order, ch.User.ID)
		}
		last[ch.User.ID] = *ch.User
	}
	ws := make([]wireUser, len(order))
	for i, id := range order {
		ws[i] = last[id]
	}
	users, err := wireUsers(ws)
	if err != nil {
		return err
	}
	return f.cfg.Replica.ApplyUsers(ctx, ans.From, ans.Version, users)
}

func wireUsers(ws []wireUser) ([]*access.User, error) {
	users := make([]*access.User, len(ws))
	for i, w := range ws {
		u, err := w.user()
		if err != nil {
			return nil, fmt.Errorf("control plane sent a bad user: %w", err)
		}
		users[i] = u
	}
	return users, nil
}

// pushLoop sends the traffic batches the replica queued, oldest first, and
// forgets each the control plane has taken (counted now or before).
func (f *Follower) pushLoop(ctx context.Context) {
	if f.cfg.Replica == nil {
		return
	}
	t := time.NewTicker(f.cfg.PushEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			f.pushAll(context.WithoutCancel(ctx), 5*time.Second) // what the last flush queued
			return
		case <-t.C:
			f.pushAll(ctx, 0)
		}
	}
}

func (f *Follower) pushAll(ctx context.Context, limit time.Duration) {
	if limit > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, limit)
		defer cancel()
	}
	for {
		batches, err := f.cfg.Replica.PendingTraffic(ctx, 50)
		if err != nil || len(batches) == 0 {
			return
		}
		for _, b := range batches {
			push := trafficPush{Seq: b.Seq, Day: b.Day, Deltas: make(map[string][2]int64, len(b.Deltas))}
			for id, t := range b.Deltas {
				push.Deltas[strconv.FormatInt(id, 10)] = [2]int64{t.Up, t.Down}
			}
			if err := f.call(ctx, http.MethodPost, pathTraffic, push, nil); err != nil {
				f.log.Debug("traffic push failed; kept for later", "err", err)
				return
			}
			if err := f.cfg.Replica.AckTraffic(ctx, b.Seq); err != nil {
				f.log.Warn("cannot forget a pushed traffic batch", "err", err)
				return
			}
		}
	}
}

func (f *Follower) statusLoop(ctx context.Context) {
	if f.cfg.Status == nil {
		return
	}
	t := time.NewTicker(f.cfg.StatusEvery)
	defer t.Stop()
	refused := "" // the last refusal warned about
	for {
		st := f.cfg.Status()
		st.AppliedVersion = f.Version()
		err := f.call(ctx, http.MethodPost, pathStatus, st, nil)
		var pe *planeError
		switch {
		case err == nil:
			refused = ""
		case ctx.Err() != nil:
		case errors.As(err, &pe) && pe.code/100 == 4 && pe.text != refused:
			// The panel then shows this node as not reporting: say why.
			refused = pe.text
			f.log.Warn("the control plane refused this node's status report", "err", err)
		default:
			f.log.Debug("status report failed", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// call sends one signed request; in is sent as JSON (if not nil), the answer
// decoded into out (if not nil).
// planeError is an answer of the control plane other than 2xx.
type planeError struct {
	code int
	text string
}

func (e *planeError) Error() string { return e.text }

func (f *Follower) call(ctx context.Context, method, target string, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, "https://control"+target, body)
	if err != nil {
		return err
	}
	req.Header.Set(headerAuth, signRequest(f.cfg.Key, method, target, time.Now()))
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := f.client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return &planeError{code: resp.StatusCode, text: fmt.Sprintf("control plane: %s %s: %s: %s", method, target, resp.Status, bytes.TrimSpace(msg))}
	}
	if out == nil {
		io.Copy(io.Discard, resp.Body)
		return nil
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<30)).Decode(out); err != nil {
		return fmt.Errorf("control plane: %s: %w", target, err)
	}
	return nil
}
