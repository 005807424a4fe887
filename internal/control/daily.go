package control

import (
	"context"
	"database/sql"
	"fmt"
	"math"
	"time"

	"github.com/burrow-vpn/burrow/internal/access"
)

// Each user's traffic per UTC day, as access keeps it for one server
// (internal/access/daily.go): the web panel draws it. Every write that adds
// to the users' counters (AddTraffic, PushTraffic) adds to these rows in
// the same transaction, so a push replayed with an old sequence number adds
// to neither.

// addDaily adds t to user id's row of day, saturating at math.MaxInt64.
// The caller has just updated the user's row, so it exists and is locked.
func (s *SQLStore) addDaily(ctx context.Context, tx *sql.Tx, id int64, t access.Traffic, day string) error {
	if t.Up == 0 && t.Down == 0 {
		return nil
	}
	const maxI = int64(math.MaxInt64)
	_, err := s.exec(ctx, tx, `INSERT INTO traffic_daily (user_id, day, up, down) VALUES (?, ?, ?, ?)
		ON CONFLICT (user_id, day) DO UPDATE SET
		up   = CASE WHEN traffic_daily.up   > ? THEN ? ELSE traffic_daily.up   + excluded.up   END,
		down = CASE WHEN traffic_daily.down > ? THEN ? ELSE traffic_daily.down + excluded.down END`,
		id, day, t.Up, t.Down, maxI-t.Up, maxI, maxI-t.Down, maxI)
	if err != nil {
		return fmt.Errorf("daily traffic of user %d: %w", id, err)
	}
	return nil
}

// pruneDaily drops the rows older than access.DailyKeep days before today,
// by the store's clock (never a writer's day: a node's clock running ahead
// must not erase the fleet's history), unless this process has done so
// today already (the traffic_daily_day index makes it a range delete). It
// returns the day it pruned for, "" if none; the caller passes it to
// dailyCommitted once tx has committed.
func (s *SQLStore) pruneDaily(ctx context.Context, tx *sql.Tx) (string, error) {
	now := s.now().UTC()
	today := now.Format(time.DateOnly)
	s.mu.Lock()
	due := s.dailyPruned != today
	s.mu.Unlock()
	if !due {
		return "", nil
	}
	if _, err := s.exec(ctx, tx, `DELETE FROM traffic_daily WHERE day < ?`,
		now.AddDate(0, 0, -access.DailyKeep).Format(time.DateOnly)); err != nil {
		return "", fmt.Errorf("prune daily traffic: %w", err)
	}
	return today, nil
}

// dailyCommitted records that the prune a committed transaction ran was
// for day ("" for none).
func (s *SQLStore) dailyCommitted(day string) {
	if day == "" {
		return
	}
	s.mu.Lock()
	s.dailyPruned = day
	s.mu.Unlock()
}

// pushDay is the day a node's traffic is filed under: the node's own (a
// batch sent after an outage keeps the day its bytes moved), but never
// after the control plane's tomorrow: a node whose clock runs ahead files
// under today.
func pushDay(day string, now time.Time) string {
	now = now.UTC()
	if day > now.AddDate(0, 0, 1).Format(time.DateOnly) {
		return now.Format(time.DateOnly)
	}
	return day
}

// DailyTraffic returns the user's traffic per day from day since on, oldest
// first; days without traffic are absent, as is a user that does not exist.
func (s *SQLStore) DailyTraffic(ctx context.Context, userID int64, since string) ([]access.DayTraffic, error) {
	what := fmt.Sprintf("daily traffic of user %d", userID)
	if err := access.ValidateDay(since); err != nil {
		return nil, wrap(what, err)
	}
	var out []access.DayTraffic
	err := s.retrying(ctx, func() error {
		out = out[:0]
		rows, err := s.rows(ctx, s.db, `SELECT day, up, down FROM traffic_daily
			WHERE user_id = ? AND day >= ? ORDER BY day`, userID, since)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var d access.DayTraffic
			if err := rows.Scan(&d.Day, &d.Up, &d.Down); err != nil {
				return err
			}
			out = append(out, d)
		}
		return rows.Err()
	})
	return out, wrap(what, err)
}
