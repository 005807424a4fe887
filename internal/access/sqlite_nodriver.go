//go:build mips || mipsle || mips64 || mips64le

package access

import (
	"fmt"
	"runtime"
)

// modernc.org/sqlite is not built for MIPS, so builds for routers carry
// the client only: the user store, and so the server, is unavailable.
func sqliteAvailable() error {
	return fmt.Errorf("access: the user store (SQLite) is not available in the %s/%s build; run the server on another platform (this build is a client: `burrow connect`)", runtime.GOOS, runtime.GOARCH)
}

func isBusy(error) bool { return false }

func isUniqueViolation(error) bool { return false }
