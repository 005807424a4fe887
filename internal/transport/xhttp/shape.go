package xhttp

import (
	"io"
	mrand "math/rand/v2"
	"sync"
	"sync/atomic"
	"time"
)

// HTTP/2 frame types and flags the shaper looks at.
const (
	frameHeadersType      = 0x1
	frameWindowUpdateType = 0x8 // the tests'
	frameContinuationType = 0x9

	flagEndStream  = 0x1
	flagEndHeaders = 0x4
)

// holdMax bounds how long request headers wait for the first DATA of their body. net/http
// writes that DATA right after the headers, from the same goroutine, unless the body has
// nothing yet (a stream-up upload) or flow control holds it back.
const holdMax = 20 * time.Millisecond

// Padding of small writes (see frameShaper).
const (
	// framePadType is the type of the padding frame: one of 0xf0–0xff, which the HTTP/2
	// frame-type registry keeps for experimental use, never assigned. Receivers ignore
	// frames of unknown types (RFC 9113 §4.1, §5.5), Go's HTTP/2 server (Burrow's and
	// Xray's) among them.
	framePadType = 0xfb
	// smallWrite: a write shorter than this gets a padding frame. Its TLS record (17 bytes
	// more under TLS 1.3) would otherwise be at most 176 bytes: about an inner Finished's
	// size (the TLS-in-TLS rules look for 20–170 bytes).
	smallWrite = 160
	// A padded write is paddedMin..paddedMax bytes, its record 17 more: the size of a
	// small request's HEADERS.
	paddedMin = 192
	paddedMax = 384
)

// heldAlone counts request headers that went out without their body, after holdMax: how
// often the shaping fell back (the tests read it; a busy machine can make it happen).
var heldAlone atomic.Int64

// frameShaper is the client's HTTP/2 write path (after the opening flight): it changes how
// the frames net/http writes are cut into TLS records, and adds padding frames, never
// changing net/http's frames. A short client record right after a server flight of a few
// KiB is the end of a TLS handshake carried inside TLS (hello, server flight, Finished) —
// what the censor lab's TLS-in-TLS rule (and the GFW's) looks for in every flight of a
// connection — and Go's HTTP/2 client makes such records all the time:
//
//   - it refreshes the connection's and the stream's flow-control windows each time it has
//     read 4 KiB of bodies, in a write of its own: a 30- or 43-byte record right after the
//     server's data. It acknowledges the server's SETTINGS (26 bytes), answers PINGs (34)
//     and resets streams (30) the same way; a relayed inner Finished, or the last bytes of a
//     POST's body, can also go out in a DATA frame alone.
//   - it writes a request's HEADERS and its body's DATA in two writes, so a short upload (a
//     packet-up POST of one small inner record) can become a flight of its own when an answer
//     arrives in between. Request headers that announce a body are held until the body's
//     first DATA (at most holdMax) and go out in one record with it, as a browser's fetch()
//     with a small body does.
//
// So every write shorter than smallWrite that ends between frames (outside a header block)
// gets a padding frame (framePadType, zeros) that makes it paddedMin..paddedMax bytes: no
// client record after the opening flight is the size of an inner Finished, wherever in the
// connection, however the flights fall (a busy machine, the relay's health probes, window
// updates after an inner server flight). Padding frames are not flow-controlled.
type frameShaper struct {
	w io.Writer

	mu     sync.Mutex
	held   []byte          // guarded by mu: request headers waiting for their body (in buf)
	heldAt time.Time       // guarded by mu: when held was set
	buf    []byte          // guarded by mu: held headers and the write joining them, reused
	timer  *time.Timer     // guarded by mu: flushes held after holdMax
	err    error           // guarded by mu: the flush of held failed
	cur    frameCursor     // guarded by mu: where in a frame the bytes written so far end
	small  [paddedMax]byte // guarded by mu: a small write and its padding
}

// maxShapeBuf is the most buf keeps between writes; a POST's first DATA write may be larger.
const maxShapeBuf = 32 << 10

