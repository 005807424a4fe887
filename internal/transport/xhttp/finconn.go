package xhttp

import (
	"errors"
	"io"
	"net"
	"sync"
	"time"
)

// finWait bounds how long a closed connection waits for the server's FIN
// before it is dropped anyway (a path that loses the FIN, a frozen one).
// It is generous: an observer counts the connection until the FIN comes
// back, which through an entry relay on a busy machine takes a while.
const finWait = 15 * time.Second

// finConn is a pooled connection that ends the way an observer on the path
// sees it end. Close sends our FIN (TLS close_notify, then a TCP half-close)
// and leaves the socket open for the HTTP/2 reader, which keeps reading
// until the server's FIN; only then is the socket closed and Gone closed.
// A censor counting connections per client→server pair counts this one
// until FINs have passed both ways, so the dialer frees its slot on Gone,
// the same event, not after a guessed delay.
type finConn struct {
	net.Conn
	once    sync.Once
	mu      sync.Mutex
	closing bool          // guarded by mu: Close was called
	ended   error         // guarded by mu: how the reader's last read failed (nil while it reads)
	gone    chan struct{} // closed once the socket is closed
	timer   *time.Timer   // guarded by mu: the finWait fallback
}

func newFinConn(c net.Conn) *finConn { return &finConn{Conn: c, gone: make(chan struct{})} }

// Gone is closed when the connection is fully closed.
func (c *finConn) Gone() <-chan struct{} { return c.gone }

func (c *finConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if err != nil {
		c.mu.Lock()
		if c.ended == nil {
			c.ended = err
		}
		closing := c.closing
		c.mu.Unlock()
		if closing {
			go c.finish(err)
		}
	}
	return n, err
}

// Close half-closes and lets the reader see the server's FIN; it does not
// wait for it.
func (c *finConn) Close() error {
	c.mu.Lock()
	if c.closing {
		c.mu.Unlock()
		return nil
	}
	c.closing = true
	ended := c.ended
	c.timer = time.AfterFunc(finWait, c.shut)
	c.mu.Unlock()
	// A TLS CloseWrite waits for a write in flight, which a connection
	// that stopped moving could hold forever: a deadline ends it first.
	c.Conn.SetWriteDeadline(time.Now().Add(time.Second))
	half := halfClose(c.Conn)
	switch {
	case !half:
		c.shut()
	case ended != nil:
		go c.finish(ended)
	}
	return nil
}

// finish closes the socket once the server's FIN is in: a TLS connection
// that ended cleanly (close_notify) may still have its FIN on the way, so
// the socket under it is read to its end first (until finWait at most).
func (c *finConn) finish(readErr error) {
	if errors.Is(readErr, io.EOF) {
		if raw := under(c.Conn); raw != nil {
			raw.SetReadDeadline(time.Now().Add(finWait))
			io.Copy(io.Discard, raw)
		}
	}
	c.shut()
}

// under returns the connection under a TLS connection, nil for one that
// is not TLS.
func under(c net.Conn) net.Conn {
	if tc, ok := c.(interface{ NetConn() net.Conn }); ok {
		return tc.NetConn()
	}
	return nil
}

// shut closes the socket for good.
func (c *finConn) shut() {
	c.once.Do(func() {
		c.mu.Lock()
		if c.timer != nil {
			c.timer.Stop()
		}
		c.mu.Unlock()
		c.Conn.Close()
		close(c.gone)
	})
}

// halfClose ends the writing side of c: the TLS close_notify where c is TLS,
// then the TCP FIN of the connection under it. It reports whether c could
// be half-closed at all.
func halfClose(c net.Conn) bool {
	cw, ok := c.(interface{ CloseWrite() error })
	if !ok {
		return false
	}
	if cw.CloseWrite() != nil {
		return false
	}
	// A TLS conn's CloseWrite sends only the alert; the socket under it
	// (possibly wrapped, for counting) carries the FIN.
	if raw := under(c); raw != nil {
		if cw, ok := raw.(interface{ CloseWrite() error }); ok {
			return cw.CloseWrite() == nil
		}
		return false
	}
	return true
}
