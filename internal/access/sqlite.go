package access

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// BusyTimeout is how long a statement waits for another connection or process
// holding the write lock before failing with "database is locked".
const BusyTimeout = 30 * time.Second

// SQLiteStore is the embedded Store: one SQLite file in WAL mode, shared
// safely by every process that opens it. Every write runs in a BEGIN
// IMMEDIATE transaction, so writers queue on the database lock (up to
// BusyTimeout) instead of failing when a read lock cannot be upgraded.
type SQLiteStore struct {
	db    *sql.DB
	now   func() time.Time // the clock; tests replace it
	queue atomic.Bool      // AddTraffic also queues batches for a control plane (replica.go)

	mu          sync.Mutex
	dailyPruned string // the day traffic_daily was last pruned in this process
}

var _ Store = (*SQLiteStore)(nil)

// OpenSQLite opens (creating it, mode 0600, if missing) the database at path
// and applies pending migrations.
func OpenSQLite(path string) (*SQLiteStore, error) {
	if path == "" || strings.ContainsAny(path, "?#") {
		return nil, fmt.Errorf("access: open %q: path must be non-empty and contain no '?' or '#'", path)
	}
	if err := sqliteAvailable(); err != nil {
		return nil, err
	}
	// The database holds credentials: create it private before SQLite does.
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("access: open: %w", err)
	}
	f.Close()
	if strings.HasPrefix(path, "file:") {
		path = "./" + path // a plain file name, not an SQLite URI
	}
	dsn := path + fmt.Sprintf("?_busy_timeout=%d&_journal_mode=WAL&_foreign_keys=1&_synchronous=FULL&_txlock=immediate",
		BusyTimeout.Milliseconds())
	db, err := sql.Open("sqlite", dsn)
	if err != nil {
		return nil, fmt.Errorf("access: open %s: %w", path, err)
	}
	s := &SQLiteStore{db: db, now: time.Now}
	if err := migrate(context.Background(), db, s.now().Unix()); err != nil {
		db.Close()
		return nil, err
	}
	return s, nil
}

// Close closes the database.
func (s *SQLiteStore) Close() error { return s.db.Close() }

// SchemaVersion returns the highest migration applied.
func (s *SQLiteStore) SchemaVersion(ctx context.Context) (int, error) {
	var v int
	err := s.db.QueryRowContext(ctx, `SELECT COALESCE(MAX(version), 0) FROM schema_migrations`).Scan(&v)
	return v, err
}

// UserColumns are the users table's columns as scanUser reads them; the
// control plane's store reads its users table with the same list.
const UserColumns = userColumns

const userColumns = `id, name, uuid, created_at, quota, expires_at, reset, note, revoked,
	bytes_up, bytes_down, last_seen_day, sub_token, period_start`

type scanner interface{ Scan(dest ...any) error }

func scanUser(sc scanner) (*User, error) {
	var (
		u                             User
		uuid                          string
		created, expires, periodStart int64
	)
	err := sc.Scan(&u.ID, &u.Name, &uuid, &created, &u.Quota, &expires, &u.Reset, &u.Note, &u.Revoked,
		&u.BytesUp, &u.BytesDown, &u.LastSeenDay, &u.SubToken, &periodStart)
	if err != nil {
		return nil, err
	}
	if u.UUID, err = ParseUUID(uuid); err != nil {
		return nil, fmt.Errorf("user %d: corrupt stored uuid", u.ID)
	}
	u.CreatedAt, u.ExpiresAt, u.PeriodStart = fromUnix(created), fromUnix(expires), fromUnix(periodStart)
	return &u, nil
}

func toUnix(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.Unix()
}

func fromUnix(n int64) time.Time {
	if n == 0 {
		return time.Time{}
	}
	return time.Unix(n, 0).UTC()
}

// userWhere reads one user. Outside a transaction (q is the *sql.DB) it
// retries while the database is busy.
func (s *SQLiteStore) userWhere(ctx context.Context, q queryer, what, where string, arg any) (*User, error) {
	var u *User
	read := func() (err error) {
		u, err = scanUser(q.QueryRowContext(ctx, `SELECT `+userColumns+` FROM users WHERE `+where, arg))
		return err
	}
	var err error
	if _, inTx := q.(*sql.Tx); inTx {
		err = read()
	} else {
		err = retryBusy(ctx, read)
	}
	if errors.Is(err, sql.ErrNoRows) {
		return nil, notFound(what)
	}
	if err != nil {
		return nil, fmt.Errorf("access: %s: %w", what, err)
	}
	return u, nil
}

