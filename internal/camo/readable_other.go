//go:build !unix

package camo

import "net"

// waitReadable returns at once here: the caller's Read waits, with its
// buffer (see readable_unix.go).
func waitReadable(net.Conn) error { return nil }
