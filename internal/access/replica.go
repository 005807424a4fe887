package access

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/base64"
	"errors"
	"fmt"
	"math"
)

// A node of a fleet (an exit joined to a control plane with `server init
// --join`) keeps its users.db as a replica of the control plane's users: the
// node's server reads it exactly as a single server reads its own store, so
// it keeps serving while the control plane is away, also after a restart.
// The control plane owns every user field; the replica applies its changes in
// version order (ApplyUsers, ReplaceUsers). The traffic the node counts is
// queued in numbered batches (QueueTraffic) until the control plane
// acknowledges them, so a batch sent twice is counted once there, and a
// crash loses only what the server had not flushed yet.

// ErrReplicaGap is returned by ApplyUsers when the changes do not start where
// the replica stands: the node must fetch a snapshot instead.
var ErrReplicaGap = errors.New("changes do not follow the replica's version")

// TrafficBatch is traffic counted on this node that the control plane has not
// acknowledged: one AddTraffic call, numbered.
type TrafficBatch struct {
	Seq    uint64 // increasing, never reused
	Day    string // YYYY-MM-DD (UTC)
	Deltas map[int64]Traffic
}

// QueueTraffic makes every later AddTraffic also queue its deltas as a batch
// for the control plane, in the same transaction.
func (s *SQLiteStore) QueueTraffic() { s.queue.Store(true) }

// ReplicaVersion returns the version of the last control-plane change applied
// here, 0 if none.
func (s *SQLiteStore) ReplicaVersion(ctx context.Context) (int64, error) {
	var v int64
	err := retryBusy(ctx, func() error {
		err := s.db.QueryRowContext(ctx, `SELECT version FROM replica_state WHERE id = 1`).Scan(&v)
		if errors.Is(err, sql.ErrNoRows) {
			v, err = 0, nil
		}
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("access: replica version: %w", err)
	}
	return v, nil
}

// ReplaceUsers makes the users exactly users, as of the control plane's
// version (a snapshot). Users missing from it are deleted.
func (s *SQLiteStore) ReplaceUsers(ctx context.Context, version int64, users []*User) error {
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, `DELETE FROM users`); err != nil {
			return err
		}
		if err := upsertUsers(ctx, tx, users); err != nil {
			return err
		}
		return setReplicaVersion(ctx, tx, version)
	})
	if err != nil {
		return fmt.Errorf("access: replace users at version %d: %w", version, err)
	}
	return nil
}

// ApplyUsers applies the control plane's changes after version from up to and
// including version to: users holds each changed user as it stands at to. A
// batch the replica already has (to at or below its version) is skipped; one
// that does not start at the replica's version wraps ErrReplicaGap.
func (s *SQLiteStore) ApplyUsers(ctx context.Context, from, to int64, users []*User) error {
	if to < from {
		return fmt.Errorf("access: apply changes %d..%d: %w", from, to, invalid("versions", "to before from"))
	}
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		var cur int64
		err := tx.QueryRowContext(ctx, `SELECT version FROM replica_state WHERE id = 1`).Scan(&cur)
		if err != nil && !errors.Is(err, sql.ErrNoRows) {
			return err
		}
		switch {
		case to <= cur:
			return nil
		case from != cur:
			return fmt.Errorf("replica at %d: %w", cur, ErrReplicaGap)
		}
		if err := upsertUsers(ctx, tx, users); err != nil {
			return err
		}
		return setReplicaVersion(ctx, tx, to)
	})
	if err != nil {
		return fmt.Errorf("access: apply changes %d..%d: %w", from, to, err)
	}
	return nil
}

func setReplicaVersion(ctx context.Context, tx *sql.Tx, version int64) error {
	_, err := tx.ExecContext(ctx, `INSERT INTO replica_state (id, version, next_seq) VALUES (1, ?, 1)
		ON CONFLICT (id) DO UPDATE SET version = excluded.version`, version)
	return err
}

