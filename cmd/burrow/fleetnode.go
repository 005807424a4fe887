package main

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"sync"
	"time"

	"github.com/burrow-vpn/burrow/internal/access"
	"github.com/burrow-vpn/burrow/internal/camo"
	"github.com/burrow-vpn/burrow/internal/control"
	"github.com/burrow-vpn/burrow/internal/server"
)

// fleetNode is an exit's side of a fleet (server.Config.Join): the follower
// that keeps users.db in step with the control plane and sends it the
// traffic counted here, and the loans of the users' quotas.
type fleetNode struct {
	f      *control.Follower
	leases *control.Leases
	users  server.UserSource
	relays *fleetRelays

	reg   *server.Registry // set before start
	srv   *server.Server   // set before start
	table *server.Relays   // set before start

	log    *slog.Logger
	cancel context.CancelFunc
	done   chan struct{}
}

// errFleetNode refuses user commands on a fleet's exit.
var errFleetNode = errors.New("this server is a node of a fleet: its users come from the control plane; manage them there (burrow user ... --data CONTROLDIR)")

func newFleetNode(cfg *server.Config, st *access.SQLiteStore, log *slog.Logger) (*fleetNode, error) {
	tok, err := control.ParseToken(cfg.Join)
	if err != nil {
		return nil, fmt.Errorf("join token in the config: %w", err)
	}
	if tok.Role != control.RoleExit {
		return nil, fmt.Errorf("join token is for a %s, not an exit", tok.Role)
	}
	_, port, err := net.SplitHostPort(cfg.Listen)
	if err != nil {
		return nil, err
	}
	st.QueueTraffic()
	n := &fleetNode{relays: &fleetRelays{RelaySource: st}, log: log.With("part", "fleet")}
	n.f, err = control.NewFollower(control.FollowerConfig{
		Addr: tok.Addr,
		Camo: camo.ClientConfig{ServerName: tok.SNI, PublicKey: tok.PublicKey[:], ShortID: tok.ShortID[:],
			Fingerprint: tok.Fingerprint},
		Key:     tok.Key,
		Replica: st,
		Endpoint: control.Endpoint{Addr: net.JoinHostPort(cfg.PublicAddr, port), SNI: cfg.ServerNames[0],
			PublicKey: cfg.PublicKey, ShortID: cfg.ShortIDs[0], Fingerprint: cfg.Fingerprint, Cover: cfg.Cover},
		Applied: func() { n.reg.Poke() },
		Peers:   n.setPeers,
		Status:  n.status,
		Logger:  log.With("part", "fleet"),
	})
	if err != nil {
		return nil, err
	}
	n.leases = control.NewLeases(n.f, func() { n.reg.Poke() })
	n.users = control.NodeUsers{SQLiteStore: st, Leases: n.leases}
	return n, nil
}

// setPeers takes the fleet's relays in front of this exit and applies them
// at once: a relay whose path was removed, or that was revoked, is cut.
func (n *fleetNode) setPeers(p *control.Peers) {
	list := make([]*access.Relay, len(p.Relays))
	for i, r := range p.Relays {
		list[i] = &access.Relay{ID: -r.ID, Name: r.Name, ShortID: r.ShortID, Secret: r.Secret}
	}
	n.relays.set(list)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := n.table.Refresh(ctx); err != nil {
		n.log.Warn("relay table refresh failed", "err", err)
	}
}

// fleetRelays is the exit's relay table in a fleet: its own relays
// (`server relay-token`, in users.db) and the fleet's relays with a path to
// it, held in memory (their credentials are derived by the control plane,
// never stored here). A fleet relay's ID is minus its node ID.
type fleetRelays struct {
	server.RelaySource

	mu    sync.Mutex
	fleet []*access.Relay // guarded by mu
}

func (f *fleetRelays) set(list []*access.Relay) {
	f.mu.Lock()
	f.fleet = list
	f.mu.Unlock()
}

func (f *fleetRelays) ListRelays(ctx context.Context) ([]*access.Relay, error) {
	own, err := f.RelaySource.ListRelays(ctx)
	if err != nil {
		return nil, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	return append(own, f.fleet...), nil
}

// SetRelayAnnounce records a relay's announcement for the exit's own
// relays; a fleet relay registers its endpoint with the control plane.
func (f *fleetRelays) SetRelayAnnounce(ctx context.Context, id int64, sni, cover, addr string) error {
	if id < 0 {
		return nil
	}
	return f.RelaySource.SetRelayAnnounce(ctx, id, sni, cover, addr)
}

func (n *fleetNode) status() control.NodeStatus {
	st := n.srv.Stats()
	active := n.reg.Active()
	online := make([][2]int64, 0, len(active))
	for id, conns := range active {
		if conns > 0 {
			online = append(online, [2]int64{id, int64(conns)})
		}
	}
	slices.SortFunc(online, func(a, b [2]int64) int { return cmp.Compare(a[0], b[0]) })
	count := len(online)
	if count > control.MaxOnline {
		online = nil // the count alone
	}
	return control.NodeStatus{Version: version, UsersOnline: count, Online: online,
		BytesUp: st.BytesUp.Load(), BytesDown: st.BytesDown.Load(), Health: "ok"}
}

// start follows the control plane until stop.
func (n *fleetNode) start() {
	ctx, cancel := context.WithCancel(context.Background())
	n.cancel, n.done = cancel, make(chan struct{})
	go func() {
		defer close(n.done)
		lctx, lcancel := context.WithCancel(ctx)
		ldone := make(chan struct{})
		go func() { n.leases.Run(lctx); close(ldone) }()
		n.f.Run(ctx)
		lcancel()
		<-ldone
	}()
}

// stop sends what is left to send (briefly) and stops following.
func (n *fleetNode) stop() {
	if n.cancel != nil {
		n.cancel()
		<-n.done
	}
}

// fleetReplica is a joined exit's users.db as the admin API sees it: read
// only, since the control plane owns the users (every change there reaches
// the replica through the change log).
type fleetReplica struct{ *access.SQLiteStore }

func (fleetReplica) refuse() error { return fmt.Errorf("%w: %w", errFleetNode, access.ErrInvalid) }

func (r fleetReplica) CreateUser(context.Context, access.NewUser) (*access.User, error) {
	return nil, r.refuse()
}
func (r fleetReplica) UpdateUser(context.Context, int64, access.UserUpdate) (*access.User, error) {
	return nil, r.refuse()
}
func (r fleetReplica) RevokeUser(context.Context, int64) error { return r.refuse() }
func (r fleetReplica) EnableUser(context.Context, int64) error { return r.refuse() }
func (r fleetReplica) RotateUUID(context.Context, int64) (*access.User, error) {
	return nil, r.refuse()
}
func (r fleetReplica) ResetTraffic(context.Context, int64, time.Time) error { return r.refuse() }

// refuseOnFleetNode refuses side services that would manage users on a
// joined exit: they run on the control plane.
func refuseOnFleetNode(cfg *server.Config, side *sideFlags) error {
	if cfg.Join == "" {
		return nil
	}
	switch {
	case side.panel != "" || side.panelTunnel:
		return errors.New("--panel: this server is a node of a fleet; its users are managed on the control plane, which serves the panel (burrow control run --panel)")
	case side.subscribe != "":
		return errors.New("--subscribe: this server is a node of a fleet; subscriptions are served by the control plane (burrow control run --subscribe)")
	}
	return nil
}
