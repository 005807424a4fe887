package xhttp

import (
	"io"
	"sync"
	"sync/atomic"
	"time"
)

// HTTP/2 frame types the shaper looks at (framePingType is in firstping.go).
const (
	frameHeadersType      = 0x1
	framePriorityType     = 0x2
	frameRSTStreamType    = 0x3
	frameSettingsType     = 0x4
	frameWindowUpdateType = 0x8
	frameContinuationType = 0x9

	flagEndStream = 0x1
)

// holdMax bounds how long request headers wait for the first DATA of their body. net/http
// writes that DATA right after the headers, from the same goroutine, unless the body has
// nothing yet (a stream-up upload) or flow control holds it back.
const holdMax = 20 * time.Millisecond

// heldAlone counts request headers that went out without their body, after holdMax: how
// often the shaping fell back (the tests read it; a busy machine can make it happen).
var heldAlone atomic.Int64

// frameShaper is the client's HTTP/2 write path (after the opening flight): it changes how
// the frames net/http writes are cut into TLS records, never the frames. Two things in Go's
// HTTP/2 client make records that, after an answer of a few KiB, have the size of an inner
// TLS Finished (40–170 bytes), so that a request, its answer and that record take the shape
// of a TLS handshake inside TLS (hello, server flight, Finished), which the censor lab's
// TLS-in-TLS rule (and the GFW's) looks for in every flight of a connection:
//
//   - it refreshes the connection's and the stream's flow-control windows together, in one
//     write, each time it has read 4 KiB of a body: a 43-byte record, where a browser's lone
//     WINDOW_UPDATE is 30. A write made only of control frames (PRIORITY, RST_STREAM,
//     SETTINGS, PING, WINDOW_UPDATE), two or more, goes out one frame per record, the sizes
//     browsers produce (26-byte SETTINGS ACK, 30-byte WINDOW_UPDATE, 34-byte PING);
//   - it writes a request's HEADERS and its body's DATA in two writes, so a short upload (a
//     packet-up POST of one small inner record) can become a flight of its own when an answer
//     arrives in between. Request headers that announce a body are held until the body's
//     first DATA (at most holdMax) and go out in one record with it, as a browser's fetch()
//     with a small body does.
type frameShaper struct {
	w io.Writer

	mu     sync.Mutex
	held   []byte      // guarded by mu: request headers waiting for their body (in buf)
	heldAt time.Time   // guarded by mu: when held was set
	buf    []byte      // guarded by mu: held headers and the write joining them, reused
	timer  *time.Timer // guarded by mu: flushes held after holdMax
	err    error       // guarded by mu: the flush of held failed
}

// maxShapeBuf is the most buf keeps between writes; a POST's first DATA write may be larger.
const maxShapeBuf = 32 << 10

// Write writes p, one HTTP/2 write of net/http's (whole frames: net/http flushes frames it
// has finished), shaped as the type's comment says.
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
		_, err := s.w.Write(b)
		s.keep(b)
		if err != nil {
			return 0, err
		}
		return len(p), nil
	}
	if headersAwaitingBody(p) {
		s.held, s.heldAt = append(s.buf[:0], p...), time.Now()
		if s.timer == nil {
			s.timer = time.AfterFunc(holdMax, s.flushHeld)
		} else {
			s.timer.Reset(holdMax)
		}
		return len(p), nil
	}
	return writeControlApart(s.w, p)
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
	_, s.err = s.w.Write(s.held)
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

// writeControlApart writes p to w, one write per frame when p is made only of control
// frames, two or more; otherwise as it is.
func writeControlApart(w io.Writer, p []byte) (int, error) {
	if !controlFramesOnly(p) {
		return w.Write(p)
	}
	n := 0
	for n < len(p) {
		end := n + 9 + (int(p[n])<<16 | int(p[n+1])<<8 | int(p[n+2]))
		k, err := w.Write(p[n:end])
		n += k
		if err != nil {
			return n, err
		}
	}
	return n, nil
}

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

// controlFramesOnly reports whether p is two or more whole HTTP/2 frames, all control frames.
func controlFramesOnly(p []byte) bool {
	count := 0
	return frames(p, func(typ, _ byte) bool {
		count++
		switch typ {
		case framePriorityType, frameRSTStreamType, frameSettingsType, framePingType, frameWindowUpdateType:
			return true
		}
		return false
	}) && count > 1
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