// Write writes p, one HTTP/2 write of net/http's, shaped as the type's comment says.
func (s *frameShaper) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err != nil {
		return 0, s.err
	}
	if s.held != nil {
		s.timer.Stop()
		b := append(s.held, p...)
		s.held = nil
		err := s.writeLocked(b)
		s.keep(b)
		if err != nil {
			return 0, err
		}
		return len(p), nil
	}
	if s.cur.boundary() && headersAwaitingBody(p) {
		s.held, s.heldAt = append(s.buf[:0], p...), time.Now()
		if s.timer == nil {
			s.timer = time.AfterFunc(holdMax, s.flushHeld)
		} else {
			s.timer.Reset(holdMax)
		}
		return len(p), nil
	}
	if err := s.writeLocked(p); err != nil {
		return 0, err
	}
	return len(p), nil
}

// writeLocked writes b, with a padding frame after it when it is short and ends between
// frames. A failed write fails the connection: HTTP/2 does not retry, so how much of b went
// out does not matter.
func (s *frameShaper) writeLocked(b []byte) error {
	s.cur.feed(b)
	if len(b) >= smallWrite || !s.cur.boundary() {
		_, err := s.w.Write(b)
		return err
	}
	n := paddedMin + mrand.IntN(paddedMax-paddedMin+1) // math/rand: no allocation per write
	out := s.small[:n]
	copy(out, b)
	pad := out[len(b):]
	clear(pad)
	k := len(pad) - 9
	pad[0], pad[1], pad[2], pad[3] = byte(k>>16), byte(k>>8), byte(k), framePadType
	_, err := s.w.Write(out)
	return err
}

// flushHeld writes held headers whose body did not come within holdMax. A run of the timer
// that fired for earlier headers (already sent with their body) leaves newer ones alone.
func (s *frameShaper) flushHeld() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.held == nil || s.err != nil || time.Since(s.heldAt) < holdMax {
		return
	}
	heldAlone.Add(1)
	s.err = s.writeLocked(s.held)
	s.keep(s.held)
	s.held = nil
}

// keep keeps b's array for the next held headers unless it grew large.
func (s *frameShaper) keep(b []byte) {
	s.buf = nil
	if cap(b) <= maxShapeBuf {
		s.buf = b[:0]
	}
}

// frameCursor follows HTTP/2 frame headers through the bytes written, which may cut frames
// anywhere (net/http's buffered writer flushes a large frame in pieces).
type frameCursor struct {
	hdr   [9]byte
	nhdr  int
	skip  int  // payload bytes of the current frame still to come
	block bool // the last frame opened a header block (HEADERS or CONTINUATION without END_HEADERS)
}

// feed follows p.
func (c *frameCursor) feed(p []byte) {
	for len(p) > 0 {
		if c.skip > 0 {
			k := min(c.skip, len(p))
			c.skip -= k
			p = p[k:]
			continue
		}
		k := copy(c.hdr[c.nhdr:], p)
		c.nhdr += k
		p = p[k:]
		if c.nhdr < 9 {
			return
		}
		c.nhdr = 0
		c.skip = int(c.hdr[0])<<16 | int(c.hdr[1])<<8 | int(c.hdr[2])
		typ := c.hdr[3]
		c.block = (typ == frameHeadersType || typ == frameContinuationType) && c.hdr[4]&flagEndHeaders == 0
	}
}

// boundary reports whether the bytes so far end between frames, outside a header block:
// where another frame may go (RFC 9113 §6.10 allows none inside a header block).
func (c *frameCursor) boundary() bool { return c.nhdr == 0 && c.skip == 0 && !c.block }

// frames calls f with the type and flags of each frame of p and reports whether p is whole
// frames and f accepted every one.
func frames(p []byte, f func(typ, flags byte) bool) bool {
	for len(p) > 0 {
		if len(p) < 9 {
			return false
		}
		n := 9 + (int(p[0])<<16 | int(p[1])<<8 | int(p[2]))
		if len(p) < n || !f(p[3], p[4]) {
			return false
		}
		p = p[n:]
	}
	return true
}

// headersAwaitingBody reports whether p is a request's header block (HEADERS and any
// CONTINUATION frames) that does not end its stream: DATA follows.
func headersAwaitingBody(p []byte) bool {
	first := true
	return len(p) > 0 && frames(p, func(typ, flags byte) bool {
		ok := (first && typ == frameHeadersType || !first && typ == frameContinuationType) && flags&flagEndStream == 0
		first = false
		return ok
	})
}
