// Package httpproxy is the client's local HTTP proxy frontend. It serves
// two kinds of proxy request and hands every destination, unresolved, to a
// Dialer:
//
//   - CONNECT host:port — dial host:port, answer
//     "HTTP/1.1 200 Connection established", then relay raw bytes both ways
//     (HTTPS, WebSocket over TLS, anything else tunnelled);
//   - absolute-URI requests (GET http://host/path HTTP/1.1) — forward the
//     request in origin form (GET /path, Host: host) with hop-by-hop headers
//     removed, and copy the response back.
//
// The two exchanges, as the client and the destination see them:
//
//	client → proxy                         proxy → destination (example.com:443)
//	CONNECT example.com:443 HTTP/1.1       (Dialer.DialContext "tcp" "example.com:443")
//	Host: example.com:443
//	                                       proxy → client
//	                                       HTTP/1.1 200 Connection established
//	then raw bytes both ways until each side closes (half-close is passed on)
//
//	client → proxy                         proxy → destination (example.com:80)
//	GET http://example.com/a?b HTTP/1.1    GET /a?b HTTP/1.1
//	Host: example.com                      Host: example.com
//	Proxy-Connection: keep-alive           Accept: */*
//	Connection: X-Hop                      (hop-by-hop headers dropped)
//	X-Hop: 1
//	Accept: */*
//
// Client connections are kept alive across requests, also when consecutive
// requests go to different hosts. Per client connection, the upstream
// connection of the last request is kept for reuse by the next request to
// the same host:port.
//
// Answers the proxy makes itself: 400 for requests it cannot parse and for
// origin-form requests (GET /path: not a proxy request) or URLs that are
// not http://; 431 for request headers over MaxHeaderBytes; 502 with a short
// plain-text body when the destination cannot be reached or answers with
// something that is not HTTP/1.x. A Dialer error with an HTTPStatus() int
// method chooses the status instead (400 for a destination the Dialer cannot
// send, 403 when the tunnel's server refuses the link).
//
// Upgrade (WebSocket) is supported through CONNECT only: the Upgrade and
// Connection headers of absolute-URI requests are dropped like all hop-by-hop
// headers. No authentication: the proxy is meant for a loopback listener, and
// Proxy-Authorization is dropped, never forwarded.
//
// Of Burrow's packages it imports only internal/bidi (the copy loop) and
// internal/proxy/accept (the accept loop).
package httpproxy

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"net/http"
	"time"

	"github.com/burrow-vpn/burrow/internal/bidi"
	"github.com/burrow-vpn/burrow/internal/proxy/accept"
)

// Dialer opens upstream connections. Network is "tcp"; address is host:port
// where host may be a domain name, which must not be resolved locally.
//
// An error that implements interface{ HTTPStatus() int } chooses the status
// of the answer (502 otherwise).
type Dialer interface {
	DialContext(ctx context.Context, network, address string) (net.Conn, error)
}

// ErrServerClosed is returned by Serve after Close.
var ErrServerClosed = errors.New("httpproxy: server closed")

// Defaults for the zero values of the Server's fields.
const (
	DefaultHeaderTimeout  = 30 * time.Second
	DefaultIdleTimeout    = 2 * time.Minute
	DefaultDialTimeout    = 30 * time.Second
	DefaultMaxHeaderBytes = 1 << 20
)

// Server is an HTTP proxy. Dialer must be set; the other fields' zero values
// work. A Server must not be copied after first use.
type Server struct {
	// Dialer opens the upstream connections. Required.
	Dialer Dialer
	// Logger receives debug-level reports of failed requests. Nil discards.
	Logger *slog.Logger
	// HeaderTimeout bounds reading a request header, from its first byte (or
	// from the start of the connection for the first request). Zero means
	// DefaultHeaderTimeout.
	HeaderTimeout time.Duration
	// IdleTimeout is how long a client connection may wait between
	// requests. Zero means DefaultIdleTimeout.
	IdleTimeout time.Duration
	// DialTimeout bounds each Dialer.DialContext call. Zero means
	// DefaultDialTimeout.
	DialTimeout time.Duration
	// MaxHeaderBytes bounds the size of a request header. Zero means
	// DefaultMaxHeaderBytes.
	MaxHeaderBytes int

	listeners accept.Group // the Serve calls in progress
}

