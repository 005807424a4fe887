//go:build !unix

package meter

import "syscall"

// waitReadable does not wait where there is no MSG_PEEK to wait with: the
// chunk is reserved before the read blocks.
func waitReadable(syscall.RawConn) error { return nil }
