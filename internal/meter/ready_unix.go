//go:build unix

package meter

import "syscall"

// waitReadable blocks until the socket behind rc has a byte to read, has
// ended, or has failed (the read that follows reports which), or until the
// conn is closed or its read deadline passes.
func waitReadable(rc syscall.RawConn) error {
	var b [1]byte
	return rc.Read(func(fd uintptr) bool {
		_, _, err := syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK)
		return err != syscall.EAGAIN && err != syscall.EINTR
	})
}
