package client

import (
	"context"
	"io"
	"net"
	"os"
	"sync"
	"time"

	"github.com/burrow-vpn/burrow/internal/vless"
)

// Choosing a stream's carrier from its first bytes.
//
// With a server that carries TCP inside mux (tcpmux=1), a proxied TCP
// connection is answered at once and carried by what the application sends
// first:
//
//	first byte 0x16 (a TLS handshake record)  → a Vision connection of its own
//	                                            (warm spare or new handshake), so
//	                                            the inner handshake is padded and
//	                                            the data goes by direct copy
//	any other first bytes                     → a session of an open mux
//	                                            connection, no handshake: the
//	                                            bytes ride in its New frame
//	nothing within firstWait while the        → a Vision connection of its own
//	application reads (server speaks first)     (the safe choice)
//
// TLS never goes into the mux: TLS in TLS without Vision's padding is what
// censors look for.
var firstWait = 200 * time.Millisecond

// lazyConn is a proxied TCP connection whose carrier is chosen on its first
// Write (or after firstWait if the application reads first).
type lazyConn struct {
	t    *Tunnel
	req  *vless.Request // the request for a Vision connection of its own
	dest destAddr

	startMu sync.Mutex // serialises start
	started bool       // guarded by startMu
	ready   chan struct{}
	conn    net.Conn // set before ready is closed; nil if err
	err     error    // set before ready is closed

	mu       sync.Mutex // guards the fields below
	closed   bool
	cancel   context.CancelFunc // ends a start under way
	rdl, wdl time.Time          // deadlines set before the carrier exists
}

func (t *Tunnel) newLazyConn(req *vless.Request, address string) *lazyConn {
	return &lazyConn{t: t, req: req, dest: destAddr(address), ready: make(chan struct{})}
}

// start picks the carrier with first (nil: the application reads first)
// and opens it. It reports whether first went out in the process.
func (c *lazyConn) start(first []byte) (sent bool, err error) {
	c.startMu.Lock()
	defer c.startMu.Unlock()
	if c.started {
		<-c.ready
		return false, c.err
	}
	c.started = true
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		c.err = net.ErrClosed
		close(c.ready)
		return false, c.err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	c.cancel = cancel
	c.mu.Unlock()
	defer cancel()

	var conn net.Conn
	if len(first) > 0 && first[0] != 0x16 {
		conn, err = c.t.muxDial(ctx, string(c.dest), first)
		sent = err == nil
	} else {
		var tconn net.Conn
		if tconn, err = c.t.tlsConn(ctx); err == nil {
			conn = c.t.clientConn(tconn, c.req)
		}
	}
	c.mu.Lock()
	if err == nil && c.closed { // closed while opening
		conn.Close()
		conn, sent, err = nil, false, net.ErrClosed
	}
	if err == nil {
		if !c.rdl.IsZero() {
			conn.SetReadDeadline(c.rdl)
		}
		if !c.wdl.IsZero() {
			conn.SetWriteDeadline(c.wdl)
		}
	}
	c.conn, c.err = conn, err // under mu: the deadline setters look at conn
	c.mu.Unlock()
	close(c.ready)
	return sent, err
}

// carrier waits for the carrier, starting it after firstWait when the
// application has not written (a server-first protocol).
func (c *lazyConn) carrier() (net.Conn, error) {
	select {
	case <-c.ready:
		return c.conn, c.err
	default:
	}
	c.mu.Lock()
	rdl := c.rdl
	c.mu.Unlock()
	wait := time.NewTimer(firstWait)
	defer wait.Stop()
	var dl <-chan time.Time
	if !rdl.IsZero() {
		d := time.NewTimer(time.Until(rdl))
		defer d.Stop()
		dl = d.C
	}
	select {
	case <-c.ready:
	case <-wait.C:
		c.start(nil)
	case <-dl:
		return nil, os.ErrDeadlineExceeded
	}
	<-c.ready
	return c.conn, c.err
}

