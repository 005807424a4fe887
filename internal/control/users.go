package control

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math"
	"sort"
	"time"

	"github.com/burrow-vpn/burrow/internal/access"
)

// The users table and its rules are access's (internal/access/doc.go); the
// methods here are access.Store's, plus a change log entry for every write
// a node must apply.

const userColumns = access.UserColumns // access.UserQuery.Page selects them

type scanner interface{ Scan(dest ...any) error }

func scanUser(sc scanner) (*access.User, error) {
	var (
		u                             access.User
		uuid                          string
		created, expires, periodStart int64
	)
	err := sc.Scan(&u.ID, &u.Name, &uuid, &created, &u.Quota, &expires, &u.Reset, &u.Note, &u.Revoked,
		&u.BytesUp, &u.BytesDown, &u.LastSeenDay, &u.SubToken, &periodStart)
	if err != nil {
		return nil, err
	}
	if u.UUID, err = access.ParseUUID(uuid); err != nil {
		return nil, fmt.Errorf("user %d: corrupt stored uuid", u.ID)
	}
	u.CreatedAt, u.ExpiresAt, u.PeriodStart = fromUnix(created), fromUnix(expires), fromUnix(periodStart)
	return &u, nil
}

// userWhere reads one user with q (the database, or a transaction).
func (s *SQLStore) userWhere(ctx context.Context, q dbtx, what, where string, arg any) (*access.User, error) {
	var u *access.User
	read := func() (err error) {
		u, err = scanUser(s.row(ctx, q, `SELECT `+userColumns+` FROM users WHERE `+where, arg))
		return err
	}
	var err error
	if _, inTx := q.(*sql.Tx); inTx {
		err = read()
	} else {
		err = s.retrying(ctx, read)
	}
	if errors.Is(err, sql.ErrNoRows) {
		return nil, notFound(what)
	}
	return u, wrap(what, err)
}

// logUser appends a ChangeUser with user id's row as tx sees it now. The
// caller took version v with nextVersion at the start of tx.
func (s *SQLStore) logUser(ctx context.Context, tx *sql.Tx, v, id int64) error {
	u, err := s.userWhere(ctx, tx, "log change", `id = ?`, id)
	if err != nil {
		return err
	}
	return s.appendChange(ctx, tx, Change{Version: v, Kind: ChangeUser, User: u})
}

// CreateUser implements access.Store.
func (s *SQLStore) CreateUser(ctx context.Context, nu access.NewUser) (*access.User, error) {
	now := s.now().UTC().Truncate(time.Second)
	what := fmt.Sprintf("create user %.80q", nu.Name)
	if err := access.ValidateName(nu.Name); err != nil {
		return nil, wrap(what, err)
	}
	if err := validateUserFields(nu.Quota, nu.ExpiresAt, &nu.Reset, nu.Note, now); err != nil {
		return nil, wrap(what, err)
	}
	key := access.NameKey(nu.Name)
	var u *access.User
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		v, err := s.nextVersion(ctx, tx)
		if err != nil {
			return err
		}
		var n int
		if err := s.row(ctx, tx, `SELECT COUNT(*) FROM users WHERE name_key = ?`, key).Scan(&n); err != nil {
			return err
		}
		if n > 0 {
			return access.ErrExists
		}
		var id int64
		err = s.row(ctx, tx, `INSERT INTO users
			(name, name_key, uuid, sub_token, created_at, quota, expires_at, reset, note, period_start)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id`,
			nu.Name, key, access.FormatUUID(access.NewUUID()), access.NewSubToken(), now.Unix(), nu.Quota,
			toUnix(nu.ExpiresAt), nu.Reset, nu.Note, now.Unix()).Scan(&id)
		if err != nil {
			return err
		}
		if u, err = s.userWhere(ctx, tx, what, `id = ?`, id); err != nil {
			return err
		}
		return s.appendChange(ctx, tx, Change{Version: v, Kind: ChangeUser, User: u})
	})
	if err != nil {
		return nil, wrap(what, err)
	}
	s.wake.notify()
	return u, nil
}

// validateUserFields checks what access.NewUser.validate checks besides the
// name, normalising reset.
func validateUserFields(quota int64, expires time.Time, reset *string, note string, now time.Time) error {
	if quota < 0 {
		return invalid("quota", "%d is negative", quota)
	}
	if !expires.IsZero() && !expires.After(now) {
		return invalid("expiry", "%s is in the past", expires.UTC().Format(time.RFC3339))
	}
	r, err := access.ParseReset(*reset)
	if err != nil {
		return err
	}
	*reset = r
	return access.ValidateNote(note)
}

// UserByName implements access.Store.
func (s *SQLStore) UserByName(ctx context.Context, name string) (*access.User, error) {
	return s.userWhere(ctx, s.db, fmt.Sprintf("user %.80q", name), `name_key = ?`, access.NameKey(name))
}

