package meter

import (
	"syscall"

	"golang.org/x/sys/unix"
)

const canWait = true

// waitReadable blocks until the socket behind rc has bytes to read, has
// ended, or has failed, and returns how many bytes it holds (0 when it
// ended or failed: the read that follows reports which). It also returns
// when the conn is closed or its read deadline passes, with that error.
func waitReadable(rc syscall.RawConn) (int64, error) {
	var n int
	err := rc.Read(func(fd uintptr) bool {
		k, err := unix.IoctlGetInt(int(fd), unix.SIOCINQ)
		if err == nil && k > 0 {
			n = k
			return true
		}
		var b [1]byte
		_, _, perr := unix.Recvfrom(int(fd), b[:], unix.MSG_PEEK)
		return perr != unix.EAGAIN && perr != unix.EINTR
	})
	return int64(n), err
}
