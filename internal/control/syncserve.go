package control

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
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
	"github.com/xtls/reality"
)

// PlaneConfig configures the control plane's node endpoint.
type PlaneConfig struct {
	Store Store
	// Camo is the camouflaged endpoint's REALITY configuration: key, cover,
	// server names. Its short IDs are the nodes' (leave ShortIDs and
	// MoreShortIDs unset).
	Camo   camo.ServerConfig
	Logger *slog.Logger
	// Identity is the control plane's identity key (control.json's
	// identity_key). Relays' credentials at their exits are derived from it
	// (peers.go); without it nodes are sent no peers.
	Identity ed25519.PrivateKey
	// NodeRefresh is how often the set of nodes is reread, so a node created
	// by another process can connect. Default one second.
	NodeRefresh time.Duration
}

// Plane serves nodes: the sync protocol (syncwire.go) behind a REALITY
// endpoint that shows anyone else the cover site.
type Plane struct {
	store   Store
	camo    *camo.Server
	log     *slog.Logger
	refresh time.Duration
	stats   planeStats
	ident   ed25519.PrivateKey
	tail    *changeTail   // the change log's newest entries (synctail.go)
	recheck time.Duration // how often a quiet log follower rereads the head

	mu      sync.Mutex
	byShort map[[8]byte]*Node            // live nodes by short ID; guarded by mu
	conns   map[int64]map[*nodeConn]bool // each node's open connections; guarded by mu
	online  map[int64]onlineReport       // each exit's users online, last reported; guarded by mu
}

// onlineReport is the users an exit last said were online (id and
// connections), and when.
type onlineReport struct {
	users [][2]int64
	at    time.Time
}

// OnlineFresh is how long an exit's report of who is online counts: three
// of its status reports (every 10 s), so one lost report changes nothing
// and a node that stopped reporting drops out.
const OnlineFresh = 35 * time.Second

type nodeKey struct{}

// NewPlane checks cfg and returns a Plane.
func NewPlane(cfg PlaneConfig) (*Plane, error) {
	if cfg.Store == nil {
		return nil, errors.New("control: plane: no store")
	}
	p := &Plane{store: cfg.Store, log: cfg.Logger, refresh: cfg.NodeRefresh, ident: cfg.Identity,
		tail: newChangeTail(tailEntries, tailBytes), recheck: tailRecheck,
		byShort: map[[8]byte]*Node{}, conns: map[int64]map[*nodeConn]bool{}, online: map[int64]onlineReport{}}
	if p.log == nil {
		p.log = slog.New(slog.DiscardHandler)
	}
	if p.refresh <= 0 {
		p.refresh = time.Second
	}
	cc := cfg.Camo
	// camo wants a fixed short ID; one nobody holds serves, and the nodes'
	// come through MoreShortIDs.
	var none [8]byte
	rand.Read(none[:])
	cc.ShortIDs = [][]byte{none[:]}
	cc.MoreShortIDs = p.knownShortID
	if cc.Logger == nil {
		cc.Logger = p.log
	}
	var err error
	if p.camo, err = camo.NewServer(cc); err != nil {
		return nil, fmt.Errorf("control: plane: %w", err)
	}
	return p, nil
}

func (p *Plane) knownShortID(id [8]byte) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.byShort[id] != nil
}

// Serve accepts nodes (and probers) on ln until ctx ends.
func (p *Plane) Serve(ctx context.Context, ln net.Listener) error {
	if err := p.loadNodes(ctx); err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); p.watchNodes(ctx) }()
	go func() { defer wg.Done(); p.watchChanges(ctx) }()
	defer wg.Wait()

	authed := newConnListener(ln.Addr())
	hs := &http.Server{
		Handler:           p.routes(),
		ReadHeaderTimeout: 30 * time.Second,
		IdleTimeout:       2 * maxWait,
		ErrorLog:          slog.NewLogLogger(p.log.Handler(), slog.LevelDebug),
		ConnContext: func(ctx context.Context, c net.Conn) context.Context {
			return context.WithValue(ctx, nodeKey{}, c.(*nodeConn).node)
		},
		ConnState: func(c net.Conn, st http.ConnState) {
			if st == http.StateClosed || st == http.StateHijacked {
				p.forget(c.(*nodeConn))
			}
		},
	}
	go hs.Serve(authed)
	defer hs.Close()
	stop := context.AfterFunc(ctx, func() { ln.Close() })
	defer stop()
	for {
		c, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				time.Sleep(50 * time.Millisecond)
				continue
			}
			return fmt.Errorf("control: accept: %w", err)
		}
		go p.handshake(ctx, c, authed)
	}
}

