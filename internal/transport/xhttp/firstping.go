package xhttp

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"
)

// pingConn makes a connection's first PING round trip at the socket (see
// Dialer.dial for why there is one): net/http's ClientConn, which runs
// HTTP/2 on the connection, has no Ping. Right after HTTP/2's opening
// flight (the preface, SETTINGS and WINDOW_UPDATE: its first write)
// pingConn writes a PING frame with random data, in a write of its own as
// a Ping call would, and watches the server's frames for the
// acknowledgement; HTTP/2 ignores the acknowledgement of a PING it did not
// send. Ready is reported once HTTP/2 has also handled every frame up to
// the acknowledgement, the server's SETTINGS among them: HTTP/2's reader
// handles frames in order and reads from the socket only after it has
// handled the bytes it has.
type pingConn struct {
	*finConn // Close is finConn's: the slot stays taken until FINs have passed
	data     [8]byte
	sent     atomic.Bool   // the PING was written (or failed to be)
	ready    chan struct{} // closed when the round trip is over
	once     sync.Once
	err      error       // set before ready is closed: the round trip failed
	shape    frameShaper // HTTP/2's writes after the opening flight

	// Touched only by HTTP/2's reader.
	scan  pingScanner
	acked bool // the acknowledgement was in bytes already returned

	inFrame   atomic.Bool   // the bytes returned so far end inside a frame of the server's
	heard     atomic.Int64  // when bytes last arrived, in Unix nanoseconds
	poolHeard *atomic.Int64 // the same for any connection of the pool; nil in tests
	raw       func() int64  // bytes received under the TLS layer (DialFunc's rx)
	rawRead   atomic.Int64  // raw when the last bytes were returned
}

// partial reports whether a frame of the server's has arrived in part, or
// bytes under the TLS layer that it has not passed on (a record in part):
// the server owes the rest (watchStall). A record the TLS layer read ahead,
// in part, with a whole one before it, is not seen.
func (c *pingConn) partial() bool { return c.inFrame.Load() || c.raw() > c.rawRead.Load() }

func newPingConn(fc *finConn, raw func() int64) *pingConn {
	c := &pingConn{finConn: fc, ready: make(chan struct{}), raw: raw}
	c.shape.w = fc
	rand.Read(c.data[:])
	return c
}

// finish ends the round trip with err (nil: it succeeded).
func (c *pingConn) finish(err error) {
	c.once.Do(func() {
		c.err = err
		close(c.ready)
	})
}

// wait waits for the round trip.
func (c *pingConn) wait(ctx context.Context) error {
	select {
	case <-c.ready:
		return c.err
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (c *pingConn) Write(p []byte) (int, error) {
	if c.sent.Load() { // HTTP/2 writes one at a time: only this Write sets sent
		return c.shape.Write(p)
	}
	n, err := c.finConn.Write(p)
	if err != nil || c.sent.Swap(true) {
		return n, err
	}
	if !wholeFrames(p, len(Preface)) {
		c.finish(errors.New("HTTP/2's opening flight is not whole frames"))
		return n, err
	}
	var f [9 + 8]byte
	f[2] = 8 // length
	f[3] = framePingType
	copy(f[9:], c.data[:])
	if _, err := c.finConn.Write(f[:]); err != nil {
		c.finish(fmt.Errorf("write: %w", err))
		return n, err
	}
	return n, nil
}

func (c *pingConn) Read(p []byte) (int, error) {
	if c.acked {
		c.finish(nil) // HTTP/2 handled what came with the acknowledgement
	}
	n, err := c.finConn.Read(p)
	if n > 0 {
		now := time.Now().UnixNano()
		c.heard.Store(now)
		if c.poolHeard != nil {
			c.poolHeard.Store(now)
		}
		c.rawRead.Store(c.raw())
		if c.scan.feed(p[:n], c.data) {
			c.acked = true
		}
		c.inFrame.Store(c.scan.skip > 0 || c.scan.nhdr > 0)
	}
	if err != nil && !c.acked {
		c.finish(fmt.Errorf("read: %w", err))
	}
	return n, err
}

const framePingType = 0x6

// wholeFrames reports whether p is skip bytes and then whole HTTP/2 frames.
func wholeFrames(p []byte, skip int) bool {
	if len(p) < skip {
		return false
	}
	for p = p[skip:]; len(p) > 0; {
		if len(p) < 9 {
			return false
		}
		n := 9 + (int(p[0])<<16 | int(p[1])<<8 | int(p[2]))
		if len(p) < n {
			return false
		}
		p = p[n:]
	}
	return true
}

// pingScanner follows HTTP/2 frame headers in the server's byte stream and
// reports a PING acknowledgement carrying given data.
type pingScanner struct {
	skip int // bytes of a frame payload still to pass
	hdr  [9]byte
	nhdr int
	ack  bool // the payload being passed is a PING acknowledgement's
	got  [8]byte
}

// feed follows the frames in p and reports whether p completed a PING
// acknowledgement of data.
func (f *pingScanner) feed(p []byte, data [8]byte) bool {
	acked := false
	for len(p) > 0 {
		if f.skip > 0 {
			k := min(f.skip, len(p))
			if f.ack {
				copy(f.got[8-f.skip:], p[:k])
			}
			f.skip -= k
			p = p[k:]
			if f.skip == 0 && f.ack && f.got == data {
				acked = true
			}
			continue
		}
		k := copy(f.hdr[f.nhdr:], p)
		f.nhdr += k
		p = p[k:]
		if f.nhdr < 9 {
			break
		}
		f.nhdr = 0
		f.skip = int(binary.BigEndian.Uint32(f.hdr[:4]) >> 8)
		f.ack = f.hdr[3] == framePingType && f.hdr[4]&0x1 != 0 && f.skip == 8
	}
	return acked
}
