package client

import "golang.org/x/sys/windows"

// errAddrInUse is what a listen on a taken port fails with: Winsock's own
// code, which syscall.EADDRINUSE does not match on Windows.
const errAddrInUse = windows.WSAEADDRINUSE
