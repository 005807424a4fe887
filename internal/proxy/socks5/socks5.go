// Package socks5 is the client's local SOCKS5 frontend (RFC 1928): it accepts
// application connections on a local listener and hands every destination,
// unresolved, to a Dialer.
//
// Supported: the "no authentication" method only (any other offer is refused
// with method 0xFF), the CONNECT and UDP ASSOCIATE commands, and address
// types IPv4, domain name and IPv6. BIND is refused with reply 0x07. Domain
// names are never resolved locally: the Dialer receives them as host:port.
//
// Wire format (all integers big-endian):
//
//	greeting (client):  +-----+----------+----------+
//	                    | VER | NMETHODS | METHODS  |
//	                    | 05  |    1     | 1 to 255 |
//	                    +-----+----------+----------+
//	method (server):    +-----+--------+   METHOD 00 = no authentication,
//	                    | VER | METHOD |          FF = no acceptable method
//	                    | 05  |   1    |
//	                    +-----+--------+
//	request (client):   +-----+-----+-----+------+----------+----------+
//	                    | VER | CMD | RSV | ATYP | DST.ADDR | DST.PORT |
//	                    | 05  |  1  | 00  |  1   | variable |    2     |
//	                    +-----+-----+-----+------+----------+----------+
//	reply (server):     +-----+-----+-----+------+----------+----------+
//	                    | VER | REP | RSV | ATYP | BND.ADDR | BND.PORT |
//	                    | 05  |  1  | 00  |  1   | variable |    2     |
//	                    +-----+-----+-----+------+----------+----------+
//	UDP datagram:       +-----+------+------+----------+----------+------+
//	                    | RSV | FRAG | ATYP | DST.ADDR | DST.PORT | DATA |
//	                    | 2   |  1   |  1   | variable |    2     | rest |
//	                    +-----+------+------+----------+----------+------+
//
//	CMD:  01 CONNECT, 02 BIND (refused), 03 UDP ASSOCIATE
//	ATYP: 01 IPv4 (4 bytes), 03 domain (1 length byte, then the name), 04 IPv6 (16 bytes)
//	REP:  see the Reply constants
//
// UDP ASSOCIATE: the relay socket is bound on the IP address of the TCP
// listener the request arrived on, and lives as long as the TCP control
// connection. It accepts datagrams only from the IP address of the client that
// opened the association, and from the first source port seen from it.
// Fragmented datagrams (FRAG != 0) are dropped. Each destination gets its own
// upstream from Dialer.DialContext(ctx, "udp", dst), a message-oriented conn;
// datagrams coming back are wrapped in the UDP header above, whose address is
// the destination exactly as the client sent it.
//
// Of Burrow's packages it imports only internal/bidi (the copy loop) and
// internal/proxy/accept (the accept loop).
package socks5

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"time"

	"github.com/burrow-vpn/burrow/internal/bidi"
	"github.com/burrow-vpn/burrow/internal/proxy/accept"
)

// Dialer opens upstream connections. Network is "tcp" or "udp"; address is
// host:port where host may be a domain name, which must not be resolved
// locally. A "udp" conn is message-oriented: one Write sends one datagram to
// address, one Read returns one datagram from it.
//
// An error that implements interface{ SOCKSReply() byte } (see ErrNotAllowed
// and its siblings) chooses the reply code sent to the client.
type Dialer interface {
	DialContext(ctx context.Context, network, address string) (net.Conn, error)
}

// ErrServerClosed is returned by Serve after Close.
var ErrServerClosed = errors.New("socks5: server closed")

// Defaults for the zero values of the Server's timeouts.
const (
	DefaultHandshakeTimeout = 10 * time.Second
	DefaultDialTimeout      = 30 * time.Second
	DefaultUDPIdleTimeout   = 2 * time.Minute
)

