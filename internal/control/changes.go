package control

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"time"

	"github.com/burrow-vpn/burrow/internal/access"
)

// MaxChanges is the most changes one Changes call returns.
const MaxChanges = 10000

// nextVersion takes the next change log version in tx. It must be the
// transaction's first write: the head row stays locked until commit, so
// logged writes commit one at a time in version order (PostgreSQL), and
// a rolled-back transaction gives its version back (no gaps).
func (s *SQLStore) nextVersion(ctx context.Context, tx *sql.Tx) (int64, error) {
	var v int64
	err := s.row(ctx, tx, `UPDATE change_head SET version = version + 1 WHERE id = 1 RETURNING version`).Scan(&v)
	if err != nil {
		return 0, fmt.Errorf("next version: %w", err)
	}
	return v, nil
}

// userRow is a user as the change log stores it (JSON in changes.data).
type userRow struct {
	ID          int64  `json:"id"`
	Name        string `json:"name"`
	UUID        string `json:"uuid"`
	SubToken    string `json:"sub_token"`
	CreatedAt   int64  `json:"created_at"`
	Quota       int64  `json:"quota"`
	ExpiresAt   int64  `json:"expires_at"`
	Reset       string `json:"reset"`
	Note        string `json:"note"`
	Revoked     bool   `json:"revoked"`
	BytesUp     int64  `json:"bytes_up"`
	BytesDown   int64  `json:"bytes_down"`
	LastSeenDay string `json:"last_seen_day"`
	PeriodStart int64  `json:"period_start"`
}

func encodeUser(u *access.User) ([]byte, error) {
	return json.Marshal(userRow{u.ID, u.Name, access.FormatUUID(u.UUID), u.SubToken, toUnix(u.CreatedAt), u.Quota,
		toUnix(u.ExpiresAt), u.Reset, u.Note, u.Revoked, u.BytesUp, u.BytesDown, u.LastSeenDay, toUnix(u.PeriodStart)})
}

func decodeUser(b []byte) (*access.User, error) {
	var r userRow
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, err
	}
	id, err := access.ParseUUID(r.UUID)
	if err != nil {
		return nil, err
	}
	return &access.User{ID: r.ID, Name: r.Name, UUID: id, SubToken: r.SubToken, CreatedAt: fromUnix(r.CreatedAt),
		Quota: r.Quota, ExpiresAt: fromUnix(r.ExpiresAt), Reset: r.Reset, Note: r.Note, Revoked: r.Revoked,
		BytesUp: r.BytesUp, BytesDown: r.BytesDown, LastSeenDay: r.LastSeenDay, PeriodStart: fromUnix(r.PeriodStart)}, nil
}

// appendChange writes c (its Version from nextVersion) to the log in tx,
// and on PostgreSQL queues a NOTIFY that is sent when tx commits.
func (s *SQLStore) appendChange(ctx context.Context, tx *sql.Tx, c Change) error {
	if err := s.logChange(ctx, tx, c); err != nil {
		return err
	}
	return s.notifyChange(ctx, tx, c.Version)
}

// logChange writes c to the log in tx, without notifying.
func (s *SQLStore) logChange(ctx context.Context, tx *sql.Tx, c Change) error {
	var data []byte
	if c.User != nil {
		var err error
		if data, err = encodeUser(c.User); err != nil {
			return err
		}
	}
	_, err := s.exec(ctx, tx, `INSERT INTO changes (version, kind, at, node_id, exit_id, data) VALUES (?, ?, ?, ?, ?, ?)`,
		c.Version, string(c.Kind), s.now().Unix(), c.Node, c.Exit, string(data))
	if err != nil {
		return fmt.Errorf("log change: %w", err)
	}
	return nil
}

// notifyChange queues, on PostgreSQL, a NOTIFY of version v sent when tx
// commits.
func (s *SQLStore) notifyChange(ctx context.Context, tx *sql.Tx, v int64) error {
	if !s.d.notify {
		return nil
	}
	if _, err := s.exec(ctx, tx, `SELECT pg_notify('`+notifyChannel+`', ?)`, fmt.Sprint(v)); err != nil {
		return fmt.Errorf("notify change: %w", err)
	}
	return nil
}

// Version implements Store.
func (s *SQLStore) Version(ctx context.Context) (int64, error) {
	var v int64
	err := s.retrying(ctx, func() error {
		return s.row(ctx, s.db, `SELECT version FROM change_head WHERE id = 1`).Scan(&v)
	})
	return v, wrap("version", err)
}

