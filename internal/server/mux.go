package server

import (
	"context"
	"net"

	"github.com/burrow-vpn/burrow/internal/vless"
)

func (s *Server) proxyMux(ctx context.Context, tconn net.Conn, req *vless.Request, sess *Session) {
	s.log.Debug("mux request refused: not supported yet")
}