func (c *lazyConn) Write(p []byte) (int, error) {
	sent, err := c.start(p)
	if err != nil {
		return 0, err
	}
	if sent {
		return len(p), nil
	}
	return c.conn.Write(p)
}

func (c *lazyConn) Read(p []byte) (int, error) {
	conn, err := c.carrier()
	if err != nil {
		return 0, err
	}
	return conn.Read(p)
}

// ReadFrom reads the application's first bytes to choose the carrier, then
// lets the carrier copy the rest (Vision splices once it goes direct).
func (c *lazyConn) ReadFrom(r io.Reader) (int64, error) {
	bp := firstBufs.Get().(*[]byte)
	buf := *bp
	n, rerr := r.Read(buf)
	if n == 0 && rerr != nil {
		firstBufs.Put(bp)
		if rerr == io.EOF {
			rerr = nil
		}
		return 0, rerr
	}
	_, err := c.Write(buf[:n])
	firstBufs.Put(bp)
	if err != nil {
		return 0, err
	}
	total := int64(n)
	if rerr != nil {
		if rerr == io.EOF {
			rerr = nil
		}
		return total, rerr
	}
	var m int64
	if rf, ok := c.conn.(io.ReaderFrom); ok {
		m, err = rf.ReadFrom(r)
	} else {
		m, err = io.Copy(writerOnly{c.conn}, r)
	}
	return total + m, err
}

// firstBufs holds the buffers ReadFrom reads an application's first bytes into.
var firstBufs = sync.Pool{New: func() any { b := make([]byte, 16<<10); return &b }}

// WriteTo copies what the carrier receives to w, by the carrier's own
// WriteTo where it has one (Vision's splice).
func (c *lazyConn) WriteTo(w io.Writer) (int64, error) {
	conn, err := c.carrier()
	if err != nil {
		return 0, err
	}
	if wt, ok := conn.(io.WriterTo); ok {
		return wt.WriteTo(w)
	}
	return io.Copy(w, readerOnly{conn})
}

// CloseWrite half-closes where the carrier can (Vision). mux.cool has no
// half close (End ends both directions, as in Xray), so on a mux session it
// sends nothing and the stream stays open for the answer until the server
// ends it or the application closes: an HTTP client that half-closes after
// its request still gets the response. Before any write there is nothing to
// half-close: it fails and the caller closes.
func (c *lazyConn) CloseWrite() error {
	select {
	case <-c.ready:
	default:
		return net.ErrClosed
	}
	if c.err != nil {
		return c.err
	}
	if cw, ok := c.conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}

func (c *lazyConn) Close() error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil
	}
	c.closed = true
	if c.cancel != nil {
		c.cancel()
	}
	c.mu.Unlock()
	select {
	case <-c.ready:
		if c.conn != nil {
			return c.conn.Close()
		}
	default: // start closes what it opens
	}
	return nil
}

func (c *lazyConn) LocalAddr() net.Addr {
	select {
	case <-c.ready:
		if c.conn != nil {
			return c.conn.LocalAddr()
		}
	default:
	}
	return &net.TCPAddr{}
}

func (c *lazyConn) RemoteAddr() net.Addr { return c.dest }

func (c *lazyConn) SetDeadline(t time.Time) error {
	c.SetReadDeadline(t)
	return c.SetWriteDeadline(t)
}

func (c *lazyConn) SetReadDeadline(t time.Time) error {
	c.mu.Lock()
	c.rdl = t
	conn := c.conn
	c.mu.Unlock()
	if conn != nil {
		return conn.SetReadDeadline(t)
	}
	return nil
}

func (c *lazyConn) SetWriteDeadline(t time.Time) error {
	c.mu.Lock()
	c.wdl = t
	conn := c.conn
	c.mu.Unlock()
	if conn != nil {
		return conn.SetWriteDeadline(t)
	}
	return nil
}

// destAddr is a proxied connection's destination as host:port.
type destAddr string

func (a destAddr) Network() string { return "tcp" }
func (a destAddr) String() string  { return string(a) }

type writerOnly struct{ io.Writer }
type readerOnly struct{ io.Reader }
