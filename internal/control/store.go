package control

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"time"

	"github.com/burrow-vpn/burrow/internal/access"
)

// Store is the control plane's source of truth: the users (every
// access.Store method, so `burrow user ...` and the admin API work against
// a control directory unchanged), the nodes, the relay paths, per-node
// traffic, quota leases, and the change log nodes replicate.
//
// Every change a node must apply — a user created, updated, revoked,
// enabled, rotated or reset, a node revoked, a relay path added or removed —
// appends exactly one Change in the same transaction as the change itself,
// so the log never misses a change nor holds one that did not happen.
// Versions are assigned under a lock held until commit: they are strictly
// increasing, gap-free, and become visible in version order, so a reader
// that saw version v will never later find a change numbered below v.
// Traffic counters (AddTraffic, PushTraffic) and node status are not in the
// log: they change every few seconds and nodes do not need them.
//
// Implementations are safe for concurrent use, also by several processes
// sharing one database. Errors wrap access.ErrNotFound, access.ErrExists,
// access.ErrInvalid or the sentinels below where callers may branch.
type Store interface {
	access.Store

	// Version returns the version of the newest change, 0 when there is none.
	Version(ctx context.Context) (int64, error)
	// Changes returns up to limit changes with versions above after, in
	// version order, starting at after+1. Fewer than limit means the caller
	// is up to date. When the log no longer holds after+1 (pruned), or after
	// is above the newest version (the database was restored from an older
	// backup), it returns an error wrapping ErrResync: the caller starts
	// again from a Snapshot.
	Changes(ctx context.Context, after int64, limit int) ([]Change, error)
	// WaitChange blocks until the newest version is above after (returning
	// it) or ctx ends. Writers in this process wake waiters at once; writes
	// by other processes are seen through PostgreSQL's LISTEN/NOTIFY, or
	// within PollInterval on SQLite.
	WaitChange(ctx context.Context, after int64) (int64, error)
	// Snapshot returns everything a joining node starts from, as of exactly
	// Snapshot.Version: applying Changes(Snapshot.Version, ...) to it gives
	// the current state.
	Snapshot(ctx context.Context) (*Snapshot, error)

	// CreateNode adds a node with a fresh Ed25519 identity key pair and
	// REALITY short ID. The returned Node is the only one ever to carry
	// PrivateKey: the store keeps the public key only, so the join token
	// (Token) must be made from this value. A name taken case-insensitively
	// wraps access.ErrExists, or ErrNodeRevoked if that node was revoked.
	CreateNode(ctx context.Context, name string, role Role) (*Node, error)
	// RekeyNode gives a node a fresh key pair and short ID, so the old join
	// token stops working, and logs ChangeNodeChanged; like CreateNode it returns the private key once.
	// A revoked node wraps ErrNodeRevoked.
	RekeyNode(ctx context.Context, id int64) (*Node, error)
	NodeByID(ctx context.Context, id int64) (*Node, error)
	NodeByName(ctx context.Context, name string) (*Node, error) // case-insensitive
	// NodeByKey finds a node by its identity public key (revoked ones too:
	// the caller refuses them).
	NodeByKey(ctx context.Context, pub ed25519.PublicKey) (*Node, error)
	ListNodes(ctx context.Context) ([]*Node, error) // ordered by ID, revoked included
	// RevokeNode marks the node revoked (final: its name is never reused),
	// drops its relay paths and its leases, and logs ChangeNodeRevoked.
	RevokeNode(ctx context.Context, id int64) error
	// RegisterNode records where clients reach the node (what its links
	// carry) and logs ChangeNodeChanged if that changed. The node sends it
	// each time it connects.
	RegisterNode(ctx context.Context, id int64, ep Endpoint) error
	// UpdateNodeStatus records what the node last reported; LastSeen is set
	// to the store's clock, whatever st.LastSeen holds.
	UpdateNodeStatus(ctx context.Context, id int64, st NodeStatus) error

	// AddRelayPath lets relay node relay front exit node exit (both must be
	// live nodes of those roles) and logs ChangeRelayPathAdded. Adding a
	// path that exists does nothing and logs nothing.
	AddRelayPath(ctx context.Context, relay, exit int64) error
	// RemoveRelayPath removes the path (ErrNotFound if none) and logs
	// ChangeRelayPathRemoved.
	RemoveRelayPath(ctx context.Context, relay, exit int64) error
	RelayPaths(ctx context.Context) ([]RelayPath, error) // ordered by relay, exit

	// PushTraffic adds a node's per-user deltas to the users' counters (as
	// AddTraffic) and to the node's own per-user totals, spends the node's
	// leases by the bytes moved, and records seq as the node's last applied
	// push, all in one transaction. A seq not above the last applied one is
	// a retry: nothing changes and applied is false. Seqs may skip numbers.
	PushTraffic(ctx context.Context, node int64, seq uint64, deltas map[int64]access.Traffic, day string) (applied bool, err error)
	// NodeTraffic returns the node's per-user totals since the node was
	// created (not reset with the users' periods), by user ID.
	NodeTraffic(ctx context.Context, node int64) (map[int64]access.Traffic, error)

	// LeaseQuota grants node up to want more bytes of user's quota, so that
	// the user's bytes used this period plus every node's unexpired lease
	// never exceed the quota. The node's lease becomes its unexpired
	// remainder plus the grant, and expires LeaseTTL from now. A user with
	// no quota gets want in full (Unlimited, nothing recorded); a user who
	// may not connect (revoked, expired, over quota) gets 0.
	LeaseQuota(ctx context.Context, node, user int64, want int64) (Lease, error)
	// ReturnLease gives back unused bytes of node's lease on user (never
	// below zero), so other nodes can be granted them.
	ReturnLease(ctx context.Context, node, user int64, unused int64) error
}

