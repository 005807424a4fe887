package control

import (
	"context"
	"encoding/json"
	"strings"

	"github.com/burrow-vpn/burrow/internal/access"
)

// QueryUsers returns one page of the users q selects, newest first, and how
// many it selects in all, as access.SQLiteStore.QueryUsers does
// (internal/access/query.go): the web panel's users page. The filters are
// evaluated on the stored counters.
func (s *SQLStore) QueryUsers(ctx context.Context, q access.UserQuery) ([]*access.User, int, error) {
	const what = "query users"
	if q.Limit < 1 || q.Limit > access.MaxPage || q.Offset < 0 {
		return nil, 0, wrap(what, invalid("page", "limit %d, offset %d", q.Limit, q.Offset))
	}
	where, args, err := s.userFilter(q)
	if err != nil {
		return nil, 0, wrap(what, err)
	}
	var (
		users []*access.User
		total int
	)
	// A search reads every name anyway: then one pass, with the count taken
	// by a window over the selected rows before the page is cut. Without
	// one, the page stops after Limit rows and the count runs apart on
	// the indexes (a window would materialize every row). A page past the
	// end needs a count of its own either way.
	window := q.Search != ""
	cols := userColumns + `, 0`
	if window {
		cols = userColumns + `, COUNT(*) OVER ()`
	}
	count := func() error {
		return s.row(ctx, s.db, `SELECT COUNT(*) FROM users WHERE `+where, args...).Scan(&total)
	}
	err = s.retrying(ctx, func() error {
		users, total = users[:0], 0
		if !window {
			if err := count(); err != nil {
				return err
			}
		}
		var ignored int
		dst := &total
		if !window {
			dst = &ignored
		}
		rows, err := s.rows(ctx, s.db, `SELECT `+cols+` FROM users WHERE `+where+
			` ORDER BY id DESC LIMIT ? OFFSET ?`, append(args[:len(args):len(args)], q.Limit, q.Offset)...)
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
		return count()
	})
	if err != nil {
		return nil, 0, wrap(what, err)
	}
	return users, total, nil
}

// userFilter returns the SQL condition selecting q's users and its
// arguments, in the store's dialect.
func (s *SQLStore) userFilter(q access.UserQuery) (string, []any, error) {
	pg := s.d.name == "postgres"
	now := q.Now.Unix()
	conds := []string{"TRUE"}
	var args []any
	if q.Search != "" {
		key := access.NameKey(q.Search) // always valid UTF-8
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
	case access.FilterAll:
	case access.FilterActive:
		conds = append(conds, `revoked = 0 AND over_quota = 0 AND (expires_at = 0 OR expires_at > ?)`)
		args = append(args, now)
	case access.FilterExpiring:
		conds = append(conds, `revoked = 0 AND expires_at > ? AND expires_at <= ?`)
		args = append(args, now, q.Now.Add(access.ExpiringWithin).Unix())
	case access.FilterOverQuota:
		conds = append(conds, `over_quota = 1`)
	case access.FilterRevoked:
		conds = append(conds, `revoked = 1`)
	case access.FilterOnline:
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

// countScanner scans a user row followed by the window count.
type countScanner struct {
	sc    scanner
	total *int
}

func (c countScanner) Scan(dest ...any) error { return c.sc.Scan(append(dest, c.total)...) }