// Serve accepts connections on l and serves each in its own goroutine. It
// returns when l fails or is closed, or after Close (then with
// ErrServerClosed). Before returning it closes l and every connection it
// accepted, and waits until all their goroutines have ended.
func (s *Server) Serve(l net.Listener) error {
	err := s.listeners.Serve(l, s.logger().With("frontend", "httpproxy"), func(ctx context.Context, c net.Conn) {
		if err := s.ServeConn(ctx, c); err != nil {
			s.logger().Debug("httpproxy: connection ended", "client", c.RemoteAddr().String(), "err", err)
		}
	})
	if errors.Is(err, accept.ErrClosed) {
		return ErrServerClosed
	}
	return fmt.Errorf("httpproxy: %w", err)
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

func orDefault[T ~int | ~int64](v, def T) T {
	if v > 0 {
		return v
	}
	return def
}

// ServeConn serves HTTP proxy requests on conn until the client closes it,
// an error ends it, or ctx is cancelled, and closes conn. The returned error
// says why the connection failed; nil means it ended normally.
func (s *Server) ServeConn(ctx context.Context, conn net.Conn) error {
	defer conn.Close()
	if s.Dialer == nil {
		return errors.New("httpproxy: Server.Dialer is nil")
	}
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()

	c := &clientConn{
		srv:  s,
		conn: conn,
		lim:  &headerLimiter{r: conn},
		bw:   bufio.NewWriter(conn),
	}
	c.br = bufio.NewReader(c.lim)
	defer c.dropUpstream()

	for first := true; ; first = false {
		req, err := c.readRequest(first)
		if err != nil {
			return c.badRequest(err)
		}
		if req.Method == http.MethodConnect {
			return c.connect(ctx, req)
		}
		keepAlive, err := c.forward(ctx, req)
		if !keepAlive {
			return err
		}
		if err != nil {
			s.logger().Debug("httpproxy: request failed", "err", err)
		}
	}
}

// headerLimiter makes reads fail once n bytes have been read, to bound a
// request header; n is lifted while a body is read.
type headerLimiter struct {
	r   io.Reader
	n   int64
	hit bool
}

func (l *headerLimiter) Read(p []byte) (int, error) {
	if l.n <= 0 {
		l.hit = true
		return 0, io.EOF
	}
	if int64(len(p)) > l.n {
		p = p[:l.n]
	}
	n, err := l.r.Read(p)
	l.n -= int64(n)
	return n, err
}

// errHeaderTooLarge reports a request header over the limit.
var errHeaderTooLarge = errors.New("request header too large")

// clientConn is one client connection. It is used by one goroutine at a
// time: ServeConn's, except while forward's request writer runs, which then
// owns br (reading the request body) and the upstream's bw.
type clientConn struct {
	srv  *Server
	conn net.Conn
	lim  *headerLimiter
	br   *bufio.Reader // reads from lim
	bw   *bufio.Writer // writes to conn
	up   *upstream     // kept from the last request, or nil
}

// readRequest reads the next request header within the timeouts.
func (c *clientConn) readRequest(first bool) (*http.Request, error) {
	headerTimeout := orDefault(c.srv.HeaderTimeout, DefaultHeaderTimeout)
	if !first {
		// Wait for the first byte of the next request for up to the idle timeout.
		c.conn.SetReadDeadline(time.Now().Add(orDefault(c.srv.IdleTimeout, DefaultIdleTimeout)))
		if _, err := c.br.Peek(1); err != nil {
			return nil, err
		}
	}
	c.conn.SetReadDeadline(time.Now().Add(headerTimeout))
	c.lim.n = int64(orDefault(c.srv.MaxHeaderBytes, DefaultMaxHeaderBytes)) + 4096 // bufio slack, as net/http
	c.lim.hit = false
	req, err := http.ReadRequest(c.br)
	if err != nil {
		if c.lim.hit {
			return nil, errHeaderTooLarge
		}
		return nil, err
	}
	if req.ProtoMajor != 1 {
		return nil, fmt.Errorf("unsupported protocol version %q", req.Proto)
	}
	c.lim.n = math.MaxInt64
	c.conn.SetReadDeadline(time.Time{})
	return req, nil
}

// badRequest answers a request that could not be read, unless the client
// just went away or stalled, and ends the connection.
func (c *clientConn) badRequest(err error) error {
	var ne net.Error
	switch {
	case errors.Is(err, io.EOF):
		return nil // closed between requests
	case errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, net.ErrClosed), errors.As(err, &ne):
		return fmt.Errorf("httpproxy: read request: %w", err)
	case errors.Is(err, errHeaderTooLarge):
		c.writeError(nil, http.StatusRequestHeaderFieldsTooLarge, "request header too large", true)
	default:
		c.writeError(nil, http.StatusBadRequest, "malformed request", true)
	}
	c.lingerClose()
	return fmt.Errorf("httpproxy: read request: %w", err)
}

