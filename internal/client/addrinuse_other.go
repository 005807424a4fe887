//go:build !windows

package client

import "syscall"

// errAddrInUse is what a listen on a taken port fails with.
const errAddrInUse = syscall.EADDRINUSE
