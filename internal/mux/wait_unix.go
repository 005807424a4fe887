//go:build unix

package mux

import (
	"io"
	"net"
	"reflect"
	"syscall"
)

// readyWaiter returns a function that blocks until c has something for Read (data, its end,
// or an error) without holding a buffer, or nil if it cannot tell for c. It only knows the
// stdlib's TCP and UDP conns: a wrapper that offers SyscallConn may hold data of its own
// that the socket no longer shows, and waiting for the socket would then hang. The one
// wrapper it knows is the standard library's own: io.Copy from a *net.TCPConn hands
// ReadFrom the conn wrapped in net's tcpConnWithoutWriteTo, which holds nothing but it.
func readyWaiter(r io.Reader) func() {
	var sc syscall.Conn
	switch c := r.(type) {
	case *net.TCPConn:
		sc = c
	case *net.UDPConn:
		sc = c
	default:
		tc := stdlibTCP(r)
		if tc == nil {
			return nil
		}
		sc = tc
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return nil
	}
	var b [1]byte
	// ready peeks at one byte without taking it (a datagram stays whole too): "nothing yet"
	// lets the runtime's poller wait for the socket; anything else, data, 0 for the end of
	// the stream or an error, is for Read to report.
	ready := func(fd uintptr) bool { return !peekEmpty(fd, b[:]) }
	return func() { rc.Read(ready) }
}

// stdlibTCP returns the *net.TCPConn inside a wrapper type of package net that embeds one
// (tcpConnWithoutWriteTo, tcpConnWithoutReadFrom), or nil.
func stdlibTCP(r io.Reader) *net.TCPConn {
	v := reflect.ValueOf(r)
	if v.Kind() != reflect.Struct || v.Type().PkgPath() != "net" {
		return nil
	}
	f := v.FieldByName("TCPConn")
	if !f.IsValid() || !f.CanInterface() {
		return nil
	}
	c, _ := f.Interface().(*net.TCPConn)
	return c
}
