package panel

import (
	"context"
	"net"
	"sync"

	"github.com/burrow-vpn/burrow/internal/access"
)

// TunnelListener is a net.Listener whose connections are handed over
// in-process: the server passes it each connection a user opened to the
// panel's reserved in-tunnel address (server.PanelHost), and an
// http.Server serving the panel accepts them like any others.
type TunnelListener struct {
	conns  chan net.Conn
	closed chan struct{}
	once   sync.Once
	gate   func(user string) bool
}

// NewTunnelListener returns a listener admitting the users gate allows.
func NewTunnelListener(gate func(user string) bool) *TunnelListener {
	return &TunnelListener{conns: make(chan net.Conn), closed: make(chan struct{}), gate: gate}
}

// AdminGate allows the VPN users whose name is that of an owner or
// operator of the panel (case-insensitively): an administrator reaches the
// panel through a link of their own name, and no other link reaches it.
func AdminGate(admins Admins) func(user string) bool {
	return func(user string) bool {
		a, err := admins.AdminByName(context.Background(), user)
		return err == nil && (a.Role == access.RoleOwner || a.Role == access.RoleOperator)
	}
}

// Allows implements server.InTunnel.
func (l *TunnelListener) Allows(user string) bool { return l.gate(user) }

// ServeConn implements server.InTunnel: it hands c to Accept and returns
// once c is closed (by the HTTP server, or the tunnel's end), or at once if
// the listener is closed.
func (l *TunnelListener) ServeConn(c net.Conn) {
	tc := &tunnelConn{Conn: c, done: make(chan struct{})}
	select {
	case l.conns <- tc:
	case <-l.closed:
		c.Close()
		return
	}
	select {
	case <-tc.done:
	case <-l.closed:
		c.Close()
	}
}

// Accept implements net.Listener.
func (l *TunnelListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.closed:
		return nil, net.ErrClosed
	}
}

// Close implements net.Listener; connections handed over later are closed.
func (l *TunnelListener) Close() error {
	l.once.Do(func() { close(l.closed) })
	return nil
}

// Addr implements net.Listener.
func (l *TunnelListener) Addr() net.Addr { return tunnelAddr{} }

type tunnelAddr struct{}

func (tunnelAddr) Network() string { return "tunnel" }
func (tunnelAddr) String() string  { return "panel.burrow.invalid:80" }

// tunnelConn reports its Close, so ServeConn knows when to return.
type tunnelConn struct {
	net.Conn
	once sync.Once
	done chan struct{}
}

func (c *tunnelConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() { close(c.done) })
	return err
}
