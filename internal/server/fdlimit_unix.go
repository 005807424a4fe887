//go:build unix

package server

import (
	"fmt"
	"syscall"
)

// RaiseFileLimit raises the process's soft limit of open files
// (RLIMIT_NOFILE) to its hard limit and returns the limit in force. Every
// connection holds two descriptors (client, and cover or destination), so
// the limit bounds how many the server can hold.
func RaiseFileLimit() (uint64, error) {
	var l syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &l); err != nil {
		return 0, fmt.Errorf("server: read open-file limit: %w", err)
	}
	if l.Cur < l.Max {
		cur := l.Cur
		l.Cur = l.Max
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &l); err != nil {
			return uint64(cur), fmt.Errorf("server: raise open-file limit to %d: %w", l.Max, err)
		}
	}
	return uint64(l.Cur), nil
}

// fileLimit returns the current soft limit of open files, 0 if unknown.
func fileLimit() uint64 {
	var l syscall.Rlimit
	if syscall.Getrlimit(syscall.RLIMIT_NOFILE, &l) != nil {
		return 0
	}
	return uint64(l.Cur) // int64 on FreeBSD, uint64 elsewhere
}
