package camo

import (
	"net"
	"sync"
	"sync/atomic"

	"github.com/xtls/reality"
)

// A TLS conn writes each record of a Write with a system call of its own:
// 16 KiB at most, so a 64 KiB write is five calls, five segments and five
// wake-ups of the reader. On a conn that carries bulk data for many
// clients at once (an entry relay's leg) those calls were a fifth of the
// exit's CPU. Coalesced gathers the records of one Write and hands them to
// the TCP conn in one call: the bytes on the wire are the same records,
// only in fewer segments.

// gatherMax: a buffer grown past this is not kept for the next Write.
const gatherMax = 256 << 10

// gatherPool holds gather buffers between Writes, so an idle conn holds
// none.
var gatherPool = sync.Pool{New: func() any { return new([]byte) }}

// gatherer holds a conn's records while a Write runs (on), and writes
// everything else straight through, after what it holds. Once a write of
// the TCP conn failed, every later one fails with that error: part of a
// record may have gone out, and TLS cannot go on after it.
type gatherer struct {
	mu  sync.Mutex
	on  bool
	buf *[]byte // while on
	err error
}

func (g *gatherer) write(raw net.Conn, p []byte) (int, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.err != nil {
		return 0, g.err
	}
	if g.on {
		if g.buf == nil {
			g.buf = gatherPool.Get().(*[]byte)
		}
		*g.buf = append(*g.buf, p...)
		return len(p), nil
	}
	n, err := raw.Write(p)
	g.err = err
	return n, err
}

// begin starts gathering, unless a write already failed.
func (g *gatherer) begin() error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.err == nil {
		g.on = true
	}
	return g.err
}

// end writes what was gathered.
func (g *gatherer) end(raw net.Conn) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.on = false
	if g.buf == nil {
		return g.err
	}
	if g.err == nil {
		_, g.err = raw.Write(*g.buf)
	}
	if cap(*g.buf) <= gatherMax {
		*g.buf = (*g.buf)[:0]
		gatherPool.Put(g.buf)
	}
	g.buf = nil
	return g.err
}

// coalescedConn is a REALITY server conn whose Writes leave in one write of
// the TCP conn each.
type coalescedConn struct {
	*reality.Conn
	raw      *replayConn  // its gather is set
	wmu      sync.Mutex   // one Write gathers at a time
	inflight atomic.Int32 // Writes between begin and end
}

// Coalesced returns tc, a conn Server.Handshake returned, with the TLS
// records of each Write handed to the TCP conn in one call (tc itself if it
// is not one). Call it before tc is shared with other goroutines; use the
// returned conn from then on. The TLS conn's own writes outside a Write
// (an alert, a close) go out at once, in order.
func Coalesced(tc net.Conn) net.Conn {
	rc, ok := tc.(*reality.Conn)
	if !ok {
		return tc
	}
	raw, ok := rc.NetConn().(*replayConn)
	if !ok {
		return tc
	}
	raw.gather = &gatherer{}
	return &coalescedConn{Conn: rc, raw: raw}
}

func (c *coalescedConn) Write(p []byte) (int, error) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	c.inflight.Add(1)
	defer c.inflight.Add(-1)
	g := c.raw.gather
	if err := g.begin(); err != nil {
		return 0, err
	}
	n, err := c.Conn.Write(p)
	if ferr := g.end(c.raw.Conn); err == nil && ferr != nil {
		// The records were not all sent, and TLS keeps no partial
		// record: the conn is broken, whatever part of p got out.
		return 0, ferr
	}
	return n, err
}

// Close closes the TCP conn first while a Write is under way, as a TLS
// conn does while its own Write is: that Write may be blocked sending what
// it gathered, and a close_notify would wait behind it.
func (c *coalescedConn) Close() error {
	if c.inflight.Load() > 0 {
		c.raw.Conn.Close()
	}
	return c.Conn.Close()
}
