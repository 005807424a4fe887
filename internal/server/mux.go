package server

import (
	"context"
	"errors"
	"net"
	"sync"

	"github.com/burrow-vpn/burrow/internal/meter"
	"github.com/burrow-vpn/burrow/internal/mux"
	"github.com/burrow-vpn/burrow/internal/vless"
)

// errMuxTCP refuses a TCP session inside mux.
var errMuxTCP = errors.New("server: tcp inside mux needs xhttp, or vision over tcp")

// muxTCPOverXHTTP carries TCP sessions inside mux over XHTTP. Xray's server
// does not ("XHTTP server: Forbid Mux.Cool except pure XUDP", Xray-core
// #4128: it breaks such a mux connection); Burrow does, so that clients with
// "mux" enabled (a v2rayNG switch) work. Set it to false to behave as Xray.
const muxTCPOverXHTTP = true

// proxyMux serves a mux.cool connection. Xray-core clients (v2rayNG and
// friends) send their UDP this way, as XUDP sessions, whenever Vision is on,
// and all their traffic when "mux" is enabled. Every destination goes through
// the egress policy; the bytes of the mux stream count against the user's
// quota.
//
// TCP sessions are carried
//   - over XHTTP when the request has no flow (see muxTCPOverXHTTP);
//   - over plain REALITY when the request has Vision's flow: Burrow's client
//     (links with tcpmux=1) sends its plain-text streams this way, so a new
//     stream does not pay a handshake. A session that starts with a TLS
//     record is refused (TLS in TLS without Vision's padding; Burrow's client
//     gives TLS streams a Vision connection each). Xray's clients with "mux"
//     on send their TCP this way too; Xray's servers break such a
//     connection, Burrow carries their plain-text streams and refuses the
//     TLS ones.
//
// A refused TCP session is answered with End and the error option, where
// Xray breaks the whole mux connection; UDP sessions go on.
func (s *Server) proxyMux(ctx context.Context, tconn net.Conn, req *vless.Request, sess *Session, overXHTTP bool) {
	tcpAllowed := overXHTTP && muxTCPOverXHTTP && req.Flow == "" ||
		!overXHTTP && req.Flow == vless.FlowVision
	conn := meter.NewConn(vless.ServerConn(tconn, req),
		counted{sess.Up(), &s.stats.BytesUp}, counted{sess.Down(), &s.stats.BytesDown})
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	sess.OnCut(cancel)
	// On plain REALITY a TLS stream inside the mux is refused (RefuseTLS): Burrow's client
	// never sends one there, and an Xray client with "mux" on would otherwise carry HTTPS
	// as TLS in TLS without Vision's padding. Its plain-text streams are carried.
	opts := mux.ServerOptions{RefuseTLS: !overXHTTP}
	var panels sync.WaitGroup // streams to the in-tunnel panel, ended with muxCtx
	muxCtx := ctx
	err := mux.ServeMux(ctx, conn, func(ctx context.Context, network, address string) (net.Conn, error) {
		if network == "tcp" && !tcpAllowed {
			return nil, errMuxTCP
		}
		if c := s.dialPanel(muxCtx, network, address, sess, &panels); c != nil {
			return c, nil
		}
		if s.opts.LogDestinations {
			s.log.Info("proxy", "user", sess.UserName(), "cmd", "mux "+network, "dest", address)
		}
		c, err := s.egress.DialContext(ctx, network, address)
		if err != nil && isRefused(err) {
			s.stats.Refused.Add(1)
		}
		return c, err
	}, opts)
	cancel()
	panels.Wait()
	if err != nil {
		s.log.Debug("mux ended", "err", err)
	}
}