// UserByUUID implements access.Store.
func (s *SQLStore) UserByUUID(ctx context.Context, uuid [16]byte) (*access.User, error) {
	return s.userWhere(ctx, s.db, "user by uuid", `uuid = ?`, access.FormatUUID(uuid))
}

// UserBySubToken implements access.Store.
func (s *SQLStore) UserBySubToken(ctx context.Context, token string) (*access.User, error) {
	return s.userWhere(ctx, s.db, "user by subscription token", `sub_token = ?`, token)
}

// ListUsers implements access.Store.
func (s *SQLStore) ListUsers(ctx context.Context) ([]*access.User, error) {
	var users []*access.User
	err := s.retrying(ctx, func() (err error) {
		users, err = s.listUsers(ctx, s.db)
		return err
	})
	return users, wrap("list users", err)
}

func (s *SQLStore) listUsers(ctx context.Context, q dbtx) ([]*access.User, error) {
	rows, err := s.rows(ctx, q, `SELECT `+userColumns+` FROM users ORDER BY id`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var users []*access.User
	for rows.Next() {
		u, err := scanUser(rows)
		if err != nil {
			return nil, err
		}
		users = append(users, u)
	}
	return users, rows.Err()
}

// UpdateUser implements access.Store.
func (s *SQLStore) UpdateUser(ctx context.Context, id int64, upd access.UserUpdate) (*access.User, error) {
	now := s.now().UTC().Truncate(time.Second)
	what := fmt.Sprintf("update user %d", id)
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		v, err := s.nextVersion(ctx, tx)
		if err != nil {
			return err
		}
		u, err := s.userWhere(ctx, tx, what, `id = ?`+s.d.forUpdate, id)
		if err != nil {
			return err
		}
		if err := applyUpdate(u, upd, now); err != nil {
			return err
		}
		_, err = s.exec(ctx, tx, `UPDATE users SET quota = ?, expires_at = ?, reset = ?, note = ?, period_start = ?
			WHERE id = ?`, u.Quota, toUnix(u.ExpiresAt), u.Reset, u.Note, toUnix(u.PeriodStart), id)
		if err != nil {
			return err
		}
		return s.logUser(ctx, tx, v, id)
	})
	if err != nil {
		return nil, wrap(what, err)
	}
	s.wake.notify()
	return s.userWhere(ctx, s.db, what, `id = ?`, id)
}

// applyUpdate changes u as access.SQLiteStore.UpdateUser does.
func applyUpdate(u *access.User, upd access.UserUpdate, now time.Time) error {
	oldReset := u.Reset
	if upd.Quota != nil {
		u.Quota = *upd.Quota
	}
	if upd.ExpiresAt != nil {
		u.ExpiresAt = upd.ExpiresAt.UTC().Truncate(time.Second)
	}
	if upd.Reset != nil {
		u.Reset = *upd.Reset
	}
	if upd.Note != nil {
		u.Note = *upd.Note
	}
	expires := u.ExpiresAt
	if upd.ExpiresAt == nil {
		expires = time.Time{} // keep an already-passed expiry when only other fields change
	}
	if err := validateUserFields(u.Quota, expires, &u.Reset, u.Note, now); err != nil {
		return err
	}
	if u.Reset != oldReset {
		u.PeriodStart = now
	}
	return nil
}

// setRevoked revokes or enables a user, logging it if it changed anything.
func (s *SQLStore) setRevoked(ctx context.Context, what string, id int64, revoked bool) error {
	want, was := 0, 1
	if revoked {
		want, was = 1, 0
	}
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		v, err := s.nextVersion(ctx, tx)
		if err != nil {
			return err
		}
		res, err := s.exec(ctx, tx, `UPDATE users SET revoked = ? WHERE id = ? AND revoked = ?`, want, id, was)
		if err != nil {
			return err
		}
		if n, err := res.RowsAffected(); err != nil {
			return err
		} else if n == 0 {
			if _, err := s.userWhere(ctx, tx, what, `id = ?`, id); err != nil {
				return err
			}
			return errNoChange // already so
		}
		return s.logUser(ctx, tx, v, id)
	})
	if err != nil {
		return wrap(what, err)
	}
	s.wake.notify()
	return nil
}

// RevokeUser implements access.Store.
func (s *SQLStore) RevokeUser(ctx context.Context, id int64) error {
	return s.setRevoked(ctx, fmt.Sprintf("revoke user %d", id), id, true)
}

// EnableUser implements access.Store.
func (s *SQLStore) EnableUser(ctx context.Context, id int64) error {
	return s.setRevoked(ctx, fmt.Sprintf("enable user %d", id), id, false)
}

