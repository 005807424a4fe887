package vless

import (
	"net"
	"testing"

	"golang.org/x/net/nettest"
)

// TestConnConformance runs the x/net conformance suite over a client/server pair without a
// flow (framing of the first write and read included).
func TestConnConformance(t *testing.T) {
	pair := func(t *testing.T, c1, c2 net.Conn, flow string) (net.Conn, net.Conn, func(), error) {
		req := &Request{UUID: testUUID, Flow: flow, Command: CommandTCP, Dest: Addr{Host: "example.com", Port: 80}}
		cc := ClientConn(c1, req)
		// Flush the request header (not waited for: with Vision it would also carry the empty
		// padded block, which net.Pipe holds until the server's first Read).
		go cc.Write(nil)
		got, err := ReadRequest(c2)
		if err != nil {
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
	// Vision is not run through the suite: like crypto/tls under it, a padded stream cannot
	// recover from a write cut short by a deadline (FutureTimeout), which the suite expects.
}
