//go:build !(linux || darwin || freebsd)

package client

import "net"

// alive cannot peek here; a dead spare fails the connection that takes it.
func alive(net.Conn) bool { return true }
