package control

import (
	"context"
	"database/sql"
	"fmt"
	"math"

	"github.com/burrow-vpn/burrow/internal/access"
)

// Row locks are always taken in this order, so concurrent writers on
// PostgreSQL never deadlock: the change log head, then a node, then users
// in ID order (each with its row of the day in traffic_daily), then leases
// and node totals.

// PushTraffic implements Store.
func (s *SQLStore) PushTraffic(ctx context.Context, node int64, seq uint64, deltas map[int64]access.Traffic, day string) (bool, error) {
	what := fmt.Sprintf("push traffic of node %d", node)
	if seq == 0 || seq > math.MaxInt64 {
		return false, wrap(what, invalid("seq", "%d is not 1..2^63-1", seq))
	}
	if err := checkDeltas(deltas, day); err != nil {
		return false, wrap(what, err)
	}
	day = pushDay(day, s.now())
	applied, pruned := false, ""
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		applied = false
		if err := s.liveNode(ctx, tx, node, ""); err != nil {
			return err
		}
		var last int64
		if err := s.row(ctx, tx, `SELECT push_seq FROM nodes WHERE id = ?`, node).Scan(&last); err != nil {
			return err
		}
		if int64(seq) <= last {
			return errNoChange // a retry of a push already applied
		}
		var err error
		if pruned, err = s.addCounters(ctx, tx, deltas, day); err != nil {
			return err
		}
		for _, id := range sortedIDs(deltas) {
			if err := s.addNodeTotals(ctx, tx, node, id, deltas[id]); err != nil {
				return err
			}
		}
		if _, err := s.exec(ctx, tx, `UPDATE nodes SET push_seq = ? WHERE id = ?`, int64(seq), node); err != nil {
			return err
		}
		applied = true
		return nil
	})
	if err != nil {
		return false, wrap(what, err)
	}
	if applied {
		s.dailyCommitted(pruned)
	}
	return applied, nil
}

// addNodeTotals adds t to node's totals for user and spends node's lease on
// user by the bytes moved. A user that does not exist is skipped.
func (s *SQLStore) addNodeTotals(ctx context.Context, tx *sql.Tx, node, user int64, t access.Traffic) error {
	var n int
	if err := s.row(ctx, tx, `SELECT COUNT(*) FROM users WHERE id = ?`, user).Scan(&n); err != nil || n == 0 {
		return err
	}
	const maxI = int64(math.MaxInt64)
	_, err := s.exec(ctx, tx, `INSERT INTO node_traffic (node_id, user_id, bytes_up, bytes_down) VALUES (?, ?, ?, ?)
		ON CONFLICT (node_id, user_id) DO UPDATE SET
		bytes_up   = CASE WHEN node_traffic.bytes_up   > ? THEN ? ELSE node_traffic.bytes_up   + excluded.bytes_up   END,
		bytes_down = CASE WHEN node_traffic.bytes_down > ? THEN ? ELSE node_traffic.bytes_down + excluded.bytes_down END`,
		node, user, t.Up, t.Down, maxI-t.Up, maxI, maxI-t.Down, maxI)
	if err != nil {
		return err
	}
	return s.spendLease(ctx, tx, node, user, addSat(t.Up, t.Down))
}

// spendLease lowers node's lease on user by n bytes, not below zero.
func (s *SQLStore) spendLease(ctx context.Context, tx *sql.Tx, node, user, n int64) error {
	_, err := s.exec(ctx, tx, `UPDATE leases SET bytes = CASE WHEN bytes > ? THEN bytes - ? ELSE 0 END
		WHERE node_id = ? AND user_id = ?`, n, n, node, user)
	return err
}

func addSat(a, b int64) int64 {
	if b > 0 && a > math.MaxInt64-b {
		return math.MaxInt64
	}
	return a + b
}

// NodeTraffic implements Store.
func (s *SQLStore) NodeTraffic(ctx context.Context, node int64) (map[int64]access.Traffic, error) {
	out := map[int64]access.Traffic{}
	err := s.retrying(ctx, func() error {
		clear(out)
		rows, err := s.rows(ctx, s.db, `SELECT user_id, bytes_up, bytes_down FROM node_traffic WHERE node_id = ?`, node)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var id int64
			var t access.Traffic
			if err := rows.Scan(&id, &t.Up, &t.Down); err != nil {
				return err
			}
			out[id] = t
		}
		return rows.Err()
	})
	return out, wrap(fmt.Sprintf("traffic of node %d", node), err)
}

// LeaseQuota implements Store.
func (s *SQLStore) LeaseQuota(ctx context.Context, node, user int64, want int64) (Lease, error) {
	what := fmt.Sprintf("lease of user %d to node %d", user, node)
	if want <= 0 {
		return Lease{}, wrap(what, invalid("want", "%d is not positive", want))
	}
	var l Lease
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		l = Lease{}
		if err := s.liveNode(ctx, tx, node, ""); err != nil {
			return err
		}
		u, err := s.userWhere(ctx, tx, fmt.Sprintf("user %d", user), `id = ?`+s.d.forUpdate, user)
		if err != nil {
			return err
		}
		now := s.now()
		if u.Quota == 0 && u.Usable(now) == nil {
			l = Lease{Granted: want, Unlimited: true}
			return errNoChange // nothing to record
		}
		var all, mine int64
		err = s.row(ctx, tx, `SELECT COALESCE(SUM(bytes), 0), COALESCE(SUM(CASE WHEN node_id = ? THEN bytes ELSE 0 END), 0)
			FROM leases WHERE user_id = ? AND expires_at > ?`, node, user, now.Unix()).Scan(&all, &mine)
		if err != nil {
			return err
		}
		if u.Usable(now) == nil {
			free := u.Quota - u.Used(now) - all
			l.Granted = max(min(want, free), 0)
			if free < 2*want && all > mine {
				// Near the end, with other nodes spending too, half of
				// what is left (at least 256 KiB, if there is that
				// much), so they still find some.
				l.Granted = max(min(l.Granted, max(free/2, min(free, 256<<10))), 0)
			}
		}
		l.Spent = u.Usable(now) != nil || u.Used(now) >= u.Quota
		l.Outstanding = mine + l.Granted
		l.Expires = fromUnix(now.Add(LeaseTTL).Unix())
		_, err = s.exec(ctx, tx, `INSERT INTO leases (node_id, user_id, bytes, expires_at) VALUES (?, ?, ?, ?)
			ON CONFLICT (node_id, user_id) DO UPDATE SET bytes = excluded.bytes, expires_at = excluded.expires_at`,
			node, user, l.Outstanding, l.Expires.Unix())
		return err
	})
	if err != nil {
		return Lease{}, wrap(what, err)
	}
	return l, nil
}

// ReturnLease implements Store.
func (s *SQLStore) ReturnLease(ctx context.Context, node, user int64, unused int64) error {
	what := fmt.Sprintf("return lease of user %d by node %d", user, node)
	if unused < 0 {
		return wrap(what, invalid("unused", "%d is negative", unused))
	}
	return wrap(what, s.inTx(ctx, func(tx *sql.Tx) error {
		return s.spendLease(ctx, tx, node, user, unused)
	}))
}
