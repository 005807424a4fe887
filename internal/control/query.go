package control

import (
	"context"
	"database/sql"

	"github.com/burrow-vpn/burrow/internal/access"
)

// QueryUsers returns one page of the users q selects, newest first, and how
// many it selects in all, as access.SQLiteStore.QueryUsers does
// (access.UserQuery builds the query for both): the web panel's users page.
// The filters are evaluated on the stored counters.
func (s *SQLStore) QueryUsers(ctx context.Context, q access.UserQuery) ([]*access.User, int, error) {
	const what = "query users"
	dialect := access.SQLite
	if s.d.name == "postgres" {
		dialect = access.Postgres
	}
	where, args, err := q.Where(dialect)
	if err != nil {
		return nil, 0, wrap(what, err)
	}
	var (
		users []*access.User
		total int
	)
	err = s.retrying(ctx, func() (err error) {
		users, total, err = q.Page(where, args, func(query string, args ...any) (*sql.Rows, error) {
			return s.rows(ctx, s.db, query, args...)
		}, func(r *sql.Rows) (*access.User, error) { return scanUser(r) }, func(query string, args ...any) (n int, err error) {
			err = s.row(ctx, s.db, query, args...).Scan(&n)
			return n, err
		})
		return err
	})
	if err != nil {
		return nil, 0, wrap(what, err)
	}
	return users, total, nil
}
