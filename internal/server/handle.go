package server

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/burrow-vpn/burrow/internal/access"
	"github.com/burrow-vpn/burrow/internal/bidi"
	"github.com/burrow-vpn/burrow/internal/camo"
	"github.com/burrow-vpn/burrow/internal/meter"
	"github.com/burrow-vpn/burrow/internal/telemetry"
	"github.com/burrow-vpn/burrow/internal/transport/xhttp"
	"github.com/burrow-vpn/burrow/internal/vless"
)

const (
	requestTimeout = 30 * time.Second // TLS established → VLESS header read
	udpIdleTimeout = 2 * time.Minute
)

// Stats are the server's live counters, read by the admin API and metrics.
type Stats struct {
	Active        atomic.Int64 // proxied connections now
	Authenticated atomic.Int64 // REALITY handshakes that authenticated
	Fallback      atomic.Int64 // connections handed to the cover site
	Refused       atomic.Int64 // egress refusals by policy
	Rejected      atomic.Int64 // authenticated TLS, but unknown or unusable user
	BytesUp       atomic.Int64 // client → destination
	BytesDown     atomic.Int64 // destination → client
	RelayLinks    atomic.Int64 // relays' pooled connections open now
	RelayStreams  atomic.Int64 // client connections relays carried in
	RelayRefused  atomic.Int64 // relayed streams refused: bad header or credential
}

func (s *Server) handle(ctx context.Context, tc *net.TCPConn) {
	stop := context.AfterFunc(ctx, func() { tc.Close() })
	defer stop()

	tconn, err := s.camo.Handshake(ctx, tc)
	if err != nil {
		if errors.Is(err, camo.ErrFallback) {
			s.stats.Fallback.Add(1)
		} else {
			s.log.Debug("handshake failed", "err", err)
		}
		return
	}
	if lr := s.relayOf(tconn); lr != nil {
		defer tconn.Close()
		s.serveRelayLink(ctx, tconn, lr)
		return
	}
	s.serveAuthenticated(ctx, tconn)
}

// serveAuthenticated serves a client's REALITY conn, accepted directly or
// through a relay: VLESS, or XHTTP carrying VLESS.
func (s *Server) serveAuthenticated(ctx context.Context, tconn net.Conn) {
	s.stats.Authenticated.Add(1)
	defer tconn.Close()

	tconn.SetReadDeadline(time.Now().Add(requestTimeout))
	// One byte tells the transports apart: VLESS starts with its version
	// (0), XHTTP with the HTTP/2 preface ("PRI * HTTP/2.0…").
	var first [1]byte
	if _, err := io.ReadFull(tconn, first[:]); err != nil {
		s.log.Debug("bad vless request", "err", err)
		return
	}
	if first[0] == xhttp.Preface[0] {
		s.serveXHTTP(ctx, tconn)
		return
	}
	req, err := vless.ReadRequest(io.MultiReader(bytes.NewReader(first[:]), tconn))
	if err != nil {
		s.log.Debug("bad vless request", "err", err)
		return
	}
	tconn.SetReadDeadline(time.Time{})
	s.serveRequest(ctx, tconn, req, false)
}

// serveRequest carries req, read from conn (a REALITY conn, or one XHTTP
// session when overXHTTP): the user's session, the transport's flow rule,
// then the command.
func (s *Server) serveRequest(ctx context.Context, conn net.Conn, req *vless.Request, overXHTTP bool) {
	sess, err := s.users.Acquire(req.UUID)
	if err != nil {
		// Unknown, revoked, expired or over quota: the response header says which
		// (docs/protocol.md), so the user's client can tell them; then the close.
		// Only a holder of the server's key gets this far.
		s.stats.Rejected.Add(1)
		s.log.Debug("request refused", "reason", err)
		conn.SetWriteDeadline(time.Now().Add(5 * time.Second))
		vless.WriteRefusal(conn, refusalOf(err))
		return
	}
	defer sess.Close()
	if req.IsStatus() {
		// A refused Burrow client asking whether it is let in again.
		conn.SetWriteDeadline(time.Now().Add(5 * time.Second))
		vless.WriteAccepted(conn)
		return
	}
	if telemetry.IsReport(req) {
		s.serveReport(conn, req, sess) // telemetry.go; never dialled
		return
	}
	sess.OnCut(func() { conn.Close() })
	switch {
	case overXHTTP && req.Flow != "":
		s.log.Debug("request refused: flow " + req.Flow + " over xhttp")
		return
	case !overXHTTP && !flowAllowed(req):
		s.log.Debug("request refused: TCP without flow " + vless.FlowVision)
		return
	}

	s.stats.Active.Add(1)
	defer s.stats.Active.Add(-1)
	if s.opts.LogDestinations {
		attrs := []any{"user", sess.UserName()}
		if overXHTTP {
			attrs = append(attrs, "transport", "xhttp")
		}
		s.log.Info("proxy", append(attrs, "cmd", req.Command, "dest", req.Dest.String())...)
	}

	switch req.Command {
	case vless.CommandTCP:
		s.proxyTCP(ctx, conn, req, sess)
	case vless.CommandUDP:
		s.proxyUDP(ctx, conn, req, sess)
	case vless.CommandMux:
		s.proxyMux(ctx, conn, req, sess, overXHTTP)
	}
}

