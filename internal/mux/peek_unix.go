//go:build unix && !linux

package mux

import "golang.org/x/sys/unix"

// peekEmpty reports whether a non-blocking recv with MSG_PEEK on fd into b finds nothing
// (EAGAIN).
func peekEmpty(fd uintptr, b []byte) bool {
	_, _, err := unix.Recvfrom(int(fd), b, unix.MSG_PEEK|unix.MSG_DONTWAIT)
	return err == unix.EAGAIN || err == unix.EWOULDBLOCK
}