// handshake authenticates one connection: a node's goes to the HTTP server,
// anyone else's to the cover.
func (p *Plane) handshake(ctx context.Context, c net.Conn, authed *connListener) {
	tconn, err := p.camo.Handshake(ctx, c)
	if err != nil {
		return // the cover answered it (or could not be reached)
	}
	rc, ok := tconn.(*reality.Conn)
	var n *Node
	if ok {
		p.mu.Lock()
		n = p.byShort[rc.ClientShortId]
		p.mu.Unlock()
	}
	if n == nil {
		tconn.Close() // revoked between the handshake's check and now
		return
	}
	nc := &nodeConn{Conn: tconn, node: n}
	p.mu.Lock()
	if p.conns[n.ID] == nil {
		p.conns[n.ID] = map[*nodeConn]bool{}
	}
	p.conns[n.ID][nc] = true
	p.mu.Unlock()
	if !authed.push(ctx, nc) {
		nc.Close()
		p.forget(nc)
	}
}

func (p *Plane) forget(nc *nodeConn) {
	p.mu.Lock()
	delete(p.conns[nc.node.ID], nc)
	p.mu.Unlock()
}

// loadNodes rereads the nodes. The connections of a node revoked or given
// new keys since it connected are cut.
func (p *Plane) loadNodes(ctx context.Context) error {
	nodes, err := p.store.ListNodes(ctx)
	if err != nil {
		return fmt.Errorf("control: list nodes: %w", err)
	}
	live := make(map[[8]byte]*Node, len(nodes))
	byID := make(map[int64]*Node, len(nodes))
	for _, n := range nodes {
		if !n.Revoked {
			live[n.ShortID] = n
			byID[n.ID] = n
		}
	}
	p.mu.Lock()
	p.byShort = live
	for id := range p.online {
		if byID[id] == nil {
			delete(p.online, id) // revoked: its users are no longer online through it
		}
	}
	var cut []*nodeConn
	for id, cs := range p.conns {
		for c := range cs {
			if n := byID[id]; n == nil || n.ShortID != c.node.ShortID || !n.PublicKey.Equal(c.node.PublicKey) {
				cut = append(cut, c)
				delete(cs, c)
			}
		}
	}
	p.mu.Unlock()
	for _, c := range cut {
		p.log.Info("control: cut a revoked node", "node", c.node.Name)
		c.Close()
	}
	return nil
}

func (p *Plane) watchNodes(ctx context.Context) {
	t := time.NewTicker(p.refresh)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if err := p.loadNodes(ctx); err != nil && ctx.Err() == nil {
				p.log.Warn("control: cannot reread nodes", "err", err)
			}
		}
	}
}

// nodeConn is an authenticated connection and the node it belongs to.
type nodeConn struct {
	net.Conn
	node *Node
}

// connListener hands authenticated connections to an http.Server.
type connListener struct {
	addr   net.Addr
	ch     chan net.Conn
	closed chan struct{}
	once   sync.Once
}

func newConnListener(addr net.Addr) *connListener {
	return &connListener{addr: addr, ch: make(chan net.Conn), closed: make(chan struct{})}
}

func (l *connListener) push(ctx context.Context, c net.Conn) bool {
	select {
	case l.ch <- c:
		return true
	case <-l.closed:
	case <-ctx.Done():
	}
	return false
}

func (l *connListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.ch:
		return c, nil
	case <-l.closed:
		return nil, net.ErrClosed
	}
}

func (l *connListener) Close() error {
	l.once.Do(func() { close(l.closed) })
	return nil
}

func (l *connListener) Addr() net.Addr { return l.addr }

// routes is the sync protocol's handlers, each behind the signature check.
func (p *Plane) routes() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET "+pathSync, p.handleSync)
	mux.HandleFunc("POST "+pathRegister, p.handleRegister)
	mux.HandleFunc("POST "+pathStatus, p.handleStatus)
	mux.HandleFunc("POST "+pathTraffic, p.handleTraffic)
	mux.HandleFunc("POST "+pathLease, p.handleLease)
	mux.HandleFunc("POST "+pathLeaseReturn, p.handleLeaseReturn)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n, _ := r.Context().Value(nodeKey{}).(*Node)
		pub, err := verifyRequest(r.Header.Get(headerAuth), r.Method, r.URL.RequestURI(), time.Now())
		if n == nil || err != nil || !n.PublicKey.Equal(pub) {
			reason := "no node"
			if err != nil {
				reason = err.Error()
			} else if n != nil {
				reason = "key of another node"
			}
			p.log.Warn("control: refused a request", "node", nodeName(n), "reason", reason)
			http.Error(w, "refused", http.StatusForbidden)
			return
		}
		p.stats.heard(n.ID, time.Now())
		r.Body = http.MaxBytesReader(w, r.Body, maxBody)
		mux.ServeHTTP(w, r)
	})
}

func nodeName(n *Node) string {
	if n == nil {
		return ""
	}
	return n.Name
}

