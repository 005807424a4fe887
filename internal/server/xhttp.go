package server

import (
	"context"
	"io"
	"net"
	"time"

	"github.com/burrow-vpn/burrow/internal/transport/xhttp"
	"github.com/burrow-vpn/burrow/internal/vless"
)

// serveXHTTP serves an authenticated connection that opened with the
// HTTP/2 preface (its first byte already read) as XHTTP. Sessions live in
// the server's hub, so a client may continue one on another connection.
func (s *Server) serveXHTTP(ctx context.Context, tconn net.Conn) {
	rest := make([]byte, len(xhttp.Preface)-1)
	if _, err := io.ReadFull(tconn, rest); err != nil || string(rest) != xhttp.Preface[1:] {
		s.log.Debug("bad vless request", "err", "neither VLESS nor the HTTP/2 preface")
		return
	}
	tconn.SetReadDeadline(time.Time{})
	s.xhttpOnce.Do(func() {
		s.xhttp = xhttp.NewHub(ctx, xhttp.HubConfig{Handle: s.handleXHTTPSession, Logger: s.log})
	})
	s.xhttp.ServeConn(ctx, tconn, xhttp.ConnOptions{SawPreface: true, TLS: true})
}

// closeXHTTP ends the XHTTP sessions and waits for them.
func (s *Server) closeXHTTP() {
	s.xhttpOnce.Do(func() {})
	if s.xhttp != nil {
		s.xhttp.Close()
	}
}

// handleXHTTPSession is one XHTTP session: a VLESS request and its data,
// as on a plain connection, but without Vision (Xray does the same: the
// flow is empty on XHTTP).
func (s *Server) handleXHTTPSession(ctx context.Context, conn net.Conn) {
	defer conn.Close()
	conn.SetReadDeadline(time.Now().Add(requestTimeout))
	req, err := vless.ReadRequest(conn)
	if err != nil {
		s.log.Debug("bad vless request", "transport", "xhttp", "err", err)
		return
	}
	conn.SetReadDeadline(time.Time{})
	s.serveRequest(ctx, conn, req, true)
}
