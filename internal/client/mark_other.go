//go:build !linux

package client

import "syscall"

// markControl is a no-op where there is no SO_MARK (TUN mode is Linux-only).
func markControl(uint32) func(network, address string, c syscall.RawConn) error { return nil }
