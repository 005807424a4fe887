package server

import (
	"context"
	"net"
	"strings"
	"sync"

	"github.com/burrow-vpn/burrow/internal/vless"
)

// PanelHost is the reserved in-tunnel name of the web panel: a user the
// panel allows opens http://panel.burrow.invalid/ through their own
// tunnel, and the server answers it itself. For everyone else it is a
// name under .invalid like any other, which the egress policy refuses, so
// the panel is never a page on a public port.
const PanelHost = "panel.burrow.invalid"

// InTunnel is a service the server answers inside the tunnel, at
// PanelHost port 80 (internal/panel's TunnelListener with a gate).
type InTunnel interface {
	// Allows reports whether the named user may reach the service.
	Allows(user string) bool
	// ServeConn serves one connection and returns when it has ended.
	ServeConn(c net.Conn)
}

// isPanelDest reports whether dest is the panel's reserved address.
func isPanelDest(dest vless.Addr) bool {
	return dest.Port == 80 && strings.EqualFold(strings.TrimSuffix(dest.Host, "."), PanelHost)
}

// servePanel serves a TCP request for the panel's address when the user may
// reach it, reporting whether it did.
func (s *Server) servePanel(tconn net.Conn, req *vless.Request, sess *Session) bool {
	if s.opts.Panel == nil || !isPanelDest(req.Dest) || !s.opts.Panel.Allows(sess.UserName()) {
		return false
	}
	client := vless.ServerConn(tconn, req)
	sess.OnCut(func() { client.Close() })
	s.opts.Panel.ServeConn(client)
	return true
}

// dialPanel returns a conn to the panel for a mux stream to the panel's
// address by a user it allows, or nil. The panel serves the other end of a
// pipe on a goroutine that wg tracks; it ends when the stream closes its end
// or ctx (the mux connection's) ends.
func (s *Server) dialPanel(ctx context.Context, network, address string, sess *Session, wg *sync.WaitGroup) net.Conn {
	if s.opts.Panel == nil || network != "tcp" {
		return nil
	}
	host, port, err := net.SplitHostPort(address)
	if err != nil || port != "80" || !strings.EqualFold(strings.TrimSuffix(host, "."), PanelHost) || !s.opts.Panel.Allows(sess.UserName()) {
		return nil
	}
	here, there := net.Pipe()
	wg.Go(func() {
		defer context.AfterFunc(ctx, func() { there.Close() })()
		s.opts.Panel.ServeConn(there)
	})
	return here
}
