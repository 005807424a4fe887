package control

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/burrow-vpn/burrow/internal/access"
)

// Init creates a control directory: dir (mode 0700) with c written to
// DIR/control.json, after opening c's store once so that its schema exists
// and a wrong PostgreSQL URL fails before anything is written. A directory
// that already holds a control plane or a server is refused.
func Init(ctx context.Context, dir string, c *Config) error {
	for _, f := range []string{ConfigFile, StoreFile, "config.json"} {
		p := filepath.Join(dir, f)
		if _, err := os.Stat(p); err == nil {
			return fmt.Errorf("%s already exists; nothing was changed (choose a new --data DIR)", p)
		} else if !errors.Is(err, os.ErrNotExist) {
			return err
		}
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	st, err := Open(ctx, dir, c)
	if err != nil {
		return err
	}
	if err := st.Close(); err != nil {
		return err
	}
	return WriteConfig(dir, c)
}

// IssueToken returns the join token for the node called name: a new node of
// role, or — for an existing one of that role — a fresh key pair, which
// makes the node's earlier token stop working (rekeyed is then true). A
// revoked node's name is refused with ErrNodeRevoked.
func IssueToken(ctx context.Context, st Store, c *Config, name string, role Role) (tok *Token, rekeyed bool, err error) {
	n, err := st.NodeByName(ctx, name)
	switch {
	case errors.Is(err, access.ErrNotFound):
		n, err = st.CreateNode(ctx, name, role)
	case err != nil:
	case n.Revoked:
		err = fmt.Errorf("control: node %q: %w; give the new node another name", n.Name, ErrNodeRevoked)
	case n.Role != role:
		err = fmt.Errorf("control: node %q is %s, not %s: %w", n.Name, n.Role.withArticle(), role.withArticle(), access.ErrInvalid)
	default:
		rekeyed = true
		n, err = st.RekeyNode(ctx, n.ID)
	}
	if err != nil {
		return nil, false, err
	}
	tok, err = NewToken(c, n)
	return tok, rekeyed, err
}

// StaleAfter is how long after its last report a node counts as stale.
const StaleAfter = time.Minute

// Health says in a few words how the node is at now: "revoked", "never
// connected", "stale (last seen …)", or what it last reported.
func (n *Node) Health(now time.Time) string {
	switch {
	case n.Revoked:
		return "revoked"
	case n.Status.LastSeen.IsZero():
		return "never connected"
	case now.Sub(n.Status.LastSeen) > StaleAfter:
		return fmt.Sprintf("stale (last seen %s ago)", now.Sub(n.Status.LastSeen).Truncate(time.Second))
	case n.Status.Health == "":
		return "ok"
	}
	return n.Status.Health
}

// PruneAfter is how long a node may stay away and still catch up from the
// change log; a node away longer starts again from a snapshot.
const PruneAfter = 24 * time.Hour

// PruneThrough returns the change log version up to which entries may go:
// the least version applied by any live node seen within PruneAfter (a
// node away longer, or never connected, will load a snapshot anyway), or 0
// (keep everything) when there is no such node.
func PruneThrough(nodes []*Node, now time.Time) int64 {
	least := int64(-1)
	for _, n := range nodes {
		if n.Revoked || n.Status.LastSeen.IsZero() || now.Sub(n.Status.LastSeen) > PruneAfter {
			continue
		}
		if least < 0 || n.Status.AppliedVersion < least {
			least = n.Status.AppliedVersion
		}
	}
	return max(least, 0)
}
