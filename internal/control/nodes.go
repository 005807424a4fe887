package control

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"database/sql"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"

	"github.com/burrow-vpn/burrow/internal/access"
)

const nodeColumns = `id, name, role, public_key, short_id, created_at, revoked,
	ep_addr, ep_sni, ep_public_key, ep_short_id, ep_fingerprint, ep_cover,
	st_version, st_last_seen, st_users_online, st_bytes_up, st_bytes_down, st_applied_version, st_health`

func scanNode(sc scanner) (*Node, error) {
	var (
		n                 Node
		role, pub, sid    string
		created, lastSeen int64
		online            int64
		endpoint          = &n.Endpoint
		status            = &n.Status
	)
	err := sc.Scan(&n.ID, &n.Name, &role, &pub, &sid, &created, &n.Revoked,
		&endpoint.Addr, &endpoint.SNI, &endpoint.PublicKey, &endpoint.ShortID, &endpoint.Fingerprint, &endpoint.Cover,
		&status.Version, &lastSeen, &online, &status.BytesUp, &status.BytesDown, &status.AppliedVersion, &status.Health)
	if err != nil {
		return nil, err
	}
	n.Role = Role(role)
	k, err := base64.RawURLEncoding.DecodeString(pub)
	if err != nil || len(k) != ed25519.PublicKeySize {
		return nil, fmt.Errorf("node %d: corrupt stored public key", n.ID)
	}
	n.PublicKey = k
	if b, err := hex.DecodeString(sid); err != nil || len(b) != len(n.ShortID) {
		return nil, fmt.Errorf("node %d: corrupt stored short id", n.ID)
	} else {
		copy(n.ShortID[:], b)
	}
	n.CreatedAt, status.LastSeen, status.UsersOnline = fromUnix(created), fromUnix(lastSeen), int(online)
	return &n, nil
}

// newIdentity returns a fresh Ed25519 key pair and REALITY short ID.
func newIdentity() (ed25519.PrivateKey, [8]byte) {
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		panic(err) // crypto/rand never fails
	}
	var sid [8]byte
	rand.Read(sid[:])
	return priv, sid
}

func encodePub(priv ed25519.PrivateKey) string {
	return base64.RawURLEncoding.EncodeToString(priv.Public().(ed25519.PublicKey))
}

// CreateNode implements Store.
func (s *SQLStore) CreateNode(ctx context.Context, name string, role Role) (*Node, error) {
	what := fmt.Sprintf("create node %.80q", name)
	if err := access.ValidateName(name); err != nil {
		return nil, wrap(what, err)
	}
	if _, err := ParseRole(string(role)); err != nil {
		return nil, wrap(what, err)
	}
	key := access.NameKey(name)
	priv, sid := newIdentity()
	var id int64
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		var revoked bool
		err := s.row(ctx, tx, `SELECT revoked FROM nodes WHERE name_key = ?`, key).Scan(&revoked)
		switch {
		case err == nil && revoked:
			return fmt.Errorf("%w: node %q was revoked; give the new node another name", ErrNodeRevoked, name)
		case err == nil:
			return fmt.Errorf("%w: a node is called %q", access.ErrExists, name)
		case !errors.Is(err, sql.ErrNoRows):
			return err
		}
		return s.row(ctx, tx, `INSERT INTO nodes (name, name_key, role, public_key, short_id, created_at)
			VALUES (?, ?, ?, ?, ?, ?) RETURNING id`,
			name, key, string(role), encodePub(priv), hex.EncodeToString(sid[:]), s.now().Unix()).Scan(&id)
	})
	if err != nil {
		return nil, wrap(what, err)
	}
	n, err := s.NodeByID(ctx, id)
	if err != nil {
		return nil, err
	}
	n.PrivateKey = priv
	return n, nil
}

// RekeyNode implements Store.
func (s *SQLStore) RekeyNode(ctx context.Context, id int64) (*Node, error) {
	what := fmt.Sprintf("rekey node %d", id)
	priv, sid := newIdentity()
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		v, err := s.nextVersion(ctx, tx)
		if err != nil {
			return err
		}
		if err := s.liveNode(ctx, tx, id, ""); err != nil {
			return err
		}
		if _, err := s.exec(ctx, tx, `UPDATE nodes SET public_key = ?, short_id = ? WHERE id = ?`,
			encodePub(priv), hex.EncodeToString(sid[:]), id); err != nil {
			return err
		}
		// A relay's credential at its exits derives from its key.
		return s.appendChange(ctx, tx, Change{Version: v, Kind: ChangeNodeChanged, Node: id})
	})
	if err != nil {
		return nil, wrap(what, err)
	}
	n, err := s.NodeByID(ctx, id)
	if err != nil {
		return nil, err
	}
	n.PrivateKey = priv
	return n, nil
}

