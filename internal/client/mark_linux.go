package client

import (
	"fmt"
	"syscall"
)

// markControl sets SO_MARK on a socket, so policy routing sends it by the
// main table instead of into the TUN.
func markControl(mark uint32) func(network, address string, c syscall.RawConn) error {
	return func(network, address string, c syscall.RawConn) error {
		var serr error
		if err := c.Control(func(fd uintptr) {
			serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_MARK, int(mark))
		}); err != nil {
			return err
		}
		if serr != nil {
			return fmt.Errorf("set SO_MARK (needs root): %w", serr)
		}
		return nil
	}
}
