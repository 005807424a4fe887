package control

import (
	"context"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"net"
	"slices"
	"strconv"
	"time"

	"github.com/burrow-vpn/burrow/internal/access"
	"github.com/burrow-vpn/burrow/internal/links"
)

// UserLink is one way for a user to reach the fleet: an exit directly, or
// a relay in front of an exit.
type UserLink struct {
	Exit  *Node
	Relay *Node // nil for a direct link
	Link  *links.VLESS
}

// Label names the path: "exit-1", or "relay-1 > exit-1".
func (l *UserLink) Label() string {
	if l.Relay == nil {
		return l.Exit.Name
	}
	return l.Relay.Name + " > " + l.Exit.Name
}

// UserLinks returns u's links for every live exit that has registered its
// endpoint, each followed by the paths through live, registered relays in
// front of it; or, when only is non-nil, the links through that node.
// Exits come in ID order, relays in ID order within each exit.
func UserLinks(u *access.User, nodes []*Node, paths []RelayPath, only *Node) ([]UserLink, error) {
	byID := map[int64]*Node{}
	for _, n := range nodes {
		if !n.Revoked && n.Endpoint.Addr != "" {
			byID[n.ID] = n
		}
	}
	var out []UserLink
	for _, ex := range nodes {
		if byID[ex.ID] != ex || ex.Role != RoleExit {
			continue
		}
		if only == nil || only.ID == ex.ID {
			l, err := vlessLink(u, ex, nil)
			if err != nil {
				return nil, err
			}
			out = append(out, UserLink{Exit: ex, Link: l})
		}
		for _, p := range paths {
			rl := byID[p.Relay]
			if p.Exit != ex.ID || rl == nil || (only != nil && only.ID != ex.ID && only.ID != rl.ID) {
				continue
			}
			l, err := vlessLink(u, ex, rl)
			if err != nil {
				return nil, err
			}
			out = append(out, UserLink{Exit: ex, Relay: rl, Link: l})
		}
	}
	return out, nil
}

// vlessLink builds u's REALITY + Vision link to exit ex, through relay rl
// when not nil: the relay's address and (if it has its own cover) SNI,
// the exit's key and short ID, since the REALITY session runs to the exit.
func vlessLink(u *access.User, ex, rl *Node) (*links.VLESS, error) {
	front := ex
	if rl != nil {
		front = rl
	}
	host, port, err := splitAddr(front.Endpoint.Addr)
	if err != nil {
		return nil, fmt.Errorf("node %q: %w", front.Name, err)
	}
	pub, err := base64.RawURLEncoding.DecodeString(ex.Endpoint.PublicKey)
	if err != nil || len(pub) != 32 {
		return nil, fmt.Errorf("exit %q registered no valid public key", ex.Name)
	}
	sid, _ := hex.DecodeString(ex.Endpoint.ShortID)
	sni := ex.Endpoint.SNI
	if rl != nil && rl.Endpoint.SNI != "" {
		sni = rl.Endpoint.SNI
	}
	name := u.Name + " @ " + ex.Name
	if rl != nil {
		name = u.Name + " @ " + rl.Name + " > " + ex.Name
	}
	return &links.VLESS{UUID: u.UUID, Host: host, Port: port, Security: links.SecurityReality, Encryption: links.EncryptionNone, SNI: sni,
		Fingerprint: ex.Endpoint.Fingerprint, PublicKey: pub, ShortID: sid, Flow: links.FlowVision, Type: links.TypeTCP,
		TCPMux: true, Name: name}, nil
}

func splitAddr(hostport string) (string, uint16, error) {
	host, port, err := net.SplitHostPort(hostport)
	if err != nil {
		return "", 0, err
	}
	p, err := strconv.ParseUint(port, 10, 16)
	if err != nil || p == 0 {
		return "", 0, fmt.Errorf("address %q: bad port", hostport)
	}
	return host, uint16(p), nil
}

// SubscriptionLinks returns u's links for a subscription: every live,
// registered exit and relay path, those through nodes that report healthy
// (seen within StaleAfter, "ok") first, each group in UserLinks' order.
// Adding or removing a node changes what subscribed apps get at their next
// refresh, without a new invitation.
func SubscriptionLinks(ctx context.Context, st Store, u *access.User, now time.Time) ([]*links.VLESS, error) {
	nodes, err := st.ListNodes(ctx)
	if err != nil {
		return nil, err
	}
	paths, err := st.RelayPaths(ctx)
	if err != nil {
		return nil, err
	}
	uls, err := UserLinks(u, nodes, paths, nil)
	if err != nil {
		return nil, err
	}
	healthy := func(ul UserLink) bool {
		return ul.Exit.Health(now) == "ok" && (ul.Relay == nil || ul.Relay.Health(now) == "ok")
	}
	slices.SortStableFunc(uls, func(a, b UserLink) int {
		switch ha, hb := healthy(a), healthy(b); {
		case ha == hb:
			return 0
		case ha:
			return -1
		}
		return 1
	})
	out := make([]*links.VLESS, len(uls))
	for i := range uls {
		out[i] = uls[i].Link
	}
	return out, nil
}