// Server is a SOCKS5 server. Dialer must be set; the other fields' zero
// values work. A Server must not be copied after first use.
type Server struct {
	// Dialer opens the upstream connections. Required.
	Dialer Dialer
	// Logger receives debug-level reports of failed sessions. Nil discards.
	Logger *slog.Logger
	// HandshakeTimeout bounds reading the greeting and request and writing
	// each reply. Zero means DefaultHandshakeTimeout.
	HandshakeTimeout time.Duration
	// DialTimeout bounds each Dialer.DialContext call. Zero means
	// DefaultDialTimeout.
	DialTimeout time.Duration
	// UDPIdleTimeout closes a UDP association's upstream for one destination
	// after this long without a datagram either way. Zero means
	// DefaultUDPIdleTimeout.
	UDPIdleTimeout time.Duration

	listeners accept.Group // the Serve calls in progress
}

// Serve accepts connections on l and serves each in its own goroutine. It
// returns when l fails or is closed, or after Close (then with
// ErrServerClosed). Before returning it closes l and every connection it
// accepted, and waits until all their goroutines have ended.
func (s *Server) Serve(l net.Listener) error {
	err := s.listeners.Serve(l, s.logger().With("frontend", "socks5"), func(ctx context.Context, c net.Conn) {
		if err := s.ServeConn(ctx, c); err != nil {
			s.logger().Debug("socks5: session ended", "client", c.RemoteAddr().String(), "err", err)
		}
	})
	if errors.Is(err, accept.ErrClosed) {
		return ErrServerClosed
	}
	return fmt.Errorf("socks5: %w", err)
}

// Close closes every listener passed to Serve, which makes those Serve calls
// close their connections, and waits until they have returned. It does not
// touch connections passed to ServeConn directly; cancel their contexts.
func (s *Server) Close() error {
	return s.listeners.Close()
}

func (s *Server) logger() *slog.Logger {
	if s.Logger != nil {
		return s.Logger
	}
	return slog.New(slog.DiscardHandler)
}

func (s *Server) handshakeTimeout() time.Duration {
	if s.HandshakeTimeout > 0 {
		return s.HandshakeTimeout
	}
	return DefaultHandshakeTimeout
}

func (s *Server) dialTimeout() time.Duration {
	if s.DialTimeout > 0 {
		return s.DialTimeout
	}
	return DefaultDialTimeout
}

func (s *Server) udpIdleTimeout() time.Duration {
	if s.UDPIdleTimeout > 0 {
		return s.UDPIdleTimeout
	}
	return DefaultUDPIdleTimeout
}

// SOCKS protocol constants.
const (
	version5 = 0x05

	methodNoAuth       = 0x00
	methodNoAcceptable = 0xFF

	cmdConnect      = 0x01
	cmdBind         = 0x02
	cmdUDPAssociate = 0x03
)

// ServeConn serves one SOCKS5 session on conn and closes conn when done. It
// blocks until the session ends; cancelling ctx ends it early. The returned
// error says why the session failed; nil means it ended normally.
func (s *Server) ServeConn(ctx context.Context, conn net.Conn) error {
	defer conn.Close()
	if s.Dialer == nil {
		return errors.New("socks5: Server.Dialer is nil")
	}
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()

	if err := conn.SetDeadline(time.Now().Add(s.handshakeTimeout())); err != nil {
		return fmt.Errorf("socks5: set deadline: %w", err)
	}
	cmd, dst, err := s.handshake(conn)
	if err != nil {
		return err
	}
	if err := conn.SetDeadline(time.Time{}); err != nil {
		return fmt.Errorf("socks5: clear deadline: %w", err)
	}
	switch cmd {
	case cmdConnect:
		return s.connect(ctx, conn, dst)
	case cmdUDPAssociate:
		return s.udpAssociate(ctx, conn)
	default:
		s.refuse(conn, ReplyCommandNotSupported)
		return fmt.Errorf("socks5: command %#02x not supported", cmd)
	}
}

