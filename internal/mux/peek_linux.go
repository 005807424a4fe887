package mux

import (
	"unsafe"

	"golang.org/x/sys/unix"
)

// peekEmpty reports whether a non-blocking recv with MSG_PEEK on fd into b finds nothing
// (EAGAIN). It calls recvfrom without a source address: unix.Recvfrom allocates one per
// call.
func peekEmpty(fd uintptr, b []byte) bool {
	_, _, errno := unix.Syscall6(unix.SYS_RECVFROM, fd, uintptr(unsafe.Pointer(&b[0])), uintptr(len(b)),
		unix.MSG_PEEK|unix.MSG_DONTWAIT, 0, 0)
	return errno == unix.EAGAIN
}
