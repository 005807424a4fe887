package httpproxy

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/textproto"
	"strconv"
	"strings"
	"time"
)

// connectTarget returns the host:port of a CONNECT request (authority form).
func connectTarget(req *http.Request) (string, error) {
	if req.URL == nil || req.URL.Host == "" || req.URL.Path != "" || req.URL.Scheme != "" {
		return "", fmt.Errorf("CONNECT target %q is not host:port", req.RequestURI)
	}
	host, port, err := net.SplitHostPort(req.URL.Host)
	if err != nil {
		return "", fmt.Errorf("CONNECT target %q is not host:port", req.RequestURI)
	}
	return checkHostPort(host, port)
}

// forwardTarget returns the host:port of an absolute-URI request; origin-form
// requests (not meant for a proxy) and schemes other than http are refused.
func forwardTarget(req *http.Request) (string, error) {
	if !req.URL.IsAbs() || req.URL.Host == "" {
		return "", fmt.Errorf("not a proxy request: %q is not an absolute http:// URI", req.RequestURI)
	}
	if req.URL.Scheme != "http" {
		return "", fmt.Errorf("scheme %q not supported; use CONNECT for https", req.URL.Scheme)
	}
	port := req.URL.Port()
	if port == "" {
		port = "80"
	}
	return checkHostPort(req.URL.Hostname(), port)
}

// checkHostPort validates a destination and joins it into host:port.
func checkHostPort(host, port string) (string, error) {
	if n, err := strconv.ParseUint(port, 10, 16); err != nil || n == 0 {
		return "", fmt.Errorf("bad port %q", port)
	}
	if host == "" || strings.ContainsAny(host, " \t\r\n/\\@") {
		return "", fmt.Errorf("bad host %q", host)
	}
	return net.JoinHostPort(host, port), nil
}

// hopHeaders are removed in both directions (RFC 9110 §7.6.1), together with
// the headers the Connection header names.
var hopHeaders = []string{
	"Connection",
	"Proxy-Connection", // non-standard, sent by some clients
	"Keep-Alive",
	"Proxy-Authenticate",
	"Proxy-Authorization",
	"Te",
	"Trailer", // the trailers themselves are forwarded by net/http's framing
	"Transfer-Encoding",
	"Upgrade",
}

func removeHopHeaders(h http.Header) {
	for _, field := range []string{"Connection", "Proxy-Connection"} {
		for _, v := range h[field] {
			for name := range strings.SplitSeq(v, ",") {
				if name = textproto.TrimString(name); name != "" {
					h.Del(name)
				}
			}
		}
	}
	for _, k := range hopHeaders {
		h.Del(k)
	}
}

// upstream is a connection to a destination, kept between requests.
type upstream struct {
	hostport string
	conn     net.Conn
	br       *bufio.Reader
	bw       *bufio.Writer
	stop     func() bool // unregisters closing conn when the client's ctx ends
}

func (c *clientConn) dropUpstream() {
	if c.up != nil {
		c.up.stop()
		c.up.conn.Close()
		c.up = nil
	}
}

// upstreamFor returns the kept upstream for hostport, or dials a new one.
func (c *clientConn) upstreamFor(ctx context.Context, hostport string) (up *upstream, reused bool, err error) {
	if c.up != nil && c.up.hostport == hostport {
		return c.up, true, nil
	}
	c.dropUpstream()
	conn, err := c.dial(ctx, hostport)
	if err != nil {
		return nil, false, err
	}
	c.up = &upstream{
		hostport: hostport,
		conn:     conn,
		br:       bufio.NewReader(conn),
		bw:       bufio.NewWriter(conn),
		stop:     context.AfterFunc(ctx, func() { conn.Close() }),
	}
	return c.up, false, nil
}

// forward serves an absolute-URI request. It returns whether the client
// connection may carry another request.
func (c *clientConn) forward(ctx context.Context, req *http.Request) (keepAlive bool, err error) {
	hasBody := req.Body != nil && req.Body != http.NoBody
	hostport, err := forwardTarget(req)
	if err != nil {
		c.writeError(req, http.StatusBadRequest, err.Error(), true)
		c.lingerClose()
		return false, fmt.Errorf("httpproxy: %w", err)
	}
	clientClose := req.Close || !req.ProtoAtLeast(1, 1)

	removeHopHeaders(req.Header)
	if _, ok := req.Header["User-Agent"]; !ok {
		req.Header["User-Agent"] = []string{""} // stops Request.Write adding Go's own
	}
	req.Close = false // the upstream connection's fate is ours to decide

	for attempt := 0; ; attempt++ {
		up, reused, err := c.upstreamFor(ctx, hostport)
		if err != nil {
			closeAfter := clientClose || hasBody // an unread body would be taken for the next request
			c.writeError(req, dialFailureStatus(err), dialFailureText(hostport, err), closeAfter)
			return !closeAfter, fmt.Errorf("httpproxy: %s %s: %w", req.Method, hostport, err)
		}
		keepAlive, sent, err := c.roundTrip(req, up, clientClose)
		if err == nil {
			return keepAlive, nil
		}
		c.dropUpstream()
		if !sent && reused && !hasBody && attempt == 0 && idempotent(req.Method) {
			// The kept connection was probably closed by the destination
			// while idle; send the request again on a fresh one.
			continue
		}
		if !sent {
			c.writeError(req, http.StatusBadGateway, fmt.Sprintf("burrow: bad response from %s: %v", hostport, err), true)
		}
		return false, fmt.Errorf("httpproxy: %s %s: %w", req.Method, hostport, err)
	}
}