// PollInterval is how often WaitChange on SQLite looks for changes written
// by other processes (its own process's writes wake it at once).
const PollInterval = 250 * time.Millisecond

// LeaseTTL is how long a lease stays outstanding without renewal. A node
// must not spend an expired lease; the store stops counting it then, so a
// node that vanished frees its share within LeaseTTL.
const LeaseTTL = 5 * time.Minute

// ErrResync is wrapped by Changes when the log cannot bring the caller's
// version up to date: take a Snapshot instead.
var ErrResync = errors.New("change log cannot continue from that version; start again from a snapshot")

// ErrNodeRevoked is wrapped by operations on a revoked node that would
// bring it back (CreateNode of its name, RekeyNode, RegisterNode,
// AddRelayPath, LeaseQuota, PushTraffic, UpdateNodeStatus).
var ErrNodeRevoked = errors.New("node revoked")

// Role is what a node does.
type Role string

const (
	RoleExit  Role = "exit"  // a camouflaged exit server (burrow server)
	RoleRelay Role = "relay" // an entry relay in front of exits (burrow relay)
)

// ParseRole parses "exit" or "relay".
func ParseRole(s string) (Role, error) {
	switch r := Role(s); r {
	case RoleExit, RoleRelay:
		return r, nil
	}
	return "", fmt.Errorf("role %.20q: %w: want exit or relay", s, access.ErrInvalid)
}

func (r Role) withArticle() string {
	if r == RoleExit {
		return "an exit"
	}
	return "a " + string(r)
}

// Node is one exit or relay of the fleet.
type Node struct {
	ID        int64
	Name      string // unique case-insensitively; see access.ValidateName
	Role      Role
	PublicKey ed25519.PublicKey // the node's identity: it signs to prove it holds the join token
	// PrivateKey is set only in what CreateNode and RekeyNode return; the
	// store never keeps it. The join token carries it (its seed).
	PrivateKey ed25519.PrivateKey
	// ShortID is the REALITY short ID the node presents to the control
	// plane's camouflaged endpoint (never a user's).
	ShortID   [8]byte
	CreatedAt time.Time
	Revoked   bool
	Endpoint  Endpoint   // zero until the node registers
	Status    NodeStatus // zero until the node reports
}