// refusalOf maps Acquire's errors to the reason a refused client is told.
func refusalOf(err error) vless.Refusal {
	switch {
	case errors.Is(err, access.ErrRevoked):
		return vless.RefusedRevoked
	case errors.Is(err, access.ErrExpired):
		return vless.RefusedExpired
	case errors.Is(err, access.ErrQuotaExceeded):
		return vless.RefusedQuota
	}
	return vless.RefusedUnknownUser
}

func isRefused(err error) bool { return errors.Is(err, ErrEgressRefused) }

// flowAllowed mirrors Xray-core for users with the Vision flow on plain
// REALITY: a TCP request must use Vision (a plain TLS-in-TLS stream is a
// detectable pattern we refuse to carry); UDP may come without it. Mux is
// admitted with or without the flow and policed per session by proxyMux,
// which carries only UDP (XUDP) sessions here.
func flowAllowed(req *vless.Request) bool {
	if req.Command == vless.CommandTCP {
		return req.Flow == vless.FlowVision
	}
	return req.Flow == "" || req.Flow == vless.FlowVision
}

func (s *Server) dial(ctx context.Context, network string, req *vless.Request) (net.Conn, error) {
	dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	c, err := s.egress.DialContext(dctx, network, req.Dest.String())
	if err != nil {
		if isRefused(err) {
			s.stats.Refused.Add(1)
		}
		return nil, err
	}
	return c, nil
}

func (s *Server) proxyTCP(ctx context.Context, tconn net.Conn, req *vless.Request, sess *Session) {
	if s.servePanel(tconn, req, sess) {
		return
	}
	target, err := s.dial(ctx, "tcp", req)
	if err != nil {
		s.log.Debug("dial failed", "err", err)
		return
	}
	defer target.Close()
	sess.OnCut(func() { target.Close() })
	client := vless.ServerConn(tconn, req)
	relay(ctx, client, target, counted{sess.Up(), &s.stats.BytesUp}, counted{sess.Down(), &s.stats.BytesDown})
}

// counted adds a server-wide byte counter to a session direction.
type counted struct {
	*Direction
	total *atomic.Int64
}

func (c counted) Settle(reserved, moved int64) {
	c.Direction.Settle(reserved, moved)
	c.total.Add(moved)
}

// relay copies both ways between the client's VLESS conn and the target,
// counting up (client→target) and down (target→client) bytes, until both
// directions end, under bidi's contract: an EOF is passed on as a half-close,
// a failed copy (a quota running out, say) or the end of ctx closes both.
// The up direction goes through client's WriteTo (meter.CopyWriterTo), which
// splices the raw socket once Vision went direct and otherwise reads into a
// buffer that is small while the conn is idle (the target's ReadFrom would
// hold io.Copy's 32 KiB for the conn's whole life: 64 MiB for 2,000 idle
// XHTTP sessions). The down direction goes through client's ReadFrom. The
// down copy runs on the calling goroutine, one goroutine less per idle
// connection.
func relay(ctx context.Context, client, target net.Conn, up, down meter.Counter) {
	bidi.CopyWith(ctx, client, target,
		func(dst io.Writer, src io.Reader) (int64, error) {
			if wt, ok := src.(io.WriterTo); ok {
				return meter.CopyWriterTo(dst, wt, up)
			}
			return meter.Copy(dst, src, up)
		},
		func(dst io.Writer, src io.Reader) (int64, error) { return meter.Copy(dst, src, down) })
}

// proxyUDP carries one UDP flow: datagrams framed by the VLESS UDP command
// to a single destination.
func (s *Server) proxyUDP(ctx context.Context, tconn net.Conn, req *vless.Request, sess *Session) {
	target, err := s.dial(ctx, "udp", req)
	if err != nil {
		s.log.Debug("dial failed", "err", err)
		return
	}
	defer target.Close()
	sess.OnCut(func() { target.Close() })
	client := vless.ServerConn(tconn, req)
	up, down := counted{sess.Up(), &s.stats.BytesUp}, counted{sess.Down(), &s.stats.BytesDown}
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		defer target.Close()
		copyPackets(target, client, up, 0)
	}()
	go func() {
		defer wg.Done()
		defer client.Close()
		copyPackets(client, target, down, udpIdleTimeout)
	}()
	wg.Wait()
}

// copyPackets copies datagrams (one Read = one datagram) from src to dst.
// With idle > 0, it ends when src is silent that long.
func copyPackets(dst io.Writer, src net.Conn, c meter.Counter, idle time.Duration) {
	buf := make([]byte, 65535)
	for {
		if idle > 0 {
			src.SetReadDeadline(time.Now().Add(idle))
		}
		n, err := src.Read(buf)
		if n > 0 {
			// A datagram goes whole or not at all: reserve it all before the write.
			g := meter.ReserveAll(c, int64(n))
			if g < int64(n) {
				c.Settle(g, 0)
				return
			}
			m, werr := dst.Write(buf[:n])
			c.Settle(g, int64(m))
			if werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}
