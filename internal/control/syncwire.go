package control

import (
	"crypto/ed25519"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/burrow-vpn/burrow/internal/access"
)

// The sync protocol between a node and the control plane: HTTP/1.1 with JSON
// bodies, inside a REALITY connection to the control plane's camouflaged
// endpoint (the node's short ID; the REALITY handshake proves the control
// plane holds its key), every request signed with the node's identity key.
//
//	GET  /v1/sync?after=V&wait=S[&peers=1]
//	                              the changes after V, waiting up to S seconds
//	                              for one; after=0, or V older than the log
//	                              keeps, answers with a snapshot instead;
//	                              peers=1 asks for the node's peers too
//	POST /v1/register             the node's Endpoint (where clients reach it)
//	POST /v1/status               its NodeStatus
//	POST /v1/traffic              a numbered batch of per-user traffic
//	POST /v1/lease                more of a user's quota
//	POST /v1/lease/return         unused quota back
//
// A relay node is never sent users: its changes and snapshots hold nodes and
// relay paths only.
const (
	pathSync        = "/v1/sync"
	pathRegister    = "/v1/register"
	pathStatus      = "/v1/status"
	pathTraffic     = "/v1/traffic"
	pathLease       = "/v1/lease"
	pathLeaseReturn = "/v1/lease/return"

	// headerAuth carries the request's signature:
	//	PUBKEY.UNIXTIME.SIG   (base64url without padding; decimal; base64url)
	// SIG is Ed25519 over "burrow-node-v1 UNIXTIME METHOD PATH?QUERY".
	headerAuth = "Burrow-Node"
	// authSkew bounds the clock difference a signature may show.
	authSkew = 2 * time.Minute

	// maxBody bounds a request body the control plane reads.
	maxBody = 8 << 20
	// syncBatch is the most changes one sync answer carries.
	syncBatch = 2000
	// maxWait bounds how long a sync request waits for a change.
	maxWait = 25 * time.Second
)

// signRequest returns the headerAuth value for a request.
func signRequest(key ed25519.PrivateKey, method, target string, now time.Time) string {
	ts := strconv.FormatInt(now.Unix(), 10)
	sig := ed25519.Sign(key, []byte("burrow-node-v1 "+ts+" "+method+" "+target))
	pub := key.Public().(ed25519.PublicKey)
	return b64(pub) + "." + ts + "." + b64(sig)
}

// verifyRequest checks a headerAuth value and returns the public key that
// signed it.
func verifyRequest(value, method, target string, now time.Time) (ed25519.PublicKey, error) {
	parts := strings.Split(value, ".")
	if len(parts) != 3 {
		return nil, errors.New("malformed signature header")
	}
	pub, err := base64.RawURLEncoding.DecodeString(parts[0])
	if err != nil || len(pub) != ed25519.PublicKeySize {
		return nil, errors.New("malformed key")
	}
	ts, err := strconv.ParseInt(parts[1], 10, 64)
	if err != nil {
		return nil, errors.New("malformed time")
	}
	if d := now.Sub(time.Unix(ts, 0)); d > authSkew || d < -authSkew {
		return nil, fmt.Errorf("signature time is %v off this clock", d.Round(time.Second))
	}
	sig, err := base64.RawURLEncoding.DecodeString(parts[2])
	if err != nil || !ed25519.Verify(pub, []byte("burrow-node-v1 "+parts[1]+" "+method+" "+target), sig) {
		return nil, errors.New("bad signature")
	}
	return pub, nil
}

// wireUser is a user as the sync protocol carries it: what an exit needs to
// admit the user, never the subscription token.
type wireUser struct {
	ID          int64  `json:"id"`
	Name        string `json:"name"`
	UUID        string `json:"uuid"`
	CreatedAt   int64  `json:"created_at"`
	Quota       int64  `json:"quota"`
	ExpiresAt   int64  `json:"expires_at,omitempty"`
	Reset       string `json:"reset"`
	Revoked     bool   `json:"revoked,omitempty"`
	BytesUp     int64  `json:"bytes_up"`
	BytesDown   int64  `json:"bytes_down"`
	LastSeenDay string `json:"last_seen_day,omitempty"`
	PeriodStart int64  `json:"period_start"`
}