// writeError sends a short plain-text answer made by the proxy itself. req
// may be nil; for HEAD requests the body is left out.
func (c *clientConn) writeError(req *http.Request, code int, msg string, closeConn bool) error {
	body := msg + "\n"
	fmt.Fprintf(c.bw, "HTTP/1.1 %d %s\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: %d\r\n",
		code, http.StatusText(code), len(body))
	if closeConn {
		c.bw.WriteString("Connection: close\r\n")
	}
	c.bw.WriteString("\r\n")
	if req == nil || req.Method != http.MethodHead {
		c.bw.WriteString(body)
	}
	c.conn.SetWriteDeadline(time.Now().Add(orDefault(c.srv.HeaderTimeout, DefaultHeaderTimeout)))
	defer c.conn.SetWriteDeadline(time.Time{})
	return c.bw.Flush()
}

// lingerClose half-closes the client conn and discards what it still sends
// for a short while, so the kernel does not answer unread input with a reset
// that could destroy the error response before the client reads it.
func (c *clientConn) lingerClose() {
	cw, ok := c.conn.(interface{ CloseWrite() error })
	if !ok || cw.CloseWrite() != nil {
		return
	}
	c.conn.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
	io.Copy(io.Discard, io.LimitReader(c.conn, 256<<10))
}

// dial opens a connection to hostport through the Dialer.
func (c *clientConn) dial(ctx context.Context, hostport string) (net.Conn, error) {
	dctx, cancel := context.WithTimeout(ctx, orDefault(c.srv.DialTimeout, DefaultDialTimeout))
	defer cancel()
	return c.srv.Dialer.DialContext(dctx, "tcp", hostport)
}

// connect serves a CONNECT request: dial, answer 200, relay.
func (c *clientConn) connect(ctx context.Context, req *http.Request) error {
	hostport, err := connectTarget(req)
	if err != nil {
		c.writeError(req, http.StatusBadRequest, err.Error(), true)
		c.lingerClose()
		return fmt.Errorf("httpproxy: CONNECT: %w", err)
	}
	c.dropUpstream()
	up, err := c.dial(ctx, hostport)
	if err != nil {
		c.writeError(req, dialFailureStatus(err), dialFailureText(hostport, err), true)
		return fmt.Errorf("httpproxy: CONNECT %s: %w", hostport, err)
	}
	c.bw.WriteString("HTTP/1.1 200 Connection established\r\n\r\n")
	if err := c.bw.Flush(); err != nil {
		up.Close()
		return fmt.Errorf("httpproxy: CONNECT %s: write response: %w", hostport, err)
	}
	// Bytes the client sent right behind the CONNECT header (a TLS
	// ClientHello, say) are already in br; pass them on before relaying
	// on the bare conns.
	if n := c.br.Buffered(); n > 0 {
		early, _ := c.br.Peek(n)
		if _, err := up.Write(early); err != nil {
			up.Close()
			return fmt.Errorf("httpproxy: CONNECT %s: %w", hostport, err)
		}
	}
	return bidi.Copy(ctx, c.conn, up)
}

// dialFailureStatus is the status answering a failed dial: the error's own (an error with
// an HTTPStatus() int method in the 4xx or 5xx range, such as a destination the Dialer
// cannot send), else 502.
func dialFailureStatus(err error) int {
	var s interface{ HTTPStatus() int }
	if errors.As(err, &s) {
		if code := s.HTTPStatus(); code >= 400 && code <= 599 {
			return code
		}
	}
	return http.StatusBadGateway
}

// dialFailureText is the body answering a failed dial: short, one line.
func dialFailureText(hostport string, err error) string {
	msg := err.Error()
	if len(msg) > 200 {
		msg = msg[:200]
	}
	if dialFailureStatus(err) < 500 {
		return "burrow: " + msg
	}
	return fmt.Sprintf("burrow: cannot reach %s: %s", hostport, msg)
}
