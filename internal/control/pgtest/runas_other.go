//go:build !unix

package pgtest

import (
	"errors"
	"os/exec"
	"os/user"
)

// runAs is never needed off Unix: only root is refused by PostgreSQL.
func runAs(*exec.Cmd, *user.User) error {
	return errors.New("pgtest: running PostgreSQL as another user needs a Unix system")
}