func toWireUser(u *access.User) wireUser {
	return wireUser{ID: u.ID, Name: u.Name, UUID: access.FormatUUID(u.UUID), CreatedAt: toUnix(u.CreatedAt),
		Quota: u.Quota, ExpiresAt: toUnix(u.ExpiresAt), Reset: u.Reset, Revoked: u.Revoked,
		BytesUp: u.BytesUp, BytesDown: u.BytesDown, LastSeenDay: u.LastSeenDay, PeriodStart: toUnix(u.PeriodStart)}
}

func (w wireUser) user() (*access.User, error) {
	id, err := access.ParseUUID(w.UUID)
	if err != nil {
		return nil, fmt.Errorf("user %d: %w", w.ID, err)
	}
	if w.ID <= 0 || w.Quota < 0 || w.BytesUp < 0 || w.BytesDown < 0 {
		return nil, fmt.Errorf("user %d: bad id, quota or counters", w.ID)
	}
	if err := access.ValidateName(w.Name); err != nil {
		return nil, fmt.Errorf("user %d: %w", w.ID, err)
	}
	reset, err := access.ParseReset(w.Reset)
	if err != nil {
		return nil, fmt.Errorf("user %d: %w", w.ID, err)
	}
	if w.LastSeenDay != "" {
		if err := access.ValidateDay(w.LastSeenDay); err != nil {
			return nil, fmt.Errorf("user %d: %w", w.ID, err)
		}
	}
	return &access.User{ID: w.ID, Name: w.Name, UUID: id, CreatedAt: fromUnix(w.CreatedAt), Quota: w.Quota,
		ExpiresAt: fromUnix(w.ExpiresAt), Reset: reset, Revoked: w.Revoked, BytesUp: w.BytesUp,
		BytesDown: w.BytesDown, LastSeenDay: w.LastSeenDay, PeriodStart: fromUnix(w.PeriodStart)}, nil
}

// wireNode is a node as other nodes see it: its role, state and endpoint,
// never its key.
type wireNode struct {
	ID       int64    `json:"id"`
	Name     string   `json:"name"`
	Role     Role     `json:"role"`
	Revoked  bool     `json:"revoked,omitempty"`
	Endpoint Endpoint `json:"endpoint"`
}

// wireChange is one change of the log as a node receives it.
type wireChange struct {
	Version int64      `json:"v"`
	Kind    ChangeKind `json:"kind"`
	User    *wireUser  `json:"user,omitempty"`
	Node    int64      `json:"node,omitempty"`
	Exit    int64      `json:"exit,omitempty"`
}

// syncAnswer is the body of a sync answer: either changes after the asked
// version (From), up to Version, or a snapshot as of Version.
type syncAnswer struct {
	Version  int64        `json:"version"`
	From     int64        `json:"from"`
	Snapshot bool         `json:"snapshot,omitempty"`
	Changes  []wireChange `json:"changes,omitempty"`
	Users    []wireUser   `json:"users,omitempty"` // snapshot
	Nodes    []wireNode   `json:"nodes,omitempty"` // snapshot
	Paths    []RelayPath  `json:"paths,omitempty"` // snapshot
	More     bool         `json:"more,omitempty"`  // more changes wait: ask again at once
	// Peers is the node's peers as of the answer (peers.go): in snapshots,
	// in answers carrying relay-path or node-revoked changes, and when the
	// request asks (peers=1).
	Peers *wirePeers `json:"peers,omitempty"`
}

// trafficPush is the body of POST /v1/traffic.
type trafficPush struct {
	Seq    uint64              `json:"seq"`
	Day    string              `json:"day"`
	Deltas map[string][2]int64 `json:"deltas"` // user ID → up, down
}

// leaseRequest is the body of POST /v1/lease and /v1/lease/return.
type leaseRequest struct {
	User  int64 `json:"user"`
	Bytes int64 `json:"bytes"`
}
