package access

import (
	"context"
	"database/sql"
	"fmt"
	"math"
)

// TelemetryCount is one row of the block telemetry (internal/telemetry):
// how many times clients reported metric (in bucket) on transport, on day.
// It names no user and no address.
type TelemetryCount struct {
	Day       string // YYYY-MM-DD, UTC
	Transport string // tcp, xhttp
	Metric    string // reports, conns_ok, conns_failed, freeze, budget, cap, reset, fallback
	Bucket    int    // freeze, budget: the least KiB of the size bucket; cap: the cap; else 0
	Count     int64
}

func (c *TelemetryCount) validate() error {
	if err := ValidateDay(c.Day); err != nil {
		return err
	}
	if !shortWord(c.Transport) || !shortWord(c.Metric) {
		return invalid("telemetry", "transport %.20q or metric %.20q is not a short lowercase word", c.Transport, c.Metric)
	}
	if c.Bucket < 0 || c.Count < 0 {
		return invalid("telemetry", "negative bucket or count")
	}
	return nil
}

// shortWord reports whether s is 1 to 16 of a-z and _.
func shortWord(s string) bool {
	if len(s) == 0 || len(s) > 16 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; !('a' <= c && c <= 'z' || c == '_') {
			return false
		}
	}
	return true
}

// AddTelemetry adds each count to its row (day, transport, metric, bucket),
// saturating at math.MaxInt64, in one transaction.
func (s *SQLiteStore) AddTelemetry(ctx context.Context, counts []TelemetryCount) error {
	for i := range counts {
		if err := counts[i].validate(); err != nil {
			return fmt.Errorf("access: add telemetry: %w", err)
		}
	}
	if len(counts) == 0 {
		return nil
	}
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		stmt, err := tx.PrepareContext(ctx, `INSERT INTO telemetry_daily (day, transport, metric, bucket, count)
			VALUES (?1, ?2, ?3, ?4, ?5)
			ON CONFLICT (day, transport, metric, bucket) DO UPDATE SET
			count = CASE WHEN count > ?6 - ?5 THEN ?6 ELSE count + ?5 END`)
		if err != nil {
			return err
		}
		defer stmt.Close()
		for _, c := range counts {
			if _, err := stmt.ExecContext(ctx, c.Day, c.Transport, c.Metric, c.Bucket, c.Count, int64(math.MaxInt64)); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("access: add telemetry: %w", err)
	}
	return nil
}

// TelemetrySince returns the rows of day since and later, newest day first,
// then by transport, metric and bucket.
func (s *SQLiteStore) TelemetrySince(ctx context.Context, since string) ([]TelemetryCount, error) {
	if err := ValidateDay(since); err != nil {
		return nil, fmt.Errorf("access: telemetry: %w", err)
	}
	var out []TelemetryCount
	err := retryBusy(ctx, func() error {
		out = out[:0]
		rows, err := s.db.QueryContext(ctx, `SELECT day, transport, metric, bucket, count FROM telemetry_daily
			WHERE day >= ? ORDER BY day DESC, transport, metric, bucket`, since)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var c TelemetryCount
			if err := rows.Scan(&c.Day, &c.Transport, &c.Metric, &c.Bucket, &c.Count); err != nil {
				return err
			}
			out = append(out, c)
		}
		return rows.Err()
	})
	if err != nil {
		return nil, fmt.Errorf("access: telemetry: %w", err)
	}
	return out, nil
}

// PruneTelemetry deletes the rows of days before before.
func (s *SQLiteStore) PruneTelemetry(ctx context.Context, before string) error {
	if err := ValidateDay(before); err != nil {
		return fmt.Errorf("access: prune telemetry: %w", err)
	}
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `DELETE FROM telemetry_daily WHERE day < ?`, before)
		return err
	})
	if err != nil {
		return fmt.Errorf("access: prune telemetry: %w", err)
	}
	return nil
}
