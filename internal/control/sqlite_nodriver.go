//go:build mips || mipsle || mips64 || mips64le

package control

import (
	"fmt"
	"runtime"
)

// modernc.org/sqlite is not built for MIPS: a control plane there needs
// PostgreSQL (--db postgres://...).
func sqliteAvailable() error {
	return fmt.Errorf("control: SQLite is not available in the %s/%s build; use --db postgres://", runtime.GOOS, runtime.GOARCH)
}

func isBusy(error) bool { return false }

func isUniqueViolation(error) bool { return false }