// Changes implements Store.
func (s *SQLStore) Changes(ctx context.Context, after int64, limit int) ([]Change, error) {
	if limit < 1 || limit > MaxChanges {
		return nil, wrap("changes", invalid("limit", "%d is not 1..%d", limit, MaxChanges))
	}
	if after < 0 {
		return nil, wrap("changes", invalid("after", "%d is negative", after))
	}
	var out []Change
	err := s.retrying(ctx, func() error {
		var err error
		if out, err = s.readChanges(ctx, after, limit); err != nil || len(out) > 0 {
			return err
		}
		// Nothing above after: up to date, ahead of the log, or pruned.
		// Entries up to the head were visible before it was read, so a
		// second read that still finds none means they are gone.
		var head int64
		if err := s.row(ctx, s.db, `SELECT version FROM change_head WHERE id = 1`).Scan(&head); err != nil {
			return err
		}
		if after > head {
			return fmt.Errorf("%w: version %d is ahead of the log's %d (was the database restored?)", ErrResync, after, head)
		}
		if after == head {
			return nil
		}
		out, err = s.readChanges(ctx, after, limit)
		if err == nil && len(out) == 0 {
			err = fmt.Errorf("%w: the log after version %d was pruned", ErrResync, after)
		}
		return err
	})
	if err != nil {
		return nil, wrap("changes", err)
	}
	return out, nil
}

// readChanges reads up to limit entries above after. Versions are gap-free
// and visible in order, so a first entry other than after+1 means the ones
// before it were pruned.
func (s *SQLStore) readChanges(ctx context.Context, after int64, limit int) ([]Change, error) {
	rows, err := s.rows(ctx, s.db, `SELECT version, kind, at, node_id, exit_id, data FROM changes
		WHERE version > ? ORDER BY version LIMIT ?`, after, limit)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []Change
	for rows.Next() {
		var c Change
		var kind, data string
		var at int64
		if err := rows.Scan(&c.Version, &kind, &at, &c.Node, &c.Exit, &data); err != nil {
			return nil, err
		}
		c.Kind, c.At = ChangeKind(kind), fromUnix(at)
		if data != "" {
			if c.User, err = decodeUser([]byte(data)); err != nil {
				return nil, fmt.Errorf("change %d: corrupt user row: %w", c.Version, err)
			}
		}
		out = append(out, c)
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	if len(out) > 0 && out[0].Version != after+1 {
		return nil, fmt.Errorf("%w: the log between versions %d and %d was pruned", ErrResync, after, out[0].Version)
	}
	return out, nil
}

// PruneChanges deletes the log's entries up to version through (at most
// the newest) and returns how many it deleted. A node that has not applied
// them yet gets ErrResync from Changes and starts again from a Snapshot; so
// prune below what the live nodes have applied (NodeStatus.AppliedVersion),
// or what is older than any node may reasonably stay away.
func (s *SQLStore) PruneChanges(ctx context.Context, through int64) (int64, error) {
	var n int64
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		res, err := s.exec(ctx, tx, `DELETE FROM changes WHERE version <= ?`, through)
		if err != nil {
			return err
		}
		n, err = res.RowsAffected()
		return err
	})
	return n, wrap("prune changes", err)
}

// WaitChange implements Store.
func (s *SQLStore) WaitChange(ctx context.Context, after int64) (int64, error) {
	for {
		woken := s.wake.wait() // before reading, so a change in between is not missed
		v, err := s.Version(ctx)
		if err != nil || v > after {
			return v, err
		}
		var poll <-chan time.Time
		var t *time.Timer
		if d := s.poll(); d > 0 {
			t = time.NewTimer(d)
			poll = t.C
		}
		select {
		case <-ctx.Done():
		case <-woken:
		case <-poll:
		}
		if t != nil {
			t.Stop()
		}
		if ctx.Err() != nil {
			return 0, ctx.Err()
		}
	}
}

// Snapshot implements Store.
func (s *SQLStore) Snapshot(ctx context.Context) (*Snapshot, error) {
	var snap *Snapshot
	err := s.retrying(ctx, func() error {
		tx, err := s.db.BeginTx(ctx, s.d.snapshot)
		if err != nil {
			return err
		}
		defer tx.Rollback()
		snap = &Snapshot{}
		if err := s.row(ctx, tx, `SELECT version FROM change_head WHERE id = 1`).Scan(&snap.Version); err != nil {
			return err
		}
		if snap.Users, err = s.listUsers(ctx, tx); err != nil {
			return err
		}
		if snap.Nodes, err = s.listNodes(ctx, tx); err != nil {
			return err
		}
		for _, n := range snap.Nodes {
			n.Status = NodeStatus{}
		}
		if snap.Paths, err = s.relayPaths(ctx, tx); err != nil {
			return err
		}
		return tx.Commit()
	})
	if err != nil {
		return nil, wrap("snapshot", err)
	}
	return snap, nil
}
