// Package bidi copies between two connections in both directions: the loop
// every proxying part of Burrow runs once it has joined a client to its
// destination (the SOCKS5 and HTTP frontends, the server's egress, the TUN
// stack, the censor lab).
//
// The contract of Copy and CopyWith:
//
//   - each direction copies until its source ends or fails;
//   - a clean end (EOF) is passed on as a half-close: the destination's
//     CloseWrite, when it has one, and the other direction carries on;
//   - a failed copy, or a destination that cannot half-close, closes both
//     connections, which ends the other direction too;
//   - cancelling ctx closes both connections;
//   - when both directions have ended, both connections are closed and the
//     error that closed them is returned: the failed copy's, or the cause of
//     ctx's cancellation; nil when the connections ended cleanly. Errors the
//     other direction then meets on the closed connections are not reported.
//
// The connections are handed to the copy functions as they are, never
// wrapped, so io.Copy keeps its fast paths: between two *net.TCPConn the
// destination's ReadFrom splices in the kernel on Linux. Where no fast path
// applies and connections are mostly idle (an entry relay's streams),
// CopyLean is the copy function that holds 1 KiB, not 32 KiB, while idle.
//
// The package imports nothing else of Burrow's.
package bidi

import (
	"context"
	"io"
	"sync"
)

// CopyFunc copies from src to dst until src ends, like io.Copy: a clean end
// returns a nil error. Copy's functions are io.Copy; the server passes ones
// that count bytes against a user's quota.
type CopyFunc func(dst io.Writer, src io.Reader) (int64, error)

// Copy copies between a and b in both directions with io.Copy, under the
// package's contract, and returns when both directions have ended.
func Copy(ctx context.Context, a, b io.ReadWriteCloser) error {
	return CopyWith(ctx, a, b, io.Copy, io.Copy)
}

// CopyWith is Copy with the copy function of each direction given: ab copies
// a to b (on a new goroutine), ba copies b to a (on the calling goroutine).
func CopyWith(ctx context.Context, a, b io.ReadWriteCloser, ab, ba CopyFunc) error {
	var (
		once  sync.Once
		first error // set by whichever closes both first
	)
	closeBoth := func(err error) {
		once.Do(func() { first = err })
		a.Close()
		b.Close()
	}
	stop := context.AfterFunc(ctx, func() { closeBoth(context.Cause(ctx)) })
	defer stop()

	done := make(chan struct{})
	go func() {
		defer close(done)
		one(b, a, ab, closeBoth)
	}()
	one(a, b, ba, closeBoth)
	<-done
	closeBoth(nil)
	return first
}

// one copies src to dst with copy, then half-closes dst, or closes both when
// the copy failed or dst cannot half-close.
func one(dst, src io.ReadWriteCloser, copy CopyFunc, closeBoth func(error)) {
	_, err := copy(dst, src)
	if err == nil {
		if cw, ok := dst.(interface{ CloseWrite() error }); ok && cw.CloseWrite() == nil {
			return
		}
	}
	closeBoth(err)
}
