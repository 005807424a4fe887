package control

import (
	"context"
	"database/sql"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/burrow-vpn/burrow/internal/access"
)

// OpenSQLite opens (creating it, mode 0600, if missing) the control store
// in the SQLite file at path and applies pending migrations. Like
// access.OpenSQLite, the file is in WAL mode and every write is a BEGIN
// IMMEDIATE transaction, so the CLI and a running control plane share it.
func OpenSQLite(ctx context.Context, path string) (*SQLStore, error) {
	if path == "" || strings.ContainsAny(path, "?#") {
		return nil, fmt.Errorf("control: open %q: path must be non-empty and contain no '?' or '#'", path)
	}
	if err := sqliteAvailable(); err != nil {
		return nil, err
	}
	// The database holds credentials: create it private before SQLite does.
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("control: open: %w", err)
	}
	f.Close()
	if strings.HasPrefix(path, "file:") {
		path = "./" + path // a plain file name, not an SQLite URI
	}
	dsn := path + fmt.Sprintf("?_busy_timeout=%d&_journal_mode=WAL&_foreign_keys=1&_synchronous=FULL&_txlock=immediate",
		access.BusyTimeout.Milliseconds())
	db, err := sql.Open("sqlite", dsn)
	if err != nil {
		return nil, fmt.Errorf("control: open %s: %w", path, err)
	}
	s := &SQLStore{db: db, path: path, now: time.Now, poll: func() time.Duration { return PollInterval }, d: &dialect{
		name:       "sqlite",
		migrations: sqliteMigrations,
		unique:     isUniqueViolation,
		retry:      isBusy,
	}}
	if err := s.migrate(ctx); err != nil {
		db.Close()
		return nil, err
	}
	return s, nil
}