func idempotent(method string) bool {
	switch method {
	case http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodTrace:
		return true
	}
	return false
}

// writerGrace is how long the request writer may take to finish after the
// response has been copied before it is aborted.
const writerGrace = 500 * time.Millisecond

// roundTrip writes req to up while reading the response, and copies the
// response to the client. sent reports whether anything of the response
// reached the client; keepAlive whether the client connection may carry
// another request.
func (c *clientConn) roundTrip(req *http.Request, up *upstream, clientClose bool) (keepAlive, sent bool, err error) {
	// Write the request concurrently with reading the response: the client
	// may wait for "100 Continue" before sending its body, and the
	// destination may answer before reading all of it.
	wdone := make(chan error, 1)
	go func() {
		err := req.Write(up.bw)
		if err == nil {
			err = up.bw.Flush()
		}
		wdone <- err
	}()
	// Whatever happens, the writer has ended when roundTrip returns.
	writerEnded := false
	waitWriter := func(grace time.Duration) error {
		writerEnded = true
		t := time.NewTimer(grace)
		defer t.Stop()
		select {
		case err := <-wdone:
			return err
		case <-t.C:
		}
		// Still writing: unblock it on both sides. The client's body is
		// then not fully read, so neither connection can be reused.
		up.conn.Close()
		c.conn.SetReadDeadline(time.Now())
		<-wdone
		return errors.New("destination did not read the whole request body")
	}
	defer func() {
		if !writerEnded {
			// The exchange failed before the response was copied; the
			// upstream is useless, and closing it ends a writer stuck on it.
			up.conn.Close()
			waitWriter(writerGrace)
			keepAlive = false
		}
	}()

	for {
		resp, err := http.ReadResponse(up.br, req)
		if err != nil {
			return false, sent, fmt.Errorf("read response: %w", err)
		}
		if resp.StatusCode == http.StatusSwitchingProtocols {
			resp.Body.Close()
			return false, sent, errors.New("unexpected 101 Switching Protocols (Upgrade is supported through CONNECT only)")
		}
		if resp.StatusCode >= 100 && resp.StatusCode < 200 {
			// Informational (100 Continue, 103 Early Hints): pass on, read the next.
			removeHopHeaders(resp.Header)
			resp.Proto, resp.ProtoMajor, resp.ProtoMinor = "HTTP/1.1", 1, 1
			sent = true
			if err := resp.Write(c.bw); err != nil {
				return false, sent, fmt.Errorf("copy response: %w", err)
			}
			if err := c.bw.Flush(); err != nil {
				return false, sent, fmt.Errorf("copy response: %w", err)
			}
			continue
		}
		sent = true
		resp.Body = flushingBody{ReadCloser: resp.Body, client: c.bw, upstream: up.br}
		upstreamReusable, err := c.writeResponse(req, resp, clientClose)
		if err != nil {
			return false, sent, err
		}
		if err := waitWriter(writerGrace); err != nil {
			return false, sent, fmt.Errorf("write request: %w", err)
		}
		if !upstreamReusable {
			c.dropUpstream()
		}
		return !clientClose, sent, nil
	}
}

// writeResponse copies a final response to the client, re-framing its body
// for the client connection. It reports whether the upstream connection may
// be reused.
func (c *clientConn) writeResponse(req *http.Request, resp *http.Response, clientClose bool) (upstreamReusable bool, err error) {
	defer resp.Body.Close()
	upstreamReusable = !resp.Close // also false for bodies delimited by the end of the connection

	removeHopHeaders(resp.Header)
	resp.Proto, resp.ProtoMajor, resp.ProtoMinor = "HTTP/1.1", 1, 1
	chunkedBody := len(resp.TransferEncoding) > 0 && resp.TransferEncoding[0] == "chunked"
	switch {
	case !req.ProtoAtLeast(1, 1):
		// No chunked encoding for HTTP/1.0: the end of the body is the end
		// of the connection.
		if chunkedBody {
			resp.TransferEncoding = nil
			resp.ContentLength = -1
		}
		resp.Trailer = nil
	case resp.ContentLength == -1 && !chunkedBody:
		// Delimited by the end of the upstream connection: chunk it, so the
		// client connection stays usable.
		resp.TransferEncoding = []string{"chunked"}
	}
	resp.Close = clientClose

	// writerOnly hides c.bw's ReadFrom: bufio.Writer.ReadFrom reads the body
	// straight into its own buffer, and flushingBody flushes that same
	// buffer from inside the read, which would resend already-flushed bytes.
	if err := resp.Write(writerOnly{c.bw}); err != nil {
		return false, fmt.Errorf("copy response: %w", err)
	}
	if err := c.bw.Flush(); err != nil {
		return false, fmt.Errorf("copy response: %w", err)
	}
	return upstreamReusable, nil
}

// writerOnly is an io.Writer without any other method of the value it wraps.
type writerOnly struct{ io.Writer }

// flushingBody flushes what was copied to the client before a read of the
// upstream body that may block, so a streamed response (server-sent events,
// a long poll) reaches the client as it arrives rather than once a buffer
// has filled.
type flushingBody struct {
	io.ReadCloser
	client   *bufio.Writer
	upstream *bufio.Reader // the body's source; buffered bytes mean the read will not block
}

func (b flushingBody) Read(p []byte) (int, error) {
	if b.client.Buffered() > 0 && b.upstream.Buffered() == 0 {
		if err := b.client.Flush(); err != nil {
			return 0, err
		}
	}
	return b.ReadCloser.Read(p)
}
