//go:build !linux

package meter

import "syscall"

// canWait is false where waitReadable has no SIOCINQ: Copy reserves each
// chunk before its first byte.
const canWait = false

func waitReadable(syscall.RawConn) (int64, error) { return 0, nil }