type queryer interface {
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

// CreateUser implements Store.
func (s *SQLiteStore) CreateUser(ctx context.Context, nu NewUser) (*User, error) {
	now := s.now().UTC().Truncate(time.Second)
	if err := nu.validate(now); err != nil {
		return nil, fmt.Errorf("access: create user: %w", err)
	}
	key := NameKey(nu.Name)
	var id int64
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		var n int
		if err := tx.QueryRowContext(ctx, `SELECT COUNT(*) FROM users WHERE name_key = ?`, key).Scan(&n); err != nil {
			return err
		}
		if n > 0 {
			return ErrExists
		}
		res, err := tx.ExecContext(ctx, `INSERT INTO users
			(name, name_key, uuid, sub_token, created_at, quota, expires_at, reset, note, period_start)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
			nu.Name, key, FormatUUID(NewUUID()), NewSubToken(), now.Unix(), nu.Quota, toUnix(nu.ExpiresAt),
			nu.Reset, nu.Note, now.Unix())
		if err != nil {
			return err
		}
		id, err = res.LastInsertId()
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("access: create user %q: %w", nu.Name, err)
	}
	return s.userWhere(ctx, s.db, "create user", `id = ?`, id)
}

// UserByName implements Store.
func (s *SQLiteStore) UserByName(ctx context.Context, name string) (*User, error) {
	return s.userWhere(ctx, s.db, fmt.Sprintf("user %.80q", name), `name_key = ?`, NameKey(name))
}

// UserByUUID implements Store.
func (s *SQLiteStore) UserByUUID(ctx context.Context, uuid [16]byte) (*User, error) {
	return s.userWhere(ctx, s.db, "user by uuid", `uuid = ?`, FormatUUID(uuid))
}

// UserBySubToken implements Store.
func (s *SQLiteStore) UserBySubToken(ctx context.Context, token string) (*User, error) {
	return s.userWhere(ctx, s.db, "user by subscription token", `sub_token = ?`, token)
}

// ListUsers implements Store.
func (s *SQLiteStore) ListUsers(ctx context.Context) ([]*User, error) {
	var users []*User
	err := retryBusy(ctx, func() error {
		users = users[:0]
		rows, err := s.db.QueryContext(ctx, `SELECT `+userColumns+` FROM users ORDER BY id`)
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
		return rows.Err()
	})
	if err != nil {
		return nil, fmt.Errorf("access: list users: %w", err)
	}
	return users, nil
}

// UpdateUser implements Store.
func (s *SQLiteStore) UpdateUser(ctx context.Context, id int64, upd UserUpdate) (*User, error) {
	now := s.now().UTC().Truncate(time.Second)
	what := fmt.Sprintf("update user %d", id)
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		u, err := s.userWhere(ctx, tx, what, `id = ?`, id)
		if err != nil {
			return err
		}
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
		if upd.ExpiresAt == nil && !u.ExpiresAt.IsZero() {
			// Keep an already-passed expiry when only other fields change.
			if err := validateFields(u.Quota, time.Time{}, &u.Reset, u.Note, now); err != nil {
				return err
			}
		} else if err := validateFields(u.Quota, u.ExpiresAt, &u.Reset, u.Note, now); err != nil {
			return err
		}
		if u.Reset != oldReset {
			u.PeriodStart = now
		}
		_, err = tx.ExecContext(ctx, `UPDATE users SET quota = ?, expires_at = ?, reset = ?, note = ?, period_start = ?
			WHERE id = ?`, u.Quota, toUnix(u.ExpiresAt), u.Reset, u.Note, toUnix(u.PeriodStart), id)
		return err
	})
	if err != nil {
		return nil, wrapOnce(what, err)
	}
	return s.userWhere(ctx, s.db, what, `id = ?`, id)
}

// RevokeUser implements Store.
func (s *SQLiteStore) RevokeUser(ctx context.Context, id int64) error {
	return s.updateOne(ctx, fmt.Sprintf("revoke user %d", id), `UPDATE users SET revoked = 1 WHERE id = ?`, id)
}

// EnableUser implements Store.
func (s *SQLiteStore) EnableUser(ctx context.Context, id int64) error {
	return s.updateOne(ctx, fmt.Sprintf("enable user %d", id), `UPDATE users SET revoked = 0 WHERE id = ?`, id)
}

// RotateUUID implements Store.
func (s *SQLiteStore) RotateUUID(ctx context.Context, id int64) (*User, error) {
	what := fmt.Sprintf("rotate uuid of user %d", id)
	if err := s.updateOne(ctx, what, `UPDATE users SET uuid = ? WHERE id = ?`, FormatUUID(NewUUID()), id); err != nil {
		return nil, err
	}
	return s.userWhere(ctx, s.db, what, `id = ?`, id)
}

// ResetTraffic implements Store.
func (s *SQLiteStore) ResetTraffic(ctx context.Context, id int64, periodStart time.Time) error {
	what := fmt.Sprintf("reset traffic of user %d", id)
	if periodStart.IsZero() {
		return fmt.Errorf("access: %s: %w", what, invalid("period start", "zero time"))
	}
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		var cur int64
		err := tx.QueryRowContext(ctx, `SELECT period_start FROM users WHERE id = ?`, id).Scan(&cur)
		if errors.Is(err, sql.ErrNoRows) {
			return ErrNotFound
		}
		if err != nil || cur >= periodStart.Unix() {
			return err // nil: this reset already happened
		}
		_, err = tx.ExecContext(ctx, `UPDATE users SET bytes_up = 0, bytes_down = 0, period_start = ? WHERE id = ?`,
			periodStart.Unix(), id)
		return err
	})
	if err != nil {
		return wrapOnce(what, err)
	}
	return nil
}

// AddTraffic implements Store.
func (s *SQLiteStore) AddTraffic(ctx context.Context, deltas map[int64]Traffic, day string) error {
	if err := ValidateDay(day); err != nil {
		return fmt.Errorf("access: add traffic: %w", err)
	}
	for id, t := range deltas {
		if t.Up < 0 || t.Down < 0 {
			return fmt.Errorf("access: add traffic: user %d: %w", id, invalid("traffic", "negative delta"))
		}
	}
	if len(deltas) == 0 {
		return nil
	}
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		stmt, err := tx.PrepareContext(ctx, `UPDATE users SET
			bytes_up   = CASE WHEN bytes_up   > ?1 - ?2 THEN ?1 ELSE bytes_up   + ?2 END,
			bytes_down = CASE WHEN bytes_down > ?1 - ?3 THEN ?1 ELSE bytes_down + ?3 END,
			last_seen_day = CASE WHEN last_seen_day < ?4 THEN ?4 ELSE last_seen_day END
			WHERE id = ?5`)
		if err != nil {
			return err
		}
		defer stmt.Close()
		for id, t := range deltas {
			if _, err := stmt.ExecContext(ctx, int64(math.MaxInt64), t.Up, t.Down, day, id); err != nil {
				return err
			}
		}
		if s.queue.Load() {
			if err := queueTraffic(ctx, tx, deltas, day); err != nil {
				return err
			}
		}
		return s.addDailyLocked(ctx, tx, deltas, day)
	})
	if err != nil {
		return fmt.Errorf("access: add traffic: %w", err)
	}
	return nil
}

// updateOne runs one UPDATE in a write transaction and maps "no row" to ErrNotFound.
func (s *SQLiteStore) updateOne(ctx context.Context, what, query string, args ...any) error {
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, query, args...)
		if err != nil {
			return err
		}
		if n, err := res.RowsAffected(); err != nil {
			return err
		} else if n == 0 {
			return ErrNotFound
		}
		return nil
	})
	if err != nil {
		return wrapOnce(what, err)
	}
	return nil
}

// wrapOnce adds "access: what: " unless err already carries it.
func wrapOnce(what string, err error) error {
	if strings.HasPrefix(err.Error(), "access: ") {
		return err
	}
	return fmt.Errorf("access: %s: %w", what, err)
}

// inTx runs fn in a BEGIN IMMEDIATE transaction (see the DSN's _txlock),
// committing if it returns nil. A unique-constraint failure becomes ErrExists.
func (s *SQLiteStore) inTx(ctx context.Context, fn func(*sql.Tx) error) error {
	tx, err := beginRetry(ctx, s.db)
	if err != nil {
		return fmt.Errorf("begin: %w", err)
	}
	if err := fn(tx); err != nil {
		tx.Rollback()
		if isUniqueViolation(err) {
			return ErrExists
		}
		return err
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("commit: %w", err)
	}
	return nil
}

// beginRetry begins an immediate transaction. SQLite's busy handler covers
// almost every wait, but it returns SQLITE_BUSY at once where waiting could
// deadlock, notably while another process turns a new database into WAL
// mode; since nothing has happened yet, beginning again is safe. It retries
// for up to BusyTimeout.
func beginRetry(ctx context.Context, db *sql.DB) (*sql.Tx, error) {
	var tx *sql.Tx
	err := retryBusy(ctx, func() (err error) {
		tx, err = db.BeginTx(ctx, nil)
		return err
	})
	return tx, err
}

// retryBusy runs fn until it returns something other than SQLITE_BUSY, for
// up to BusyTimeout. fn must be safe to repeat (a read, or a begin).
func retryBusy(ctx context.Context, fn func() error) error {
	deadline := time.Now().Add(BusyTimeout)
	wait := time.Millisecond
	for {
		err := fn()
		if err == nil || !isBusy(err) || time.Now().After(deadline) {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(wait):
		}
		wait = min(2*wait, 50*time.Millisecond)
	}
}
