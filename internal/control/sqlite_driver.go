//go:build !mips && !mipsle && !mips64 && !mips64le

package control

import (
	"errors"

	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"
)

// sqliteAvailable reports that this build has the SQLite driver
// (modernc.org/sqlite, registered as "sqlite").
func sqliteAvailable() error { return nil }

func isBusy(err error) bool {
	var se *sqlite.Error
	return errors.As(err, &se) && se.Code()&0xff == sqlite3.SQLITE_BUSY
}

func isUniqueViolation(err error) bool {
	var se *sqlite.Error
	return errors.As(err, &se) && se.Code() == sqlite3.SQLITE_CONSTRAINT_UNIQUE
}
