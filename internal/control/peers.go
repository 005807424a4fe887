package control

import (
	"context"
	"crypto/ed25519"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
)

// A relay of the fleet reaches its exits with a credential no store holds:
//
//	short ID  the relay node's own short ID (nodes.short_id), which it
//	          also presents to the control plane
//	secret    HMAC-SHA256(control plane identity seed, "burrow-relay-secret-v1" |
//	                      relay node ID (8, big endian) | exit node ID (8) | relay public key)[:16]
//
// one per path: an exit knows only its own, so it cannot pose as the relay
// to another exit. The control plane derives the secrets whenever it
// answers a sync request: to the relay itself (over its authenticated sync
// connection) and to each exit the relay has a path to. Rekeying the relay (a new join token)
// changes its public key and so its secret; revoking it or removing a path
// drops it from the exits' answers, and they cut it. Nothing about it is
// written to the store.

// RelaySecret is relay's credential at exit.
func RelaySecret(identity ed25519.PrivateKey, relay *Node, exit int64) [16]byte {
	m := hmac.New(sha256.New, identity.Seed())
	m.Write([]byte("burrow-relay-secret-v1"))
	binary.Write(m, binary.BigEndian, relay.ID)
	binary.Write(m, binary.BigEndian, exit)
	m.Write(relay.PublicKey)
	var s [16]byte
	copy(s[:], m.Sum(nil))
	return s
}

// Peers is what a node learns of the nodes next to it: a relay, the exits
// it fronts and its credential at each; an exit, the relays in front of it.
type Peers struct {
	Exits  []PeerExit // a relay's exits, by path
	Relays []PeerRelay
}

// PeerExit is an exit a relay fronts, where to reach it, and the relay's
// credential there.
type PeerExit struct {
	ID       int64
	Name     string
	Endpoint Endpoint
	Secret   [16]byte
}

// PeerRelay is a relay an exit lets carry its clients.
type PeerRelay struct {
	ID      int64
	Name    string
	ShortID [8]byte
	Secret  [16]byte
}

// wirePeers is Peers on the wire (syncAnswer.Peers); byte strings in hex.
type wirePeers struct {
	Exits  []wirePeerExit  `json:"exits,omitempty"`
	Relays []wirePeerRelay `json:"relays,omitempty"`
}

type wirePeerExit struct {
	ID       int64    `json:"id"`
	Name     string   `json:"name"`
	Endpoint Endpoint `json:"endpoint"`
	Secret   string   `json:"secret"`
}

type wirePeerRelay struct {
	ID      int64  `json:"id"`
	Name    string `json:"name"`
	ShortID string `json:"sid"`
	Secret  string `json:"secret"`
}

// peersFor computes n's peers from the store as it is now.
func peersFor(ctx context.Context, st Store, identity ed25519.PrivateKey, n *Node) (*wirePeers, error) {
	nodes, err := st.ListNodes(ctx)
	if err != nil {
		return nil, err
	}
	paths, err := st.RelayPaths(ctx)
	if err != nil {
		return nil, err
	}
	byID := make(map[int64]*Node, len(nodes))
	for _, o := range nodes {
		if !o.Revoked {
			byID[o.ID] = o
		}
	}
	wp := &wirePeers{}
	for _, p := range paths {
		switch {
		case n.Role == RoleRelay && p.Relay == n.ID:
			if ex := byID[p.Exit]; ex != nil && ex.Endpoint.Addr != "" && ex.Endpoint.PublicKey != "" {
				s := RelaySecret(identity, n, ex.ID)
				wp.Exits = append(wp.Exits, wirePeerExit{ID: ex.ID, Name: ex.Name, Endpoint: ex.Endpoint, Secret: hex.EncodeToString(s[:])})
			}
		case n.Role == RoleExit && p.Exit == n.ID:
			if rl := byID[p.Relay]; rl != nil {
				s := RelaySecret(identity, rl, n.ID)
				wp.Relays = append(wp.Relays, wirePeerRelay{ID: rl.ID, Name: rl.Name,
					ShortID: hex.EncodeToString(rl.ShortID[:]), Secret: hex.EncodeToString(s[:])})
			}
		}
	}
	return wp, nil
}

// peers checks and decodes what the control plane sent.
func (w *wirePeers) peers() (*Peers, error) {
	var p Peers
	for _, e := range w.Exits {
		if err := e.Endpoint.validate(); err != nil || e.Endpoint.PublicKey == "" {
			return nil, fmt.Errorf("exit %d: bad endpoint: %v", e.ID, err)
		}
		pe := PeerExit{ID: e.ID, Name: e.Name, Endpoint: e.Endpoint}
		if err := decodeHex(e.Secret, pe.Secret[:]); err != nil {
			return nil, fmt.Errorf("exit %d secret: %w", e.ID, err)
		}
		p.Exits = append(p.Exits, pe)
	}
	for _, r := range w.Relays {
		pr := PeerRelay{ID: r.ID, Name: r.Name}
		if err := decodeHex(r.ShortID, pr.ShortID[:]); err != nil {
			return nil, fmt.Errorf("relay %d short id: %w", r.ID, err)
		}
		if err := decodeHex(r.Secret, pr.Secret[:]); err != nil {
			return nil, fmt.Errorf("relay %d secret: %w", r.ID, err)
		}
		p.Relays = append(p.Relays, pr)
	}
	return &p, nil
}

func decodeHex(s string, dst []byte) error {
	b, err := hex.DecodeString(s)
	if err != nil || len(b) != len(dst) {
		return fmt.Errorf("want %d hex digits", 2*len(dst))
	}
	copy(dst, b)
	return nil
}