// liveNode checks in tx that node id exists, is not revoked and, unless
// role is "", has that role. It locks the node's row on PostgreSQL.
func (s *SQLStore) liveNode(ctx context.Context, tx *sql.Tx, id int64, role Role) error {
	var revoked bool
	var r string
	err := s.row(ctx, tx, `SELECT revoked, role FROM nodes WHERE id = ?`+s.d.forUpdate, id).Scan(&revoked, &r)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return fmt.Errorf("node %d: %w", id, access.ErrNotFound)
	case err != nil:
		return err
	case revoked:
		return fmt.Errorf("node %d: %w", id, ErrNodeRevoked)
	case role != "" && Role(r) != role:
		return fmt.Errorf("node %d is %s, not %s: %w", id, Role(r).withArticle(), role.withArticle(), access.ErrInvalid)
	}
	return nil
}

func (s *SQLStore) nodeWhere(ctx context.Context, what, where string, arg any) (*Node, error) {
	var n *Node
	err := s.retrying(ctx, func() (err error) {
		n, err = scanNode(s.row(ctx, s.db, `SELECT `+nodeColumns+` FROM nodes WHERE `+where, arg))
		return err
	})
	if errors.Is(err, sql.ErrNoRows) {
		return nil, notFound(what)
	}
	return n, wrap(what, err)
}

// NodeByID implements Store.
func (s *SQLStore) NodeByID(ctx context.Context, id int64) (*Node, error) {
	return s.nodeWhere(ctx, fmt.Sprintf("node %d", id), `id = ?`, id)
}

// NodeByName implements Store.
func (s *SQLStore) NodeByName(ctx context.Context, name string) (*Node, error) {
	return s.nodeWhere(ctx, fmt.Sprintf("node %.80q", name), `name_key = ?`, access.NameKey(name))
}

// NodeByKey implements Store.
func (s *SQLStore) NodeByKey(ctx context.Context, pub ed25519.PublicKey) (*Node, error) {
	if len(pub) != ed25519.PublicKeySize {
		return nil, wrap("node by key", invalid("public key", "%d bytes, want %d", len(pub), ed25519.PublicKeySize))
	}
	return s.nodeWhere(ctx, "node by key", `public_key = ?`, base64.RawURLEncoding.EncodeToString(pub))
}

// ListNodes implements Store.
func (s *SQLStore) ListNodes(ctx context.Context) ([]*Node, error) {
	var out []*Node
	err := s.retrying(ctx, func() (err error) {
		out, err = s.listNodes(ctx, s.db)
		return err
	})
	return out, wrap("list nodes", err)
}

func (s *SQLStore) listNodes(ctx context.Context, q dbtx) ([]*Node, error) {
	rows, err := s.rows(ctx, q, `SELECT `+nodeColumns+` FROM nodes ORDER BY id`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []*Node
	for rows.Next() {
		n, err := scanNode(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, n)
	}
	return out, rows.Err()
}

// RevokeNode implements Store.
func (s *SQLStore) RevokeNode(ctx context.Context, id int64) error {
	what := fmt.Sprintf("revoke node %d", id)
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		v, err := s.nextVersion(ctx, tx)
		if err != nil {
			return err
		}
		if err := s.liveNode(ctx, tx, id, ""); errors.Is(err, ErrNodeRevoked) {
			return errNoChange
		} else if err != nil {
			return err
		}
		for _, q := range []string{
			`UPDATE nodes SET revoked = 1 WHERE id = ?`,
			`DELETE FROM relay_paths WHERE relay_id = ? OR exit_id = ?`,
			`DELETE FROM leases WHERE node_id = ?`,
		} {
			args := []any{id}
			if strings.Count(q, "?") == 2 {
				args = append(args, id)
			}
			if _, err := s.exec(ctx, tx, q, args...); err != nil {
				return err
			}
		}
		return s.appendChange(ctx, tx, Change{Version: v, Kind: ChangeNodeRevoked, Node: id})
	})
	if err != nil {
		return wrap(what, err)
	}
	s.wake.notify()
	return nil
}

// RegisterNode implements Store.
func (s *SQLStore) RegisterNode(ctx context.Context, id int64, ep Endpoint) error {
	what := fmt.Sprintf("register node %d", id)
	if err := ep.validate(); err != nil {
		return wrap(what, err)
	}
	return wrap(what, s.inTx(ctx, func(tx *sql.Tx) error {
		v, err := s.nextVersion(ctx, tx)
		if err != nil {
			return err
		}
		if err := s.liveNode(ctx, tx, id, ""); err != nil {
			return err
		}
		var cur Endpoint
		if err := s.row(ctx, tx, `SELECT ep_addr, ep_sni, ep_public_key, ep_short_id, ep_fingerprint, ep_cover FROM nodes WHERE id = ?`, id).
			Scan(&cur.Addr, &cur.SNI, &cur.PublicKey, &cur.ShortID, &cur.Fingerprint, &cur.Cover); err != nil {
			return err
		}
		if cur == ep {
			return errNoChange // a node registers each time it connects
		}
		if _, err := s.exec(ctx, tx, `UPDATE nodes SET ep_addr = ?, ep_sni = ?, ep_public_key = ?, ep_short_id = ?,
			ep_fingerprint = ?, ep_cover = ? WHERE id = ?`, ep.Addr, ep.SNI, ep.PublicKey, ep.ShortID, ep.Fingerprint, ep.Cover, id); err != nil {
			return err
		}
		return s.appendChange(ctx, tx, Change{Version: v, Kind: ChangeNodeChanged, Node: id})
	}))
}

