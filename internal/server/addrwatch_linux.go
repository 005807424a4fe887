package server

import (
	"errors"
	"runtime"
	"syscall"
)

// Netlink multicast groups of address changes (linux/rtnetlink.h).
const (
	rtmgrpIPv4IfAddr = 0x10
	rtmgrpIPv6IfAddr = 0x100
)

// addrWatch is a netlink socket subscribed to the kernel's notices of
// address changes (RTM_NEWADDR, RTM_DELADDR). The kernel queues a notice
// before the change's own system call returns, so a non-blocking read at
// decision time sees every change made before it.
type addrWatch struct {
	fd int
}

// watchAddrs subscribes to address changes in this thread's network
// namespace, or returns nil if it cannot (the caller then relists on every
// cache miss). The socket is closed when the watch is garbage.
func watchAddrs() *addrWatch {
	fd, err := syscall.Socket(syscall.AF_NETLINK, syscall.SOCK_RAW|syscall.SOCK_CLOEXEC|syscall.SOCK_NONBLOCK, syscall.NETLINK_ROUTE)
	if err != nil {
		return nil
	}
	sa := &syscall.SockaddrNetlink{Family: syscall.AF_NETLINK, Groups: rtmgrpIPv4IfAddr | rtmgrpIPv6IfAddr}
	if err := syscall.Bind(fd, sa); err != nil {
		syscall.Close(fd)
		return nil
	}
	w := &addrWatch{fd: fd}
	runtime.AddCleanup(w, func(fd int) { syscall.Close(fd) }, fd)
	return w
}

// changed drains the queued notices and reports whether there were any (or
// whether some were lost: the queue overflowed, or reading failed).
func (w *addrWatch) changed() bool {
	var buf [8 << 10]byte
	changed := false
	for {
		n, _, err := syscall.Recvfrom(w.fd, buf[:], syscall.MSG_DONTWAIT)
		switch {
		case errors.Is(err, syscall.EAGAIN):
			runtime.KeepAlive(w)
			return changed
		case errors.Is(err, syscall.EINTR):
			continue
		case errors.Is(err, syscall.ENOBUFS): // overflowed: notices were lost
			changed = true
			continue
		case err != nil:
			return true
		case n > 0:
			changed = true
		}
	}
}
