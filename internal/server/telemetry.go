package server

import (
	"net"
	"time"

	"github.com/burrow-vpn/burrow/internal/telemetry"
	"github.com/burrow-vpn/burrow/internal/vless"
)

// reportTimeout bounds the reading of a telemetry report.
const reportTimeout = 10 * time.Second

// serveReport reads a client's telemetry report (a request to
// telemetry.Dest, internal/telemetry) in-process: the reserved destination
// is never dialled. A report that reads and parses is counted (at most one
// per user a minute: Aggregator.Add, keyed by the user's live record, in
// memory only) and answered with a bare response header; anything else is
// counted as rejected, logged at debug and closed without an answer.
func (s *Server) serveReport(conn net.Conn, req *vless.Request, sess *Session) {
	conn.SetReadDeadline(time.Now().Add(reportTimeout))
	r, err := telemetry.Read(vless.ServerConn(conn, req))
	agg := s.opts.Telemetry
	if err != nil {
		if agg != nil {
			agg.Reject()
		}
		s.log.Debug("telemetry report rejected", "err", err)
		return
	}
	if agg != nil {
		agg.Add(sess.lu, r)
	}
	conn.SetWriteDeadline(time.Now().Add(5 * time.Second))
	vless.WriteAccepted(conn)
}
