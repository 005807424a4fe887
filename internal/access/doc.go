// Package access keeps Burrow's users: their access keys (VLESS UUIDs and
// subscription tokens), quotas, expiry, revocation and traffic counters, and
// parses what operators type about them (names, sizes, dates, reset periods).
//
// Store is the interface the server and the CLI use; SQLiteStore is the
// embedded implementation (pure Go, modernc.org/sqlite), and a PostgreSQL one
// for fleets can satisfy the same interface. Everything that decides whether a
// user may connect is pure and lives on User (Usable, Remaining,
// RolledPeriod), so the server can keep users in memory and ask the store only
// to persist; ResetDuePeriods starts new weekly or monthly periods.
//
// What is stored per user, and nothing else (no destinations, no client
// addresses, no connection log):
//
//	users
//	  id            INTEGER PK
//	  name          TEXT     as typed; name_key = NameKey(name), UNIQUE (case-insensitive)
//	  uuid          TEXT     8-4-4-4-12 lowercase hex, UNIQUE: the VLESS credential
//	  sub_token     TEXT     43 chars base64url of 32 random bytes, UNIQUE (a fleet node's
//	                         replica: "n" + 19-digit id + "." + 22 chars of 16 random bytes)
//	  created_at    INTEGER  Unix seconds, UTC
//	  quota         INTEGER  bytes per period, 0 = unlimited
//	  expires_at    INTEGER  Unix seconds, 0 = never
//	  reset         TEXT     never | weekly | monthly
//	  note          TEXT
//	  revoked       INTEGER  0 | 1
//	  bytes_up      INTEGER  this period, saturating at 2^63-1
//	  bytes_down    INTEGER  this period, saturating at 2^63-1
//	  last_seen_day TEXT     YYYY-MM-DD (UTC) or ''
//	  period_start  INTEGER  Unix seconds
//	  over_quota    INTEGER  generated: quota > 0 AND bytes_up + bytes_down >= quota (indexed)
//	telemetry_daily   what clients reported about blocking (telemetry.go), per UTC day
//	  day           TEXT     YYYY-MM-DD
//	  transport     TEXT     tcp | xhttp
//	  metric        TEXT     reports, conns_ok, conns_failed, freeze, budget, cap, reset, fallback
//	  bucket        INTEGER  freeze, budget: the least KiB of the size bucket; cap: the cap; else 0
//	  count         INTEGER
//	replica_state     on a fleet's exit (replica.go): the control plane's change log version applied
//	  version, next_seq (the next traffic batch's number; never reused)
//	traffic_outbox    on a fleet's exit: traffic counted and not yet acknowledged by the control plane
//	  seq, day, user_id, up, down
//	traffic_daily     each user's bytes per UTC day (daily.go), kept DailyKeep days
//	  user_id, day, up, down
//	admins            the web panel's administrators (admins.go): name, role,
//	                  argon2id password hash, TOTP secret, one-time setup token hash
//	admin_audit       what administrators did: at, admin, action, target, detail
//	                  (never a destination or a network address)
//	schema_migrations
//	  version       INTEGER PK   one row per applied migration
//	  applied_at    INTEGER      Unix seconds
//
// Concurrency: the SQLite file is in WAL mode with a busy timeout, and every
// write is a BEGIN IMMEDIATE transaction, so the CLI and a running server can
// write at the same time without "database is locked" errors or lost
// updates. Migrations run in one such transaction when the database is
// opened. The file is created with mode 0600: it holds credentials.
package access
