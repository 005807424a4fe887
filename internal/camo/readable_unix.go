//go:build unix

package camo

import (
	"errors"
	"net"
	"os"
	"syscall"
)

// waitReadable blocks until c has bytes to read, has ended, or its read
// deadline passes, without taking a buffer; it returns at once for a conn
// it cannot wait on (the caller's Read then waits).
func waitReadable(c net.Conn) error {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return nil
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return nil
	}
	var peek [1]byte
	var sockErr error
	err = rc.Read(func(fd uintptr) bool {
		_, _, err := syscall.Recvfrom(int(fd), peek[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		switch {
		case errors.Is(err, syscall.EAGAIN) || errors.Is(err, syscall.EINTR):
			return false
		case err != nil:
			// The kernel reports a socket error (a reset) once: this
			// peek took it, so it is returned here, not by a later Read.
			sockErr = os.NewSyscallError("read", err)
		}
		return true // bytes or the end: the caller's Read sees them
	})
	if err != nil {
		return err
	}
	return sockErr
}
