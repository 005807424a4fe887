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
	// The page first: newest first on the primary key, it stops after
	// Limit rows. A short page tells the total itself; otherwise a count
	// runs on an index (name_key's for a search, which reads every name
	// anyway). Unlike a COUNT(*) OVER () window, nothing is materialized
	// per selected row: a search matching most of 100,000 users took a
	// second on SQLite with the window.
	err = s.retrying(ctx, func() error {
		users, total = users[:0], 0
		rows, err := s.rows(ctx, s.db, `SELECT `+userColumns+` FROM users WHERE `+where+
			` ORDER BY id DESC LIMIT ? OFFSET ?`, append(args[:len(args):len(args)], q.Limit, q.Offset)...)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			u, err := scanUser(rows)
			if err != nil {
				return err
			}
			users = append(users, u)
		}
		if err := rows.Err(); err != nil {
			return err
		}
		if n := len(users); n < q.Limit && (n > 0 || q.Offset == 0) {
			total = q.Offset + n
			return nil
		}
		return s.row(ctx, s.db, `SELECT COUNT(*) FROM users WHERE `+where, args...).Scan(&total)
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
		// Not (expires_at = 0 OR expires_at > ?): SQLite would run an OR
		// as two index searches, one of them over every row.
		conds = append(conds, `revoked = 0 AND over_quota = 0 AND NOT (expires_at <> 0 AND expires_at <= ?)`)
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
