package control

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/burrow-vpn/burrow/internal/access"
)

// SQLStore is the Store on a SQL database: PostgreSQL (OpenPostgres) for
// a fleet, or an SQLite file (OpenSQLite) for one machine. Both run the
// same queries; a dialect covers their few differences (placeholders, row
// locks, column types, which errors mean "try again").
type SQLStore struct {
	db   *sql.DB
	path string // the SQLite file or the PostgreSQL DSN it was opened with
	d    *dialect
	now  func() time.Time // the clock; tests replace it
	wake waker
	// poll is how often WaitChange re-reads the version when it cannot
	// rely on being woken (SQLite: other processes' writes; PostgreSQL:
	// while the LISTEN connection is down).
	poll func() time.Duration
	stop func() // ends background work (PostgreSQL's listener); Close calls it

	mu          sync.Mutex
	dailyPruned string // the day traffic_daily was last pruned by this process; guarded by mu
}

var _ Store = (*SQLStore)(nil)

// dialect is what differs between the backends.
type dialect struct {
	name       string // "postgres" or "sqlite"
	dollar     bool   // placeholders are $1, $2… rather than ?
	forUpdate  string // row lock suffix for SELECT in a write transaction
	migrations []migration
	unique     func(error) bool // a unique constraint was violated
	retry      func(error) bool // the transaction may be run again from the start
	snapshot   *sql.TxOptions   // a transaction that reads one consistent state
	notify     bool             // PostgreSQL: NOTIFY burrow_changes on each change
}

// Backend returns "postgres" or "sqlite".
func (s *SQLStore) Backend() string { return s.d.name }

// Close stops background work and closes the database.
func (s *SQLStore) Close() error {
	if s.stop != nil {
		s.stop()
	}
	return s.db.Close()
}

// bind rewrites ? placeholders into $n for PostgreSQL. Queries here never
// hold a ? inside a string literal.
func (d *dialect) bind(q string) string {
	if !d.dollar {
		return q
	}
	var b strings.Builder
	n := 0
	for i := 0; i < len(q); i++ {
		if q[i] == '?' {
			n++
			b.WriteByte('$')
			b.WriteString(strconv.Itoa(n))
			continue
		}
		b.WriteByte(q[i])
	}
	return b.String()
}

// dbtx is what *sql.DB and *sql.Tx have in common.
type dbtx interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

func (s *SQLStore) exec(ctx context.Context, q dbtx, query string, args ...any) (sql.Result, error) {
	return q.ExecContext(ctx, s.d.bind(query), args...)
}

func (s *SQLStore) row(ctx context.Context, q dbtx, query string, args ...any) *sql.Row {
	return q.QueryRowContext(ctx, s.d.bind(query), args...)
}

func (s *SQLStore) rows(ctx context.Context, q dbtx, query string, args ...any) (*sql.Rows, error) {
	return q.QueryContext(ctx, s.d.bind(query), args...)
}

// retryFor bounds how long a transaction or read is retried while the
// database says "busy" (SQLite) or "serialization failure/deadlock"
// (PostgreSQL).
const retryFor = access.BusyTimeout

// errNoChange rolls back a logged write that turned out to change nothing,
// so it takes no version; inTx returns nil for it.
var errNoChange = errors.New("no change")

// inTx runs fn in a write transaction, committing if it returns nil, and
// runs it again from the start while the database asks for that. A
// unique-constraint failure becomes access.ErrExists.
func (s *SQLStore) inTx(ctx context.Context, fn func(*sql.Tx) error) error {
	return s.retrying(ctx, func() error {
		tx, err := s.db.BeginTx(ctx, nil)
		if err != nil {
			return fmt.Errorf("begin: %w", err)
		}
		if err := fn(tx); err != nil {
			tx.Rollback()
			if errors.Is(err, errNoChange) {
				return nil
			}
			if s.d.unique(err) {
				return fmt.Errorf("%w (%v)", access.ErrExists, err)
			}
			return err
		}
		if err := tx.Commit(); err != nil {
			return fmt.Errorf("commit: %w", err)
		}
		return nil
	})
}

// retrying runs fn until it returns something the dialect does not retry,
// for up to retryFor. fn must be safe to repeat.
func (s *SQLStore) retrying(ctx context.Context, fn func() error) error {
	deadline := time.Now().Add(retryFor)
	wait := time.Millisecond
	for {
		err := fn()
		if err == nil || !s.d.retry(err) || time.Now().After(deadline) {
			return err
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
		wait = min(2*wait, 50*time.Millisecond)
	}
}

// wrap adds "control: what: " to err once.
func wrap(what string, err error) error {
	if err == nil || strings.HasPrefix(err.Error(), "control: ") {
		return err
	}
	return fmt.Errorf("control: %s: %w", what, err)
}

func notFound(what string) error { return fmt.Errorf("control: %s: %w", what, access.ErrNotFound) }

func invalid(what, format string, args ...any) error {
	return fmt.Errorf("%s: %s: %w", what, fmt.Sprintf(format, args...), access.ErrInvalid)
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

// waker wakes every WaitChange in this process when a change commits.
type waker struct {
	mu sync.Mutex
	ch chan struct{} // closed and replaced by notify; guarded by mu
}

// wait returns a channel closed at the next notify.
func (w *waker) wait() <-chan struct{} {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.ch == nil {
		w.ch = make(chan struct{})
	}
	return w.ch
}

func (w *waker) notify() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.ch != nil {
		close(w.ch)
		w.ch = nil
	}
}