// UpdateNodeStatus implements Store.
func (s *SQLStore) UpdateNodeStatus(ctx context.Context, id int64, st NodeStatus) error {
	what := fmt.Sprintf("node %d status", id)
	if err := st.validate(); err != nil {
		return wrap(what, err)
	}
	return wrap(what, s.inTx(ctx, func(tx *sql.Tx) error {
		if err := s.liveNode(ctx, tx, id, ""); err != nil {
			return err
		}
		_, err := s.exec(ctx, tx, `UPDATE nodes SET st_version = ?, st_last_seen = ?, st_users_online = ?,
			st_bytes_up = ?, st_bytes_down = ?, st_applied_version = ?, st_health = ? WHERE id = ?`,
			st.Version, s.now().Unix(), st.UsersOnline, st.BytesUp, st.BytesDown, st.AppliedVersion, st.Health, id)
		return err
	}))
}

// AddRelayPath implements Store.
func (s *SQLStore) AddRelayPath(ctx context.Context, relay, exit int64) error {
	what := fmt.Sprintf("relay path %d to %d", relay, exit)
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		v, err := s.nextVersion(ctx, tx)
		if err != nil {
			return err
		}
		// Lock in ID order, as everywhere, so two writers never deadlock.
		for _, n := range []struct {
			id   int64
			role Role
		}{{min(relay, exit), roleOf(relay, exit, min(relay, exit))}, {max(relay, exit), roleOf(relay, exit, max(relay, exit))}} {
			if err := s.liveNode(ctx, tx, n.id, n.role); err != nil {
				return err
			}
		}
		var n int
		if err := s.row(ctx, tx, `SELECT COUNT(*) FROM relay_paths WHERE relay_id = ? AND exit_id = ?`, relay, exit).Scan(&n); err != nil {
			return err
		}
		if n > 0 {
			return errNoChange
		}
		if _, err := s.exec(ctx, tx, `INSERT INTO relay_paths (relay_id, exit_id, created_at) VALUES (?, ?, ?)`,
			relay, exit, s.now().Unix()); err != nil {
			return err
		}
		return s.appendChange(ctx, tx, Change{Version: v, Kind: ChangeRelayPathAdded, Node: relay, Exit: exit})
	})
	if err != nil {
		return wrap(what, err)
	}
	s.wake.notify()
	return nil
}

func roleOf(relay, exit, id int64) Role {
	if id == relay {
		return RoleRelay
	}
	return RoleExit
}

// RemoveRelayPath implements Store.
func (s *SQLStore) RemoveRelayPath(ctx context.Context, relay, exit int64) error {
	what := fmt.Sprintf("relay path %d to %d", relay, exit)
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		v, err := s.nextVersion(ctx, tx)
		if err != nil {
			return err
		}
		res, err := s.exec(ctx, tx, `DELETE FROM relay_paths WHERE relay_id = ? AND exit_id = ?`, relay, exit)
		if err != nil {
			return err
		}
		if n, err := res.RowsAffected(); err != nil {
			return err
		} else if n == 0 {
			return access.ErrNotFound
		}
		return s.appendChange(ctx, tx, Change{Version: v, Kind: ChangeRelayPathRemoved, Node: relay, Exit: exit})
	})
	if err != nil {
		return wrap(what, err)
	}
	s.wake.notify()
	return nil
}

// RelayPaths implements Store.
func (s *SQLStore) RelayPaths(ctx context.Context) ([]RelayPath, error) {
	var out []RelayPath
	err := s.retrying(ctx, func() (err error) {
		out, err = s.relayPaths(ctx, s.db)
		return err
	})
	return out, wrap("relay paths", err)
}

func (s *SQLStore) relayPaths(ctx context.Context, q dbtx) ([]RelayPath, error) {
	rows, err := s.rows(ctx, q, `SELECT relay_id, exit_id, created_at FROM relay_paths ORDER BY relay_id, exit_id`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []RelayPath
	for rows.Next() {
		var p RelayPath
		var at int64
		if err := rows.Scan(&p.Relay, &p.Exit, &at); err != nil {
			return nil, err
		}
		p.CreatedAt = fromUnix(at)
		out = append(out, p)
	}
	return out, rows.Err()
}