// Endpoint is where clients reach a node; user links are built from it.
type Endpoint struct {
	// Addr is the public HOST:PORT clients connect to.
	Addr string
	// SNI is the server name links carry: the node's cover's. For a relay,
	// "" means the exits' own.
	SNI string
	// PublicKey is an exit's REALITY X25519 public key, base64url without
	// padding (a link's pbk). Empty for a relay: links through a relay
	// carry the exit's key, since the REALITY session runs to the exit.
	PublicKey string
	// ShortID is an exit's short ID for user links, hex (a link's sid).
	ShortID string
	// Fingerprint is the fp= links carry (default chrome).
	Fingerprint string
	// Cover is an exit's cover site, HOST:PORT: what a relay in front of
	// it without a cover of its own shows probers when no exit is up.
	Cover string `json:",omitempty"`
}

// NodeStatus is what a node last reported about itself.
type NodeStatus struct {
	Version        string    // the node's burrow version
	LastSeen       time.Time // set by the store when it records a report
	UsersOnline    int       // users with a connection open now
	BytesUp        int64     // totals since the node started
	BytesDown      int64
	AppliedVersion int64  // the change log version the node's replica holds
	Health         string // "ok", or what is wrong, in a few words
	// Online lists the users with a connection open now, as (id,
	// connections) in ascending id order, one per user online (an exit's;
	// relays know no users; nil from an exit with more than MaxOnline).
	// The plane keeps it in memory only, for the panel's "online now"
	// (Plane.Active); the store ignores it.
	Online [][2]int64 `json:",omitempty"`
}

// RelayPath says a relay node fronts an exit node: clients may reach the
// exit through the relay, and user links include the path.
type RelayPath struct {
	Relay, Exit int64
	CreatedAt   time.Time
}

// ChangeKind says what a Change is about.
type ChangeKind string

const (
	// ChangeUser: User holds the user's whole row after a create, update,
	// revoke, enable, rotate or traffic reset. Applying it means replacing
	// the replica's row with that ID (or adding it). Its counters are those
	// of the moment; nodes enforce quotas through leases, not through them.
	ChangeUser ChangeKind = "user"
	// ChangeNodeRevoked: Node was revoked; its connections and relay paths
	// end.
	ChangeNodeRevoked ChangeKind = "node-revoked"
	// ChangeRelayPathAdded and ChangeRelayPathRemoved: the path from relay
	// Node to exit Exit was added or removed.
	ChangeRelayPathAdded   ChangeKind = "relay-path-added"
	ChangeRelayPathRemoved ChangeKind = "relay-path-removed"
	// ChangeNodeChanged: Node registered a new endpoint or was given new
	// keys; relays learn their exits' endpoints, and exits their relays'
	// credentials, from it (peers.go).
	ChangeNodeChanged ChangeKind = "node-changed"
)

// Change is one entry of the change log. Applying the same Change twice
// leaves a replica as applying it once.
type Change struct {
	Version int64
	Kind    ChangeKind
	At      time.Time    // when it was made, store clock, whole seconds
	User    *access.User // ChangeUser
	Node    int64        // ChangeNodeRevoked, ChangeNodeChanged; the relay of a path change
	Exit    int64        // the exit of a path change
}

// Snapshot is the whole replicated state as of Version.
type Snapshot struct {
	Version int64
	Users   []*access.User // ordered by ID
	Nodes   []*Node        // ordered by ID, revoked included, without Status
	Paths   []RelayPath
}

// Lease is the answer to LeaseQuota.
type Lease struct {
	Granted     int64     // bytes added by this call
	Outstanding int64     // the node's whole unexpired lease on the user now
	Expires     time.Time // when Outstanding stops counting unless renewed
	Unlimited   bool      // the user has no quota: spend freely
	// Spent: nothing is left to lend and nothing will be this period (the
	// user used the quota up, or may not connect). A grant of 0 without
	// Spent means other nodes hold what is left for now.
	Spent bool
}
