package socks5

import (
	"context"
	"io"
	"net"
)

// relay copies between a and b in both directions and closes both when done.
// When one direction reaches EOF, the write side of its destination is closed
// (half-close) if that conn has CloseWrite, and the other direction carries
// on. If a copy fails, or the destination cannot half-close, both conns are
// closed, which ends the other direction too. Cancelling ctx closes both.
//
// The conns are handed to io.Copy as they are, so *net.TCPConn pairs (and
// conns implementing io.ReaderFrom / io.WriterTo) keep their fast paths.
func relay(ctx context.Context, a, b net.Conn) error {
	stop := context.AfterFunc(ctx, func() {
		a.Close()
		b.Close()
	})
	defer stop()

	errc := make(chan error, 1)
	go func() { errc <- pipe(a, b) }() // b → a
	err := pipe(b, a)                  // a → b
	if err2 := <-errc; err == nil {
		err = err2
	}
	a.Close()
	b.Close()
	return err
}

// pipe copies src to dst, then half-closes dst, or closes both on failure.
func pipe(dst, src net.Conn) error {
	_, err := io.Copy(dst, src)
	if err == nil {
		if cw, ok := dst.(interface{ CloseWrite() error }); ok && cw.CloseWrite() == nil {
			return nil
		}
	}
	dst.Close()
	src.Close()
	return err
}
