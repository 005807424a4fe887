package mux

import (
	"context"
	"net"
	"testing"

	"golang.org/x/net/nettest"
)

// TestStreamConn runs the stdlib-style conformance suite on a Client TCP stream, whose peer
// is the target conn ServerMux dialed for it.
func TestStreamConn(t *testing.T) {
	nettest.TestConn(t, func() (c1, c2 net.Conn, stop func(), err error) {
		targets := make(chan net.Conn, 1)
		dial := func(ctx context.Context, network, address string) (net.Conn, error) {
			a, b := net.Pipe()
			targets <- b
			return a, nil
		}
		cl, sv := net.Pipe()
		done := make(chan error, 1)
		go func() { done <- ServerMux(context.Background(), sv, dial) }()
		c := NewClient(cl)
		st, err := c.Dial(context.Background(), "tcp", "target.test:80")
		if err != nil {
			return nil, nil, nil, err
		}
		peer := <-targets
		stop = func() {
			st.Close()
			peer.Close()
			c.Close()
			<-done
			sv.Close()
		}
		return st, peer, stop, nil
	})
}
