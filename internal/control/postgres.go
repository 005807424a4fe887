package control

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/stdlib"
)

// notifyChannel is the PostgreSQL channel every change is announced on
// (payload: its version), so WaitChange wakes in every process at once.
const notifyChannel = "burrow_changes"

// pgPoll is how often WaitChange re-reads the version while the LISTEN
// connection is down (notifications may have been missed).
const pgPoll = time.Second

// OpenPostgres connects to the PostgreSQL database dsn (a postgres:// URL
// or key=value string, as libpq takes), applies pending migrations, and
// starts listening for changes made by other processes.
func OpenPostgres(ctx context.Context, dsn string) (*SQLStore, error) {
	cfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		return nil, fmt.Errorf("control: postgres dsn: %w", err)
	}
	return openPostgres(ctx, dsn, cfg)
}

// openPostgres is OpenPostgres with the parsed configuration (a benchmark
// sets a tracer on it to count statements).
func openPostgres(ctx context.Context, dsn string, cfg *pgx.ConnConfig) (*SQLStore, error) {
	db := stdlib.OpenDB(*cfg)
	db.SetMaxOpenConns(16)
	db.SetMaxIdleConns(16)
	db.SetConnMaxIdleTime(5 * time.Minute)
	pingCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
	err := db.PingContext(pingCtx)
	cancel()
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("control: connect to postgres: %w", err)
	}
	l := &listener{cfg: cfg}
	s := &SQLStore{db: db, path: dsn, now: time.Now, poll: l.pollInterval, d: &dialect{
		name:       "postgres",
		dollar:     true,
		forUpdate:  " FOR UPDATE",
		migrations: postgresMigrations,
		unique:     func(err error) bool { return pgCode(err) == "23505" },
		retry: func(err error) bool {
			c := pgCode(err)
			return c == "40001" || c == "40P01" // serialization failure, deadlock
		},
		snapshot: &sql.TxOptions{Isolation: sql.LevelRepeatableRead, ReadOnly: true},
		notify:   true,
	}}
	if err := s.migrate(ctx); err != nil {
		db.Close()
		return nil, err
	}
	lctx, stop := context.WithCancel(context.Background())
	l.wg.Go(func() { l.run(lctx, &s.wake) })
	s.stop = func() { stop(); l.wg.Wait() }
	return s, nil
}

func pgCode(err error) string {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return pe.Code
	}
	return ""
}

// listener holds one connection that LISTENs on notifyChannel and wakes
// the store's waiters on every notification; it reconnects when the
// connection drops.
type listener struct {
	cfg *pgx.ConnConfig
	up  atomic.Bool // LISTEN is in place: notifications will come
	wg  sync.WaitGroup
}

func (l *listener) pollInterval() time.Duration {
	if l.up.Load() {
		return 0
	}
	return pgPoll
}

// run listens until ctx ends.
func (l *listener) run(ctx context.Context, w *waker) {
	backoff := 100 * time.Millisecond
	for ctx.Err() == nil {
		err := l.listen(ctx, w)
		l.up.Store(false)
		w.notify() // waiters re-read the version and poll until LISTEN is back
		if ctx.Err() != nil {
			return
		}
		if err == nil {
			backoff = 100 * time.Millisecond
		}
		t := time.NewTimer(backoff)
		select {
		case <-ctx.Done():
		case <-t.C:
		}
		t.Stop()
		backoff = min(2*backoff, 5*time.Second)
	}
}

// listen connects, LISTENs and relays notifications until an error.
func (l *listener) listen(ctx context.Context, w *waker) error {
	conn, err := pgx.ConnectConfig(ctx, l.cfg)
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(ctx, "LISTEN "+notifyChannel); err != nil {
		return err
	}
	l.up.Store(true)
	w.notify() // a change may have come before LISTEN took effect
	for {
		if _, err := conn.WaitForNotification(ctx); err != nil {
			return err
		}
		w.notify()
	}
}
