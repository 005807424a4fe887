package server

import (
	"context"
	"net"

	"github.com/burrow-vpn/burrow/internal/meter"
	"github.com/burrow-vpn/burrow/internal/mux"
	"github.com/burrow-vpn/burrow/internal/vless"
)

// proxyMux serves a mux.cool connection. Xray-core clients (v2rayNG and
// friends) send their UDP this way, as XUDP sessions, whenever Vision is on.
// Every UDP destination goes through the egress policy; the bytes of the mux
// stream count against the user's quota.
func (s *Server) proxyMux(ctx context.Context, tconn net.Conn, req *vless.Request, sess *Session) {
	conn := meter.NewConn(vless.ServerConn(tconn, req),
		counted{sess.Up(), &s.stats.BytesUp}, counted{sess.Down(), &s.stats.BytesDown})
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	sess.OnCut(cancel)
	err := mux.ServerMux(ctx, conn, func(ctx context.Context, address string) (net.Conn, error) {
		c, err := s.egress.DialContext(ctx, "udp", address)
		if err != nil && isRefused(err) {
			s.stats.Refused.Add(1)
		}
		return c, err
	})
	if err != nil {
		s.log.Debug("mux ended", "err", err)
	}
}
