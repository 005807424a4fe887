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

// pruneDaily drops the rows older than access.DailyKeep days before day,
// unless this process has done so for day already (the traffic_daily_day
// index makes it a range delete). The caller calls dailyCommitted once tx
// has committed.
func (s *SQLStore) pruneDaily(ctx context.Context, tx *sql.Tx, day string) error {
	s.mu.Lock()
	due := s.dailyPruned != day
	s.mu.Unlock()
	if !due {
		return nil
	}
	d, err := time.Parse(time.DateOnly, day)
	if err != nil {
		return err // checkDeltas validated it
	}
	if _, err := s.exec(ctx, tx, `DELETE FROM traffic_daily WHERE day < ?`,
		d.AddDate(0, 0, -access.DailyKeep).Format(time.DateOnly)); err != nil {
		return fmt.Errorf("prune daily traffic: %w", err)
	}
	return nil
}

// dailyCommitted records that a transaction which ran addCounters for day
// committed: its prune, if one was due, is done.
func (s *SQLStore) dailyCommitted(day string) {
	s.mu.Lock()
	s.dailyPruned = day
	s.mu.Unlock()
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