func nodeOf(r *http.Request) *Node { return r.Context().Value(nodeKey{}).(*Node) }

func (p *Plane) fail(w http.ResponseWriter, r *http.Request, what string, err error) {
	status := http.StatusInternalServerError
	switch {
	case errors.Is(err, access.ErrInvalid):
		status = http.StatusBadRequest
	case errors.Is(err, ErrNodeRevoked):
		status = http.StatusForbidden
	case errors.Is(err, access.ErrNotFound):
		status = http.StatusNotFound
	}
	if status == http.StatusInternalServerError {
		p.log.Warn("control: "+what, "node", nodeOf(r).Name, "err", err)
	}
	http.Error(w, what+": "+err.Error(), status)
}

func writeJSON(w http.ResponseWriter, v any) {
	var buf bytes.Buffer
	if err := json.NewEncoder(&buf).Encode(v); err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(buf.Len()))
	w.Write(buf.Bytes())
}

func readJSON(r *http.Request, v any) error {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		return fmt.Errorf("read body: %w", err)
	}
	if err := json.Unmarshal(body, v); err != nil {
		return fmt.Errorf("body: %w: %w", err, access.ErrInvalid)
	}
	return nil
}

// handleSync answers GET /v1/sync?after=V&wait=S.
func (p *Plane) handleSync(w http.ResponseWriter, r *http.Request) {
	n := nodeOf(r)
	after, err1 := strconv.ParseInt(r.URL.Query().Get("after"), 10, 64)
	wait, err2 := strconv.Atoi(r.URL.Query().Get("wait"))
	if err1 != nil || err2 != nil || after < 0 || wait < 0 {
		http.Error(w, "bad after or wait", http.StatusBadRequest)
		return
	}
	p.stats.synced(n.ID, after)
	ctx := r.Context()
	timeout := min(time.Duration(wait)*time.Second, maxWait)
	if after > 0 {
		chs, ok := p.waitTail(ctx, after, timeout)
		if ctx.Err() != nil {
			return // the node went away
		}
		if ok {
			p.tail.fromMemory.Add(1)
			p.sendChanges(w, r, n, after, chs)
			return
		}
	}
	p.tail.fromStore.Add(1)
	cur, err := p.store.Version(ctx)
	if err != nil {
		p.fail(w, r, "version", err)
		return
	}
	if after == 0 && cur > 0 || after > cur {
		// A new node, or one whose replica is ahead of this log (the
		// store was restored from a backup): it starts over.
		p.sendSnapshot(w, r, n)
		return
	}
	if after == cur && wait > 0 {
		wctx, cancel := context.WithTimeout(ctx, timeout)
		_, err := p.store.WaitChange(wctx, after)
		cancel()
		if err != nil && ctx.Err() != nil {
			return // the node went away
		}
	}
	chs, err := p.store.Changes(ctx, after, syncBatch)
	if errors.Is(err, ErrResync) {
		p.sendSnapshot(w, r, n) // the log no longer reaches back to after
		return
	}
	if err != nil {
		p.fail(w, r, "changes", err)
		return
	}
	p.sendChanges(w, r, n, after, chs)
}

// sendChanges answers a sync request with chs, the changes after after
// (at most syncBatch), as node n may see them.
func (p *Plane) sendChanges(w http.ResponseWriter, r *http.Request, n *Node, after int64, chs []Change) {
	p.stats.syncChanges.Add(1)
	ans := syncAnswer{From: after, Version: after, More: len(chs) == syncBatch}
	wantPeers := r.URL.Query().Get("peers") == "1"
	for _, ch := range chs {
		switch ch.Kind {
		case ChangeRelayPathAdded, ChangeRelayPathRemoved, ChangeNodeRevoked, ChangeNodeChanged:
			wantPeers = true
		}
		ans.Version = ch.Version
		wc := wireChange{Version: ch.Version, Kind: ch.Kind, Node: ch.Node, Exit: ch.Exit}
		if ch.Kind == ChangeUser {
			if n.Role != RoleExit {
				continue // a relay never learns users
			}
			u := toWireUser(ch.User)
			wc.User = &u
		}
		ans.Changes = append(ans.Changes, wc)
	}
	if wantPeers && !p.addPeers(w, r, n, &ans) {
		return
	}
	writeJSON(w, ans)
}

// addPeers puts n's peers, as the store holds them now, into ans; false
// when it answered with an error instead.
func (p *Plane) addPeers(w http.ResponseWriter, r *http.Request, n *Node, ans *syncAnswer) bool {
	if p.ident == nil {
		return true
	}
	wp, err := peersFor(r.Context(), p.store, p.ident, n)
	if err != nil {
		p.fail(w, r, "peers", err)
		return false
	}
	ans.Peers = wp
	return true
}

