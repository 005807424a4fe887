package access

import (
	"context"
	"database/sql"
	"fmt"
	"math"
	"time"
)

// DailyKeep is how many days of per-user daily traffic are kept.
const DailyKeep = 90

// DayTraffic is one user's bytes on one UTC day.
type DayTraffic struct {
	Day string // YYYY-MM-DD
	Traffic
}

// addDailyLocked adds deltas to each user's row for day in traffic_daily,
// inside AddTraffic's transaction (the user must exist: unknown ids are
// skipped, as AddTraffic skips them). Once a day per process it drops rows
// older than DailyKeep days.
func (s *SQLiteStore) addDailyLocked(ctx context.Context, tx *sql.Tx, deltas map[int64]Traffic, day string) error {
	stmt, err := tx.PrepareContext(ctx, `INSERT INTO traffic_daily (user_id, day, up, down)
		SELECT ?1, ?2, ?3, ?4 WHERE EXISTS (SELECT 1 FROM users WHERE id = ?1)
		ON CONFLICT (user_id, day) DO UPDATE SET
		up   = CASE WHEN up   > ?5 - ?3 THEN ?5 ELSE up   + ?3 END,
		down = CASE WHEN down > ?5 - ?4 THEN ?5 ELSE down + ?4 END`)
	if err != nil {
		return err
	}
	defer stmt.Close()
	for id, t := range deltas {
		if t.Up == 0 && t.Down == 0 {
			continue
		}
		if _, err := stmt.ExecContext(ctx, id, day, t.Up, t.Down, int64(math.MaxInt64)); err != nil {
			return fmt.Errorf("daily traffic: %w", err)
		}
	}
	s.mu.Lock()
	due := s.dailyPruned != day
	s.mu.Unlock()
	if !due {
		return nil
	}
	d, _ := time.Parse(time.DateOnly, day) // validated by AddTraffic
	if _, err := tx.ExecContext(ctx, `DELETE FROM traffic_daily WHERE day < ?`,
		d.AddDate(0, 0, -DailyKeep).Format(time.DateOnly)); err != nil {
		return fmt.Errorf("prune daily traffic: %w", err)
	}
	s.mu.Lock()
	s.dailyPruned = day
	s.mu.Unlock()
	return nil
}

// DailyTraffic returns the user's traffic per day from day since on, oldest
// first; days without traffic are absent.
func (s *SQLiteStore) DailyTraffic(ctx context.Context, userID int64, since string) ([]DayTraffic, error) {
	if err := ValidateDay(since); err != nil {
		return nil, fmt.Errorf("access: daily traffic: %w", err)
	}
	var out []DayTraffic
	err := retryBusy(ctx, func() error {
		out = out[:0]
		rows, err := s.db.QueryContext(ctx, `SELECT day, up, down FROM traffic_daily
			WHERE user_id = ? AND day >= ? ORDER BY day`, userID, since)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var d DayTraffic
			if err := rows.Scan(&d.Day, &d.Up, &d.Down); err != nil {
				return err
			}
			out = append(out, d)
		}
		return rows.Err()
	})
	if err != nil {
		return nil, fmt.Errorf("access: daily traffic of user %d: %w", userID, err)
	}
	return out, nil
}