// RotateUUID implements access.Store.
func (s *SQLStore) RotateUUID(ctx context.Context, id int64) (*access.User, error) {
	what := fmt.Sprintf("rotate uuid of user %d", id)
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		v, err := s.nextVersion(ctx, tx)
		if err != nil {
			return err
		}
		res, err := s.exec(ctx, tx, `UPDATE users SET uuid = ? WHERE id = ?`, access.FormatUUID(access.NewUUID()), id)
		if err != nil {
			return err
		}
		if n, err := res.RowsAffected(); err != nil {
			return err
		} else if n == 0 {
			return access.ErrNotFound
		}
		return s.logUser(ctx, tx, v, id)
	})
	if err != nil {
		return nil, wrap(what, err)
	}
	s.wake.notify()
	return s.userWhere(ctx, s.db, what, `id = ?`, id)
}

// ResetTraffic implements access.Store.
func (s *SQLStore) ResetTraffic(ctx context.Context, id int64, periodStart time.Time) error {
	what := fmt.Sprintf("reset traffic of user %d", id)
	if periodStart.IsZero() {
		return wrap(what, invalid("period start", "zero time"))
	}
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		v, err := s.nextVersion(ctx, tx)
		if err != nil {
			return err
		}
		var cur int64
		err = s.row(ctx, tx, `SELECT period_start FROM users WHERE id = ?`+s.d.forUpdate, id).Scan(&cur)
		if errors.Is(err, sql.ErrNoRows) {
			return access.ErrNotFound
		}
		if err != nil {
			return err
		}
		if cur >= periodStart.Unix() {
			return errNoChange // this reset already happened
		}
		if _, err = s.exec(ctx, tx, `UPDATE users SET bytes_up = 0, bytes_down = 0, period_start = ? WHERE id = ?`,
			periodStart.Unix(), id); err != nil {
			return err
		}
		return s.logUser(ctx, tx, v, id)
	})
	if err != nil {
		return wrap(what, err)
	}
	s.wake.notify()
	return nil
}

// AddTraffic implements access.Store: counters only, nothing logged, no
// node's totals (see PushTraffic).
func (s *SQLStore) AddTraffic(ctx context.Context, deltas map[int64]access.Traffic, day string) error {
	if err := checkDeltas(deltas, day); err != nil {
		return wrap("add traffic", err)
	}
	if len(deltas) == 0 {
		return nil
	}
	var pruned string
	err := s.inTx(ctx, func(tx *sql.Tx) (err error) {
		pruned, err = s.addCounters(ctx, tx, deltas, day)
		return err
	})
	if err != nil {
		return wrap("add traffic", err)
	}
	s.dailyCommitted(pruned)
	return nil
}

func checkDeltas(deltas map[int64]access.Traffic, day string) error {
	if err := access.ValidateDay(day); err != nil {
		return err
	}
	for id, t := range deltas {
		if t.Up < 0 || t.Down < 0 {
			return fmt.Errorf("user %d: %w", id, invalid("traffic", "negative delta"))
		}
	}
	return nil
}

// sortedIDs returns the keys of deltas in order: rows are locked in ID
// order, so concurrent pushes never deadlock.
func sortedIDs(deltas map[int64]access.Traffic) []int64 {
	ids := make([]int64, 0, len(deltas))
	for id := range deltas {
		ids = append(ids, id)
	}
	sort.Slice(ids, func(i, j int) bool { return ids[i] < ids[j] })
	return ids
}

// addCounters adds deltas to the users' counters and their rows of day in
// traffic_daily, saturating at math.MaxInt64, and moves last_seen_day
// forward to day. Unknown users are skipped. It returns what pruneDaily
// did, for dailyCommitted once tx commits.
func (s *SQLStore) addCounters(ctx context.Context, tx *sql.Tx, deltas map[int64]access.Traffic, day string) (string, error) {
	for _, id := range sortedIDs(deltas) {
		t := deltas[id]
		res, err := s.exec(ctx, tx, `UPDATE users SET
			bytes_up   = CASE WHEN bytes_up   > ? THEN ? ELSE bytes_up   + ? END,
			bytes_down = CASE WHEN bytes_down > ? THEN ? ELSE bytes_down + ? END,
			last_seen_day = CASE WHEN last_seen_day < ? THEN ? ELSE last_seen_day END
			WHERE id = ?`,
			int64(math.MaxInt64)-t.Up, int64(math.MaxInt64), t.Up,
			int64(math.MaxInt64)-t.Down, int64(math.MaxInt64), t.Down,
			day, day, id)
		if err != nil {
			return "", err
		}
		n, err := res.RowsAffected()
		if err != nil {
			return "", err
		}
		if n == 0 {
			continue // an unknown user: no daily row either
		}
		if err := s.addDaily(ctx, tx, id, t, day); err != nil {
			return "", err
		}
	}
	return s.pruneDaily(ctx, tx)
}
