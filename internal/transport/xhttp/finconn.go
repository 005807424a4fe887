package xhttp

import (
	"net"
	"sync"
	"time"
)

// finWait bounds how long a closed connection waits for the server's FIN
// before it is dropped anyway (a path that loses the FIN, a frozen one).
const finWait = 5 * time.Second

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
	ended   bool          // guarded by mu: a read failed (the server's FIN, a reset, a deadline)
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
		c.ended = true
		closing := c.closing
		c.mu.Unlock()
		if closing {
			c.shut()
		}
	}
	return n, err
}

// Close half-closes and lets the reader see the server's FIN; a connection
// whose reader already ended closes at once.
func (c *finConn) Close() error {
	c.mu.Lock()
	if c.closing {
		c.mu.Unlock()
		return nil
	}
	c.closing = true
	ended := c.ended
	if !ended {
		c.timer = time.AfterFunc(finWait, c.shut)
	}
	c.mu.Unlock()
	if ended || !halfClose(c.Conn) {
		c.shut()
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
	if tc, ok := c.(interface{ NetConn() net.Conn }); ok {
		if under, ok := tc.NetConn().(interface{ CloseWrite() error }); ok {
			return under.CloseWrite() == nil
		}
		return false
	}
	return true
}