// handshake reads the greeting, selects "no authentication", and reads the
// request. It answers a failure itself when the protocol allows an answer.
// Reads go to conn directly, unbuffered, so that no byte the client sends
// after the request is consumed here.
func (s *Server) handshake(conn net.Conn) (cmd byte, dst addr, err error) {
	var hdr [2]byte
	if _, err := io.ReadFull(conn, hdr[:]); err != nil {
		return 0, addr{}, fmt.Errorf("socks5: read greeting: %w", err)
	}
	if hdr[0] != version5 {
		return 0, addr{}, fmt.Errorf("socks5: greeting: unsupported version %#02x", hdr[0])
	}
	methods := make([]byte, hdr[1])
	if _, err := io.ReadFull(conn, methods); err != nil {
		return 0, addr{}, fmt.Errorf("socks5: read greeting: %w", err)
	}
	if !containsByte(methods, methodNoAuth) {
		if _, err := conn.Write([]byte{version5, methodNoAcceptable}); err == nil {
			s.lingerClose(conn)
		}
		return 0, addr{}, errors.New("socks5: greeting: client offers no acceptable method")
	}
	if _, err := conn.Write([]byte{version5, methodNoAuth}); err != nil {
		return 0, addr{}, fmt.Errorf("socks5: write method: %w", err)
	}

	var req [3]byte // VER CMD RSV; readAddr reads ATYP onward
	if _, err := io.ReadFull(conn, req[:]); err != nil {
		return 0, addr{}, fmt.Errorf("socks5: read request: %w", err)
	}
	if req[0] != version5 {
		s.lingerClose(conn)
		return 0, addr{}, fmt.Errorf("socks5: request: unsupported version %#02x", req[0])
	}
	dst, err = readAddr(conn)
	switch {
	case errors.Is(err, errAddrType):
		s.refuse(conn, ReplyAddrTypeNotSupported)
		return 0, addr{}, fmt.Errorf("socks5: read request: %w", err)
	case errors.Is(err, errEmptyDomain):
		s.refuse(conn, ReplyGeneralFailure)
		return 0, addr{}, fmt.Errorf("socks5: read request: %w", err)
	case err != nil:
		return 0, addr{}, fmt.Errorf("socks5: read request: %w", err)
	}
	return req[1], dst, nil
}

func containsByte(b []byte, c byte) bool {
	for _, x := range b {
		if x == c {
			return true
		}
	}
	return false
}

// writeReply sends a reply within the handshake timeout. Its error is only
// worth returning on success replies; after a failure reply the session ends
// anyway.
func (s *Server) writeReply(conn net.Conn, rep Reply, bnd addr) error {
	if !bnd.ip.IsValid() && bnd.host == "" {
		bnd = addr{ip: zeroIPv4}
	}
	b := append([]byte{version5, byte(rep), 0x00}, bnd.appendTo(nil)...)
	conn.SetWriteDeadline(time.Now().Add(s.handshakeTimeout()))
	defer conn.SetWriteDeadline(time.Time{})
	if _, err := conn.Write(b); err != nil {
		return fmt.Errorf("socks5: write reply: %w", err)
	}
	return nil
}

// refuse sends a failure reply and closes the write side gracefully.
func (s *Server) refuse(conn net.Conn, rep Reply) {
	if s.writeReply(conn, rep, addr{}) == nil {
		s.lingerClose(conn)
	}
}

// lingerClose half-closes conn and discards what the client still sends, for
// a short while, so that closing with unread input does not make the kernel
// send a reset that could destroy the reply before the client reads it.
func (s *Server) lingerClose(conn net.Conn) {
	cw, ok := conn.(interface{ CloseWrite() error })
	if !ok || cw.CloseWrite() != nil {
		return
	}
	conn.SetReadDeadline(time.Now().Add(min(s.handshakeTimeout(), time.Second)))
	io.Copy(io.Discard, io.LimitReader(conn, 64<<10))
}

// connect serves CONNECT: dial dst through the Dialer, reply, then relay.
func (s *Server) connect(ctx context.Context, conn net.Conn, dst addr) error {
	dctx, cancel := context.WithTimeout(ctx, s.dialTimeout())
	up, err := s.Dialer.DialContext(dctx, "tcp", dst.String())
	cancel()
	if err != nil {
		s.refuse(conn, replyFor(err))
		return fmt.Errorf("socks5: connect %s: %w", dst, err)
	}
	if err := s.writeReply(conn, ReplySucceeded, addrFromNet(up.LocalAddr())); err != nil {
		up.Close()
		return err
	}
	return bidi.Copy(ctx, conn, up)
}
