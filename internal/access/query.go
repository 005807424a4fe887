package access

import (
	"context"
	"database/sql"
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
	where, args, err := q.Where(SQLite)
	if err != nil {
		return nil, 0, fmt.Errorf("access: query users: %w", err)
	}
	var (
		users []*User
		total int
	)
	err = retryBusy(ctx, func() (err error) {
		users, total, err = q.Page(where, args, func(query string, args ...any) (*sql.Rows, error) {
			return s.db.QueryContext(ctx, query, args...)
		}, func(r *sql.Rows) (*User, error) { return scanUser(r) }, func(query string, args ...any) (n int, err error) {
			err = s.db.QueryRowContext(ctx, query, args...).Scan(&n)
			return n, err
		})
		return err
	})
	if err != nil {
		return nil, 0, fmt.Errorf("access: query users: %w", err)
	}
	return users, total, nil
}

// Dialects of UserQuery.Where.
const (
	SQLite   = "sqlite"
	Postgres = "postgres"
)

// Page reads q's page of the users table where the condition holds, newest
// first, and how many it selects in all: query runs a SELECT of the user
// columns, whose rows scan reads, and count a SELECT COUNT(*), both with ?
// placeholders. The page
// comes first: newest first on the primary key, it stops after Limit rows.
// A short page tells the total itself; otherwise a count runs on an index
// (name_key's for a search, which reads every name anyway). Unlike a
// COUNT(*) OVER () window, nothing is materialized per selected row: a
// search matching most of 100,000 users took a second on SQLite with the
// window.
func (q *UserQuery) Page(where string, args []any, query func(string, ...any) (*sql.Rows, error), scan func(*sql.Rows) (*User, error), count func(string, ...any) (int, error)) ([]*User, int, error) {
	rows, err := query(`SELECT `+userColumns+` FROM users WHERE `+where+
		` ORDER BY id DESC LIMIT ? OFFSET ?`, append(args[:len(args):len(args)], q.Limit, q.Offset)...)
	if err != nil {
		return nil, 0, err
	}
	defer rows.Close()
	var users []*User
	for rows.Next() {
		u, err := scan(rows)
		if err != nil {
			return nil, 0, err
		}
		users = append(users, u)
	}
	if err := rows.Err(); err != nil {
		return nil, 0, err
	}
	if n := len(users); n < q.Limit && (n > 0 || q.Offset == 0) {
		return users, q.Offset + n, nil
	}
	total, err := count(`SELECT COUNT(*) FROM users WHERE `+where, args...)
	return users, total, err
}

// Where checks q and returns the SQL condition selecting its users, with ?
// placeholders, and its arguments, in dialect (SQLite or Postgres), for a
// users table with this package's columns.
func (q *UserQuery) Where(dialect string) (string, []any, error) {
	if q.Limit < 1 || q.Limit > MaxPage || q.Offset < 0 {
		return "", nil, invalid("page", "limit %d, offset %d", q.Limit, q.Offset)
	}
	pg := dialect == Postgres
	now := q.Now.Unix()
	conds := []string{"TRUE"}
	var args []any
	if q.Search != "" {
		key := NameKey(q.Search) // always valid UTF-8
		switch {
		case strings.ContainsRune(key, 0):
			conds = append(conds, "FALSE") // in no name, and no PostgreSQL text holds it
		case pg:
			conds = append(conds, `strpos(name_key, ?) > 0`)
			args = append(args, key)
		default:
			conds = append(conds, `instr(name_key, ?) > 0`)
			args = append(args, key)
		}
	}
	switch q.Filter {
	case FilterAll:
	case FilterActive:
		// Not (expires_at = 0 OR expires_at > ?): SQLite would run an OR
		// as two index searches, one of them over every row.
		conds = append(conds, `revoked = 0 AND over_quota = 0 AND NOT (expires_at <> 0 AND expires_at <= ?)`)
		args = append(args, now)
	case FilterExpiring:
		conds = append(conds, `revoked = 0 AND expires_at > ? AND expires_at <= ?`)
		args = append(args, now, q.Now.Add(ExpiringWithin).Unix())
	case FilterOverQuota:
		conds = append(conds, `over_quota = 1`)
	case FilterRevoked:
		conds = append(conds, `revoked = 1`)
	case FilterOnline:
		// One argument however many are online: an array in PostgreSQL,
		// a JSON array in SQLite.
		if pg {
			conds = append(conds, `id = ANY(?)`)
			args = append(args, append([]int64{}, q.Online...))
			break
		}
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
