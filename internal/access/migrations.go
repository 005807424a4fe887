package access

import (
	"context"
	"database/sql"
	"fmt"
)

// migration is one schema step. Versions start at 1 and never change once
// released: a new schema is a new migration appended to the list.
type migration struct {
	version int
	stmts   []string
}

var migrations = []migration{
	{1, []string{
		`CREATE TABLE users (
			id            INTEGER PRIMARY KEY,
			name          TEXT    NOT NULL,
			name_key      TEXT    NOT NULL UNIQUE,
			uuid          TEXT    NOT NULL UNIQUE,
			sub_token     TEXT    NOT NULL UNIQUE,
			created_at    INTEGER NOT NULL,
			quota         INTEGER NOT NULL DEFAULT 0 CHECK (quota >= 0),
			expires_at    INTEGER NOT NULL DEFAULT 0,
			reset         TEXT    NOT NULL DEFAULT 'never' CHECK (reset IN ('never', 'weekly', 'monthly')),
			note          TEXT    NOT NULL DEFAULT '',
			revoked       INTEGER NOT NULL DEFAULT 0 CHECK (revoked IN (0, 1)),
			bytes_up      INTEGER NOT NULL DEFAULT 0 CHECK (bytes_up >= 0),
			bytes_down    INTEGER NOT NULL DEFAULT 0 CHECK (bytes_down >= 0),
			last_seen_day TEXT    NOT NULL DEFAULT '',
			period_start  INTEGER NOT NULL
		) STRICT`,
	}},
	{2, []string{
		// Entry relays allowed to carry clients' connections to this exit
		// (relays.go). secret is the relay's credential; the announced_*
		// columns are what the relay last said about itself.
		`CREATE TABLE relays (
			id              INTEGER PRIMARY KEY,
			name            TEXT    NOT NULL,
			name_key        TEXT    NOT NULL UNIQUE,
			short_id        TEXT    NOT NULL UNIQUE,
			secret          TEXT    NOT NULL,
			created_at      INTEGER NOT NULL,
			revoked         INTEGER NOT NULL DEFAULT 0 CHECK (revoked IN (0, 1)),
			announced_sni   TEXT    NOT NULL DEFAULT '',
			announced_cover TEXT    NOT NULL DEFAULT '',
			announced_addr  TEXT    NOT NULL DEFAULT ''
		) STRICT`,
	}},
	{3, []string{
		// Block telemetry (telemetry.go): anonymous counts that clients
		// report, added up per UTC day. No user, no address, no time
		// finer than the day.
		`CREATE TABLE telemetry_daily (
			day       TEXT    NOT NULL,
			transport TEXT    NOT NULL,
			metric    TEXT    NOT NULL,
			bucket    INTEGER NOT NULL CHECK (bucket >= 0),
			count     INTEGER NOT NULL CHECK (count >= 0),
			PRIMARY KEY (day, transport, metric, bucket)
		) STRICT`,
	}},
	{4, []string{
		// A fleet node's replica state (replica.go): the last change of the
		// control plane applied here, and the traffic counted here that
		// the control plane has not acknowledged yet, in numbered batches.
		`CREATE TABLE replica_state (
			id       INTEGER PRIMARY KEY CHECK (id = 1),
			version  INTEGER NOT NULL CHECK (version >= 0),
			next_seq INTEGER NOT NULL CHECK (next_seq >= 1)
		) STRICT`,
		`CREATE TABLE traffic_outbox (
			seq     INTEGER NOT NULL,
			day     TEXT    NOT NULL,
			user_id INTEGER NOT NULL,
			up      INTEGER NOT NULL CHECK (up >= 0),
			down    INTEGER NOT NULL CHECK (down >= 0),
			PRIMARY KEY (seq, user_id)
		) STRICT`,
	}},
	{5, []string{
		// The web panel (internal/panel): its administrators (admins.go),
		// the audit log of their actions, and each user's traffic per UTC
		// day (daily.go). No destinations, no client addresses.
		`CREATE TABLE admins (
			id            INTEGER PRIMARY KEY,
			name          TEXT    NOT NULL,
			name_key      TEXT    NOT NULL UNIQUE,
			role          TEXT    NOT NULL CHECK (role IN ('owner', 'operator', 'viewer')),
			password_hash TEXT    NOT NULL DEFAULT '',
			totp_secret   TEXT    NOT NULL DEFAULT '',
			setup_hash    TEXT    NOT NULL DEFAULT '',
			setup_expires INTEGER NOT NULL DEFAULT 0,
			created_at    INTEGER NOT NULL
		) STRICT`,
		`CREATE TABLE admin_audit (
			id     INTEGER PRIMARY KEY,
			at     INTEGER NOT NULL,
			admin  TEXT    NOT NULL,
			action TEXT    NOT NULL,
			target TEXT    NOT NULL DEFAULT '',
			detail TEXT    NOT NULL DEFAULT ''
		) STRICT`,
		`CREATE TABLE traffic_daily (
			user_id INTEGER NOT NULL,
			day     TEXT    NOT NULL,
			up      INTEGER NOT NULL CHECK (up >= 0),
			down    INTEGER NOT NULL CHECK (down >= 0),
			PRIMARY KEY (user_id, day)
		) STRICT, WITHOUT ROWID`,
		// The panel pages through users by filter (query.go); over_quota
		// is computed (never stored by hand) so it can be indexed.
		`ALTER TABLE users ADD COLUMN over_quota INTEGER GENERATED ALWAYS AS (quota > 0 AND bytes_up + bytes_down >= quota) VIRTUAL`,
		`CREATE INDEX users_state ON users (revoked, over_quota, expires_at)`,
		`CREATE INDEX users_over_quota ON users (over_quota, id)`,
		`CREATE INDEX users_expires ON users (expires_at)`,
	}},
}

// latestVersion is the schema version this binary writes.
func latestVersion() int { return migrations[len(migrations)-1].version }

// migrate brings the schema up to date in one immediate (write-locked)
// transaction, so processes opening the database at the same time apply each
// migration exactly once. A database written by a newer binary is refused.
func migrate(ctx context.Context, db *sql.DB, now int64) error {
	tx, err := beginRetry(ctx, db)
	if err != nil {
		return fmt.Errorf("access: migrate: begin: %w", err)
	}
	defer tx.Rollback()
	if _, err := tx.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
		version    INTEGER PRIMARY KEY,
		applied_at INTEGER NOT NULL
	) STRICT`); err != nil {
		return fmt.Errorf("access: migrate: %w", err)
	}
	var cur int
	if err := tx.QueryRowContext(ctx, `SELECT COALESCE(MAX(version), 0) FROM schema_migrations`).Scan(&cur); err != nil {
		return fmt.Errorf("access: migrate: read version: %w", err)
	}
	if cur > latestVersion() {
		return fmt.Errorf("access: database schema version %d is newer than this program's %d; upgrade burrow", cur, latestVersion())
	}
	for _, m := range migrations {
		if m.version <= cur {
			continue
		}
		for _, stmt := range m.stmts {
			if _, err := tx.ExecContext(ctx, stmt); err != nil {
				return fmt.Errorf("access: migration %d: %w", m.version, err)
			}
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO schema_migrations (version, applied_at) VALUES (?, ?)`, m.version, now); err != nil {
			return fmt.Errorf("access: migration %d: record: %w", m.version, err)
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("access: migrate: commit: %w", err)
	}
	return nil
}