func (p *Plane) sendSnapshot(w http.ResponseWriter, r *http.Request, n *Node) {
	snap, err := p.store.Snapshot(r.Context())
	if err != nil {
		p.fail(w, r, "snapshot", err)
		return
	}
	p.stats.syncSnapshots.Add(1)
	ans := syncAnswer{Version: snap.Version, Snapshot: true, Paths: snap.Paths}
	if n.Role == RoleExit {
		ans.Users = make([]wireUser, len(snap.Users))
		for i, u := range snap.Users {
			ans.Users[i] = toWireUser(u)
		}
	}
	for _, o := range snap.Nodes {
		ans.Nodes = append(ans.Nodes, wireNode{ID: o.ID, Name: o.Name, Role: o.Role, Revoked: o.Revoked, Endpoint: o.Endpoint})
	}
	if !p.addPeers(w, r, n, &ans) {
		return
	}
	writeJSON(w, ans)
}

func (p *Plane) handleRegister(w http.ResponseWriter, r *http.Request) {
	var ep Endpoint
	if err := readJSON(r, &ep); err != nil {
		p.fail(w, r, "register", err)
		return
	}
	if err := p.store.RegisterNode(r.Context(), nodeOf(r).ID, ep); err != nil {
		p.fail(w, r, "register", err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (p *Plane) handleStatus(w http.ResponseWriter, r *http.Request) {
	var st NodeStatus
	if err := readJSON(r, &st); err != nil {
		p.fail(w, r, "status", err)
		return
	}
	n := nodeOf(r)
	if n.Role != RoleExit && len(st.Online) > 0 {
		p.fail(w, r, "status", invalid("status", "a %s has no users online", n.Role))
		return
	}
	if err := p.store.UpdateNodeStatus(r.Context(), n.ID, st); err != nil {
		p.fail(w, r, "status", err)
		return
	}
	p.mu.Lock()
	if p.byShort[n.ShortID] != nil { // not revoked since
		p.online[n.ID] = onlineReport{users: st.Online, at: time.Now()}
	}
	p.mu.Unlock()
	w.WriteHeader(http.StatusNoContent)
}

// Active returns the connections each user has open, on every exit, as
// the exits last reported within OnlineFresh (admin.Live). Exits of other
// control-plane processes on the same database report there, not here.
func (p *Plane) Active() map[int64]int {
	cutoff := time.Now().Add(-OnlineFresh)
	out := map[int64]int{}
	p.mu.Lock()
	defer p.mu.Unlock()
	for node, rep := range p.online {
		if rep.at.Before(cutoff) {
			delete(p.online, node)
			continue
		}
		for _, u := range rep.users {
			out[u[0]] += int(u[1])
		}
	}
	return out
}

func (p *Plane) handleTraffic(w http.ResponseWriter, r *http.Request) {
	var push trafficPush
	if err := readJSON(r, &push); err != nil {
		p.fail(w, r, "traffic", err)
		return
	}
	deltas := make(map[int64]access.Traffic, len(push.Deltas))
	for k, v := range push.Deltas {
		id, err := strconv.ParseInt(k, 10, 64)
		if err != nil || id <= 0 || v[0] < 0 || v[1] < 0 {
			http.Error(w, "bad traffic entry", http.StatusBadRequest)
			return
		}
		deltas[id] = access.Traffic{Up: v[0], Down: v[1]}
	}
	applied, err := p.store.PushTraffic(r.Context(), nodeOf(r).ID, push.Seq, deltas, push.Day)
	if err != nil {
		p.fail(w, r, "traffic", err)
		return
	}
	if applied {
		p.stats.pushesApplied.Add(1)
	} else {
		p.stats.pushesRetried.Add(1)
	}
	writeJSON(w, map[string]bool{"applied": applied})
}

func (p *Plane) handleLease(w http.ResponseWriter, r *http.Request) {
	var req leaseRequest
	if err := readJSON(r, &req); err != nil {
		p.fail(w, r, "lease", err)
		return
	}
	l, err := p.store.LeaseQuota(r.Context(), nodeOf(r).ID, req.User, req.Bytes)
	if err != nil {
		p.fail(w, r, "lease", err)
		return
	}
	if l.Granted > 0 && !l.Unlimited {
		p.stats.loans.Add(1)
		p.stats.loanBytes.Add(l.Granted)
	}
	writeJSON(w, l)
}

func (p *Plane) handleLeaseReturn(w http.ResponseWriter, r *http.Request) {
	var req leaseRequest
	if err := readJSON(r, &req); err != nil {
		p.fail(w, r, "lease return", err)
		return
	}
	if err := p.store.ReturnLease(r.Context(), nodeOf(r).ID, req.User, req.Bytes); err != nil {
		p.fail(w, r, "lease return", err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}