// upsertUsers writes each user by id. A user's counters are the control
// plane's plus what this node counted and has not had acknowledged, so the
// server does not forget bytes it already let through. The subscription
// token is not the user's (nodes do not serve subscriptions): a random one
// that nobody knows fills the column.
func upsertUsers(ctx context.Context, tx *sql.Tx, users []*User) error {
	stmt, err := tx.PrepareContext(ctx, `INSERT INTO users
		(id, name, name_key, uuid, sub_token, created_at, quota, expires_at, reset, note, revoked,
		 bytes_up, bytes_down, last_seen_day, period_start)
		VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11,
		 min(?12 + (SELECT COALESCE(SUM(up), 0) FROM traffic_outbox WHERE user_id = ?1), ?16),
		 min(?13 + (SELECT COALESCE(SUM(down), 0) FROM traffic_outbox WHERE user_id = ?1), ?16),
		 ?14, ?15)
		ON CONFLICT (id) DO UPDATE SET name = excluded.name, name_key = excluded.name_key,
		 uuid = excluded.uuid, created_at = excluded.created_at, quota = excluded.quota,
		 expires_at = excluded.expires_at, reset = excluded.reset, note = excluded.note,
		 revoked = excluded.revoked, bytes_up = excluded.bytes_up, bytes_down = excluded.bytes_down,
		 last_seen_day = max(last_seen_day, excluded.last_seen_day), period_start = excluded.period_start`)
	if err != nil {
		return err
	}
	defer stmt.Close()
	for _, u := range users {
		if u.ID <= 0 || u.BytesUp < 0 || u.BytesDown < 0 {
			return fmt.Errorf("user %d: %w", u.ID, invalid("user", "bad id or counters"))
		}
		if _, err := stmt.ExecContext(ctx, u.ID, u.Name, NameKey(u.Name), FormatUUID(u.UUID), replicaSubToken(u.ID),
			toUnix(u.CreatedAt), u.Quota, toUnix(u.ExpiresAt), u.Reset, u.Note, u.Revoked,
			u.BytesUp, u.BytesDown, u.LastSeenDay, toUnix(u.PeriodStart), int64(math.MaxInt64)); err != nil {
			return fmt.Errorf("user %d: %w", u.ID, err)
		}
	}
	return nil
}

// replicaSubToken fills a replica's sub_token column, which must be unique
// and which nobody may know: the user's id, zero-padded so the tokens sort
// as the ids do (a snapshot, written in id order, appends to the column's
// index instead of inserting at random places), then 16 random bytes.
func replicaSubToken(id int64) string {
	var b [16]byte
	rand.Read(b[:])
	return fmt.Sprintf("n%019d.", id) + base64.RawURLEncoding.EncodeToString(b[:])
}

// queueTraffic records deltas as the next batch, inside AddTraffic's transaction.
func queueTraffic(ctx context.Context, tx *sql.Tx, deltas map[int64]Traffic, day string) error {
	var seq int64
	err := tx.QueryRowContext(ctx, `INSERT INTO replica_state (id, version, next_seq) VALUES (1, 0, 2)
		ON CONFLICT (id) DO UPDATE SET next_seq = next_seq + 1 RETURNING next_seq - 1`).Scan(&seq)
	if err != nil {
		return fmt.Errorf("queue traffic: %w", err)
	}
	stmt, err := tx.PrepareContext(ctx, `INSERT INTO traffic_outbox (seq, day, user_id, up, down) VALUES (?, ?, ?, ?, ?)`)
	if err != nil {
		return err
	}
	defer stmt.Close()
	for id, t := range deltas {
		if _, err := stmt.ExecContext(ctx, seq, day, id, t.Up, t.Down); err != nil {
			return fmt.Errorf("queue traffic: %w", err)
		}
	}
	return nil
}

// PendingTraffic returns up to max of the oldest batches not acknowledged, in
// order.
func (s *SQLiteStore) PendingTraffic(ctx context.Context, max int) ([]TrafficBatch, error) {
	var out []TrafficBatch
	err := retryBusy(ctx, func() error {
		out = out[:0]
		rows, err := s.db.QueryContext(ctx, `SELECT seq, day, user_id, up, down FROM traffic_outbox
			WHERE seq IN (SELECT DISTINCT seq FROM traffic_outbox ORDER BY seq LIMIT ?) ORDER BY seq`, max)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var (
				seq    uint64
				day    string
				id     int64
				up, dn int64
			)
			if err := rows.Scan(&seq, &day, &id, &up, &dn); err != nil {
				return err
			}
			if len(out) == 0 || out[len(out)-1].Seq != seq {
				out = append(out, TrafficBatch{Seq: seq, Day: day, Deltas: map[int64]Traffic{}})
			}
			out[len(out)-1].Deltas[id] = Traffic{Up: up, Down: dn}
		}
		return rows.Err()
	})
	if err != nil {
		return nil, fmt.Errorf("access: pending traffic: %w", err)
	}
	return out, nil
}

// AckTraffic forgets every batch up to and including seq: the control plane
// has counted them.
func (s *SQLiteStore) AckTraffic(ctx context.Context, seq uint64) error {
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `DELETE FROM traffic_outbox WHERE seq <= ?`, seq)
		return err
	})
	if err != nil {
		return fmt.Errorf("access: ack traffic up to %d: %w", seq, err)
	}
	return nil
}
