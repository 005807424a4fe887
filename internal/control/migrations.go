package control

import (
	"context"
	"database/sql"
	"fmt"
)

// migration is one schema step. Versions start at 1 and never change once
// released: a new schema is a new migration appended to both lists, with
// the same version in each.
type migration struct {
	version int
	stmts   []string
}

// The two schemas hold the same tables and columns (docs/fleet.md); they
// differ in types (SQLite's STRICT INTEGER, PostgreSQL's BIGINT and
// identity columns) only.

var sqliteMigrations = []migration{
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
		`CREATE TABLE change_head (
			id      INTEGER PRIMARY KEY CHECK (id = 1),
			version INTEGER NOT NULL
		) STRICT`,
		`INSERT INTO change_head (id, version) VALUES (1, 0)`,
		`CREATE TABLE changes (
			version INTEGER PRIMARY KEY,
			kind    TEXT    NOT NULL,
			at      INTEGER NOT NULL,
			node_id INTEGER NOT NULL DEFAULT 0,
			exit_id INTEGER NOT NULL DEFAULT 0,
			data    TEXT    NOT NULL DEFAULT ''
		) STRICT`,
		`CREATE TABLE nodes (
			id                 INTEGER PRIMARY KEY,
			name               TEXT    NOT NULL,
			name_key           TEXT    NOT NULL UNIQUE,
			role               TEXT    NOT NULL CHECK (role IN ('exit', 'relay')),
			public_key         TEXT    NOT NULL UNIQUE,
			short_id           TEXT    NOT NULL UNIQUE,
			created_at         INTEGER NOT NULL,
			revoked            INTEGER NOT NULL DEFAULT 0 CHECK (revoked IN (0, 1)),
			push_seq           INTEGER NOT NULL DEFAULT 0,
			ep_addr            TEXT    NOT NULL DEFAULT '',
			ep_sni             TEXT    NOT NULL DEFAULT '',
			ep_public_key      TEXT    NOT NULL DEFAULT '',
			ep_short_id        TEXT    NOT NULL DEFAULT '',
			ep_fingerprint     TEXT    NOT NULL DEFAULT '',
			st_version         TEXT    NOT NULL DEFAULT '',
			st_last_seen       INTEGER NOT NULL DEFAULT 0,
			st_users_online    INTEGER NOT NULL DEFAULT 0,
			st_bytes_up        INTEGER NOT NULL DEFAULT 0,
			st_bytes_down      INTEGER NOT NULL DEFAULT 0,
			st_applied_version INTEGER NOT NULL DEFAULT 0,
			st_health          TEXT    NOT NULL DEFAULT ''
		) STRICT`,
		`CREATE TABLE relay_paths (
			relay_id   INTEGER NOT NULL REFERENCES nodes (id),
			exit_id    INTEGER NOT NULL REFERENCES nodes (id),
			created_at INTEGER NOT NULL,
			PRIMARY KEY (relay_id, exit_id)
		) STRICT`,
		`CREATE TABLE node_traffic (
			node_id    INTEGER NOT NULL REFERENCES nodes (id),
			user_id    INTEGER NOT NULL REFERENCES users (id),
			bytes_up   INTEGER NOT NULL DEFAULT 0,
			bytes_down INTEGER NOT NULL DEFAULT 0,
			PRIMARY KEY (node_id, user_id)
		) STRICT`,
		`CREATE TABLE leases (
			node_id    INTEGER NOT NULL REFERENCES nodes (id),
			user_id    INTEGER NOT NULL REFERENCES users (id),
			bytes      INTEGER NOT NULL CHECK (bytes >= 0),
			expires_at INTEGER NOT NULL,
			PRIMARY KEY (node_id, user_id)
		) STRICT`,
		`CREATE INDEX leases_by_user ON leases (user_id)`,
	}},
	{2, []string{
		// What an exit shows probers: a relay without a cover of its own
		// shows its exits'.
		`ALTER TABLE nodes ADD COLUMN ep_cover TEXT NOT NULL DEFAULT ''`,
	}},
	{3, []string{
		// The web panel (internal/panel) as access's migration 5: its
		// administrators and their audit log (admins.go; never replicated
		// to nodes), each user's traffic per UTC day (daily.go), and what
		// the users page filters on (query.go). over_quota is computed, so
		// it can be indexed, in a form that cannot overflow (the counters
		// saturate at 2^63-1).
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
			user_id INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
			day     TEXT    NOT NULL,
			up      INTEGER NOT NULL CHECK (up >= 0),
			down    INTEGER NOT NULL CHECK (down >= 0),
			PRIMARY KEY (user_id, day)
		) STRICT, WITHOUT ROWID`,
		`CREATE INDEX traffic_daily_day ON traffic_daily (day)`,
		`ALTER TABLE users ADD COLUMN over_quota INTEGER
			GENERATED ALWAYS AS (quota > 0 AND bytes_up >= quota - bytes_down) VIRTUAL`,
		`CREATE INDEX users_state ON users (revoked, over_quota, expires_at)`,
		`CREATE INDEX users_over_quota ON users (over_quota, id)`,
		`CREATE INDEX users_expires ON users (expires_at)`,
	}},
}

var postgresMigrations = []migration{
	{1, []string{
		`CREATE TABLE users (
			id            BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
			name          TEXT    NOT NULL,
			name_key      TEXT    NOT NULL UNIQUE,
			uuid          TEXT    NOT NULL UNIQUE,
			sub_token     TEXT    NOT NULL UNIQUE,
			created_at    BIGINT  NOT NULL,
			quota         BIGINT  NOT NULL DEFAULT 0 CHECK (quota >= 0),
			expires_at    BIGINT  NOT NULL DEFAULT 0,
			reset         TEXT    NOT NULL DEFAULT 'never' CHECK (reset IN ('never', 'weekly', 'monthly')),
			note          TEXT    NOT NULL DEFAULT '',
			revoked       BIGINT  NOT NULL DEFAULT 0 CHECK (revoked IN (0, 1)),
			bytes_up      BIGINT  NOT NULL DEFAULT 0 CHECK (bytes_up >= 0),
			bytes_down    BIGINT  NOT NULL DEFAULT 0 CHECK (bytes_down >= 0),
			last_seen_day TEXT    NOT NULL DEFAULT '',
			period_start  BIGINT  NOT NULL
		)`,
		`CREATE TABLE change_head (
			id      BIGINT PRIMARY KEY CHECK (id = 1),
			version BIGINT NOT NULL
		)`,
		`INSERT INTO change_head (id, version) VALUES (1, 0)`,
		`CREATE TABLE changes (
			version BIGINT PRIMARY KEY,
			kind    TEXT   NOT NULL,
			at      BIGINT NOT NULL,
			node_id BIGINT NOT NULL DEFAULT 0,
			exit_id BIGINT NOT NULL DEFAULT 0,
			data    TEXT   NOT NULL DEFAULT ''
		)`,
		`CREATE TABLE nodes (
			id                 BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
			name               TEXT   NOT NULL,
			name_key           TEXT   NOT NULL UNIQUE,
			role               TEXT   NOT NULL CHECK (role IN ('exit', 'relay')),
			public_key         TEXT   NOT NULL UNIQUE,
			short_id           TEXT   NOT NULL UNIQUE,
			created_at         BIGINT NOT NULL,
			revoked            BIGINT NOT NULL DEFAULT 0 CHECK (revoked IN (0, 1)),
			push_seq           BIGINT NOT NULL DEFAULT 0,
			ep_addr            TEXT   NOT NULL DEFAULT '',
			ep_sni             TEXT   NOT NULL DEFAULT '',
			ep_public_key      TEXT   NOT NULL DEFAULT '',
			ep_short_id        TEXT   NOT NULL DEFAULT '',
			ep_fingerprint     TEXT   NOT NULL DEFAULT '',
			st_version         TEXT   NOT NULL DEFAULT '',
			st_last_seen       BIGINT NOT NULL DEFAULT 0,
			st_users_online    BIGINT NOT NULL DEFAULT 0,
			st_bytes_up        BIGINT NOT NULL DEFAULT 0,
			st_bytes_down      BIGINT NOT NULL DEFAULT 0,
			st_applied_version BIGINT NOT NULL DEFAULT 0,
			st_health          TEXT   NOT NULL DEFAULT ''
		)`,
		`CREATE TABLE relay_paths (
			relay_id   BIGINT NOT NULL REFERENCES nodes (id),
			exit_id    BIGINT NOT NULL REFERENCES nodes (id),
			created_at BIGINT NOT NULL,
			PRIMARY KEY (relay_id, exit_id)
		)`,
		`CREATE TABLE node_traffic (
			node_id    BIGINT NOT NULL REFERENCES nodes (id),
			user_id    BIGINT NOT NULL REFERENCES users (id),
			bytes_up   BIGINT NOT NULL DEFAULT 0,
			bytes_down BIGINT NOT NULL DEFAULT 0,
			PRIMARY KEY (node_id, user_id)
		)`,
		`CREATE TABLE leases (
			node_id    BIGINT NOT NULL REFERENCES nodes (id),
			user_id    BIGINT NOT NULL REFERENCES users (id),
			bytes      BIGINT NOT NULL CHECK (bytes >= 0),
			expires_at BIGINT NOT NULL,
			PRIMARY KEY (node_id, user_id)
		)`,
		`CREATE INDEX leases_by_user ON leases (user_id)`,
	}},
	{2, []string{
		// What an exit shows probers: a relay without a cover of its own
		// shows its exits'.
		`ALTER TABLE nodes ADD COLUMN ep_cover TEXT NOT NULL DEFAULT ''`,
	}},
	{3, []string{
		// As SQLite's migration 3.
		`CREATE TABLE admins (
			id            BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
			name          TEXT   NOT NULL,
			name_key      TEXT   NOT NULL UNIQUE,
			role          TEXT   NOT NULL CHECK (role IN ('owner', 'operator', 'viewer')),
			password_hash TEXT   NOT NULL DEFAULT '',
			totp_secret   TEXT   NOT NULL DEFAULT '',
			setup_hash    TEXT   NOT NULL DEFAULT '',
			setup_expires BIGINT NOT NULL DEFAULT 0,
			created_at    BIGINT NOT NULL
		)`,
		`CREATE TABLE admin_audit (
			id     BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
			at     BIGINT NOT NULL,
			admin  TEXT   NOT NULL,
			action TEXT   NOT NULL,
			target TEXT   NOT NULL DEFAULT '',
			detail TEXT   NOT NULL DEFAULT ''
		)`,
		`CREATE TABLE traffic_daily (
			user_id BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
			day     TEXT   NOT NULL,
			up      BIGINT NOT NULL CHECK (up >= 0),
			down    BIGINT NOT NULL CHECK (down >= 0),
			PRIMARY KEY (user_id, day)
		)`,
		`CREATE INDEX traffic_daily_day ON traffic_daily (day)`,
		// Never bytes_up + bytes_down >= quota: bigint overflow is an
		// error in PostgreSQL, and would fail every write of a user whose
		// counters saturated.
		`ALTER TABLE users ADD COLUMN over_quota BIGINT
			GENERATED ALWAYS AS (CASE WHEN quota > 0 AND bytes_up >= quota - bytes_down THEN 1 ELSE 0 END) STORED`,
		`CREATE INDEX users_state ON users (revoked, over_quota, expires_at)`,
		`CREATE INDEX users_over_quota ON users (over_quota, id)`,
		`CREATE INDEX users_expires ON users (expires_at)`,
	}},
}

// migrateLock is the PostgreSQL advisory lock key that serializes
// migrations of concurrent processes ("burrowmg").
const migrateLock = 0x627572726f776d67

// migrate brings the schema up to date in one transaction, so processes
// opening the database at the same time apply each migration once. A
// database written by a newer binary is refused.
func (s *SQLStore) migrate(ctx context.Context) error {
	ms := s.d.migrations
	latest := ms[len(ms)-1].version
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		if s.d.name == "postgres" {
			if _, err := tx.ExecContext(ctx, `SELECT pg_advisory_xact_lock($1)`, int64(migrateLock)); err != nil {
				return err
			}
		}
		if _, err := s.exec(ctx, tx, `CREATE TABLE IF NOT EXISTS schema_migrations (
			version    BIGINT PRIMARY KEY,
			applied_at BIGINT NOT NULL
		)`); err != nil {
			return err
		}
		var cur int
		if err := s.row(ctx, tx, `SELECT COALESCE(MAX(version), 0) FROM schema_migrations`).Scan(&cur); err != nil {
			return fmt.Errorf("read version: %w", err)
		}
		if cur > latest {
			return fmt.Errorf("database schema version %d is newer than this program's %d; upgrade burrow", cur, latest)
		}
		for _, m := range ms {
			if m.version <= cur {
				continue
			}
			for _, stmt := range m.stmts {
				if _, err := tx.ExecContext(ctx, stmt); err != nil {
					return fmt.Errorf("migration %d: %w", m.version, err)
				}
			}
			if _, err := s.exec(ctx, tx, `INSERT INTO schema_migrations (version, applied_at) VALUES (?, ?)`,
				m.version, s.now().Unix()); err != nil {
				return fmt.Errorf("migration %d: record: %w", m.version, err)
			}
		}
		return nil
	})
	return wrap("migrate", err)
}

// SchemaVersion returns the highest migration applied.
func (s *SQLStore) SchemaVersion(ctx context.Context) (int, error) {
	var v int
	err := s.row(ctx, s.db, `SELECT COALESCE(MAX(version), 0) FROM schema_migrations`).Scan(&v)
	return v, wrap("schema version", err)
}
