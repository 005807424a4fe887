package camo

import (
	"net"
	"sync"

	"github.com/xtls/reality"
)

// A TLS conn writes each record of a Write with a system call of its own:
// 16 KiB at most, so a 64 KiB write is five calls, five segments and five
// wake-ups of the reader. On a conn that carries bulk data for many
// clients at once (an entry relay's leg) those calls were a fifth of the
// exit's CPU. Coalesced gathers the records of one Write and hands them to
// the TCP conn in one call: the bytes on the wire are the same records,
// only in fewer segments.

// gatherMax: a buffer grown past this is dropped after its flush, so a
// conn that once wrote a large burst does not hold it while idle.
const gatherMax = 256 << 10

// gatherer holds a conn's records while a Write runs (on), and writes
// everything else straight through, after what it holds.
type gatherer struct {
	mu  sync.Mutex
	on  bool
	buf []byte
}

func (g *gatherer) write(raw net.Conn, p []byte) (int, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.on {
		g.buf = append(g.buf, p...)
		return len(p), nil
	}
	return raw.Write(p)
}

func (g *gatherer) begin() {
	g.mu.Lock()
	g.on = true
	g.mu.Unlock()
}

// end writes what was gathered.
func (g *gatherer) end(raw net.Conn) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.on = false
	if len(g.buf) == 0 {
		return nil
	}
	_, err := raw.Write(g.buf)
	if cap(g.buf) > gatherMax {
		g.buf = nil
	} else {
		g.buf = g.buf[:0]
	}
	return err
}

// coalescedConn is a REALITY server conn whose Writes leave in one write of
// the TCP conn each.
type coalescedConn struct {
	*reality.Conn
	raw *replayConn
	g   *gatherer
	wmu sync.Mutex // one Write gathers at a time
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
	return &coalescedConn{Conn: rc, raw: raw, g: raw.gather}
}

func (c *coalescedConn) Write(p []byte) (int, error) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	c.g.begin()
	n, err := c.Conn.Write(p)
	if ferr := c.g.end(c.raw.Conn); err == nil && ferr != nil {
		// The records were not all sent, and TLS keeps no partial
		// record: the conn is broken, whatever part of p got out.
		return 0, ferr
	}
	return n, err
}
