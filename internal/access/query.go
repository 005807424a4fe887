package access

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"
)

// Filters of UserQuery.
const (
	FilterAll       = ""
	FilterActive    = "active"     // may connect: not revoked, not expired, under quota
	FilterExpiring  = "expiring"   // not revoked, expiring within ExpiringWithin
	FilterOverQuota = "over_quota" // used the whole quota of the period
	FilterRevoked   = "revoked"
	FilterOnline    = "online" // in UserQuery.Online
)

// ExpiringWithin is how soon an expiry counts as "expiring".
const ExpiringWithin = 7 * 24 * time.Hour

// MaxPage is the most users QueryUsers returns at once.
const MaxPage = 500

// UserQuery selects a page of users, newest first.
type UserQuery struct {
	Search string  // part of the name, any case; "" = every name
	Filter string  // one of the Filter constants
	Online []int64 // ids of the users connected now, for FilterOnline
	Now    time.Time
	Offset int
	Limit  int // 1..MaxPage
}

// QueryUsers returns one page of the users q selects and how many it
// selects in all. The filters are evaluated on the stored counters (a
// period that just ended counts until its reset, which the server does
// within a minute).
func (s *SQLiteStore) QueryUsers(ctx context.Context, q UserQuery) ([]*User, int, error) {
	if q.Limit < 1 || q.Limit > MaxPage || q.Offset < 0 {
		return nil, 0, fmt.Errorf("access: query users: %w", invalid("page", "limit %d, offset %d", q.Limit, q.Offset))
	}
	where, args, err := q.where()
	if err != nil {
		return nil, 0, fmt.Errorf("access: query users: %w", err)
	}
	var (
		users []*User
		total int
	)
	// A search reads every name anyway: then one pass, with the count taken
	// by a window over the selected rows before the page is cut. Without
	// one, the page stops after Limit rows and the count runs apart on
	// the indexes (a window would materialize every row). A page past the
	// end needs a count of its own either way.
	cols, window := userColumns+`, 0`, q.Search != ""
	if window {
		cols = userColumns + `, COUNT(*) OVER ()`
	}
	err = retryBusy(ctx, func() error {
		users, total = users[:0], 0
		if !window {
			if err := s.db.QueryRowContext(ctx, `SELECT COUNT(*) FROM users WHERE `+where, args...).Scan(&total); err != nil {
				return err
			}
		}
		var ignored int
		dst := &total
		if !window {
			dst = &ignored
		}
		rows, err := s.db.QueryContext(ctx, `SELECT `+cols+` FROM users WHERE `+where+
			` ORDER BY id DESC LIMIT ? OFFSET ?`, append(args, q.Limit, q.Offset)...)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			u, err := scanUser(countScanner{rows, dst})
			if err != nil {
				return err
			}
			users = append(users, u)
		}
		if err := rows.Err(); err != nil || !window || len(users) > 0 || q.Offset == 0 {
			return err
		}
		return s.db.QueryRowContext(ctx, `SELECT COUNT(*) FROM users WHERE `+where, args...).Scan(&total)
	})
	if err != nil {
		return nil, 0, fmt.Errorf("access: query users: %w", err)
	}
	return users, total, nil
}

// where returns the SQL condition for q and its arguments.
func (q *UserQuery) where() (string, []any, error) {
	now := q.Now.Unix()
	conds := []string{"1"}
	var args []any
	if q.Search != "" {
		conds = append(conds, `instr(name_key, ?) > 0`)
		args = append(args, NameKey(q.Search))
	}
	switch q.Filter {
	case FilterAll:
	case FilterActive:
		conds = append(conds, `revoked = 0 AND over_quota = 0 AND (expires_at = 0 OR expires_at > ?)`)
		args = append(args, now)
	case FilterExpiring:
		conds = append(conds, `revoked = 0 AND expires_at > ? AND expires_at <= ?`)
		args = append(args, now, q.Now.Add(ExpiringWithin).Unix())
	case FilterOverQuota:
		conds = append(conds, `over_quota = 1`)
	case FilterRevoked:
		conds = append(conds, `revoked = 1`)
	case FilterOnline:
		ids, err := json.Marshal(q.Online)
		if err != nil {
			return "", nil, err
		}
		conds = append(conds, `id IN (SELECT value FROM json_each(?))`)
		args = append(args, string(ids))
	default:
		return "", nil, invalid("filter", "%.20q: want active, expiring, over_quota, revoked or online", q.Filter)
	}
	return strings.Join(conds, " AND "), args, nil
}

// countScanner scans a user row followed by the window count.
type countScanner struct {
	sc    scanner
	total *int
}

func (c countScanner) Scan(dest ...any) error { return c.sc.Scan(append(dest, c.total)...) }
