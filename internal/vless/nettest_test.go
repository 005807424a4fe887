package vless

import (
	"net"
	"testing"

	"golang.org/x/net/nettest"
)

// TestConnConformance runs the x/net conformance suite over a client/server pair: without a
// flow and with Vision.
func TestConnConformance(t *testing.T) {
	pair := func(t *testing.T, c1, c2 net.Conn, flow string) (net.Conn, net.Conn, func(), error) {
		req := &Request{UUID: testUUID, Flow: flow, Command: CommandTCP, Dest: Addr{Host: "example.com", Port: 80}}
		cc := ClientConn(c1, req)
		errc := make(chan error, 1)
		go func() { _, err := cc.Write(nil); errc <- err }() // flush the request header
		got, err := ReadRequest(c2)
		if err != nil {
			return nil, nil, nil, err
		}
		if err := <-errc; err != nil {
			return nil, nil, nil, err
		}
		sc := ServerConn(c2, got)
		return cc, sc, func() { cc.Close(); sc.Close() }, nil
	}
	t.Run("no flow", func(t *testing.T) {
		nettest.TestConn(t, func() (net.Conn, net.Conn, func(), error) {
			a, b := net.Pipe()
			return pair(t, a, b, "")
		})
	})
	// crypto/tls is itself unusable after a write timeout, so Vision runs over fakeTLS (the
	// TLS field layout, bytes passed through) on net.Pipe.
	t.Run("vision", func(t *testing.T) {
		nettest.TestConn(t, func() (net.Conn, net.Conn, func(), error) {
			a, b := net.Pipe()
			return pair(t, &fakeTLS{conn: a}, &fakeTLS{conn: b}, FlowVision)
		})
	})
}
