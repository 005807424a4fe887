package xhttp

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"time"
)

// Close kinds a client puts in X-Close on its last packet-up POST.
const (
	closeWrite = "write"
	closeAll   = "all"
)

// upMax bounds upload bytes delivered in order but not yet read; POSTs
// wait beyond it, which slows the client down.
const upMax = 1 << 20

// idleTail is the most unacknowledged download bytes that ack moves out of
// full-size blocks into a small one (byteQueue.Shrink).
const idleTail = 1 << 10

// maxPending bounds out-of-order upload packets per session (Xray: 30).
const maxPending = 64

var errSuperseded = errors.New("xhttp: download superseded by a newer request")

// session is one XHTTP session on the server. It is the net.Conn handed
// to the hub's Handle (as *serverConn).
type session struct {
	hub *Hub
	id  string // "" for stream-one

	mu      sync.Mutex
	changed chan struct{} // closed and replaced on every change; guarded by mu
	// download: bytes [base, base+down.Len()) are kept until acknowledged.
	down      byteQueue
	base      int64
	downEOF   bool // CloseWrite was called
	reset     bool // the handler closed after SetLinger(0): the download ends as reset
	abandoned bool // the client said it is gone: writes fail
	// upload: in-order bytes not yet read, and packets waiting for their turn.
	up       byteQueue
	upEOF    bool
	nextSeq  uint64
	pending  map[uint64]packet
	streamUp bool
	// lifecycle
	closed    bool
	hclosed   bool  // the handler closed its conn; the download drains first
	gen       int64 // generation of the attached download; 0 none
	lastGen   int64
	resumable bool // a ranged download was seen: GET ends do not end the session
	idle      *time.Timer
	onClose   func() // run once when the session closes (stream-up: ends the POST body)
	rdl, wdl  time.Time
	local     net.Addr
	remote    net.Addr
}

type packet struct {
	data  []byte
	close string
}

func (s *session) broadcastLocked() {
	close(s.changed)
	s.changed = make(chan struct{})
}

// waitLocked releases mu until something changes, ctx ends or dl passes.
func (s *session) waitLocked(ctx context.Context, dl time.Time) error {
	ch := s.changed
	s.mu.Unlock()
	defer s.mu.Lock()
	var tc <-chan time.Time
	if !dl.IsZero() {
		d := time.Until(dl)
		if d <= 0 {
			return os.ErrDeadlineExceeded
		}
		t := time.NewTimer(d)
		defer t.Stop()
		tc = t.C
	}
	select {
	case <-ch:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-tc:
		return os.ErrDeadlineExceeded
	}
}

// attach makes a new download the current one and returns its generation.
func (s *session) attach(ranged bool) int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.lastGen++
	s.gen = s.lastGen
	if ranged {
		s.resumable = true
	}
	if s.idle != nil {
		s.idle.Stop()
	}
	s.broadcastLocked()
	return s.gen
}

// detach ends download gen. A plain (Xray) download ends the session; a
// resumable session waits ResumeTimeout for the next one.
func (s *session) detach(gen int64) {
	s.mu.Lock()
	if s.gen != gen {
		s.mu.Unlock()
		return
	}
	s.gen = 0
	if !s.resumable {
		s.mu.Unlock()
		s.close()
		return
	}
	s.armIdleLocked()
	s.mu.Unlock()
}

func (s *session) armIdleLocked() {
	if s.closed {
		return
	}
	if s.idle == nil {
		s.idle = time.AfterFunc(s.hub.resumeTimeout(), s.idleExpired)
	} else {
		s.idle.Reset(s.hub.resumeTimeout())
	}
}

func (s *session) idleExpired() {
	s.mu.Lock()
	attached := s.gen != 0
	s.mu.Unlock()
	if !attached {
		s.close()
	}
}

// ack drops download bytes before off. It fails when off is outside what
// the session holds.
func (s *session) ack(off int64) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if off < s.base || off > s.base+int64(s.down.Len()) {
		return fmt.Errorf("xhttp: resume offset %d outside the kept window [%d, %d]", off, s.base, s.base+int64(s.down.Len()))
	}
	if n := int(off - s.base); n > 0 {
		s.down.Discard(n)
		s.down.Shrink(idleTail)
		s.base = off
		s.broadcastLocked()
	}
	return nil
}

// finished reports whether the download ended at total bytes.
func (s *session) finished() (total int64, done bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	total = s.base + int64(s.down.Len())
	return total, s.downEOF || s.closed
}

// next waits for download bytes at off and copies at most max of them into
// a buffer from chunkPool (the caller puts it back). eof is true when the
// stream ended before off.
func (s *session) next(ctx context.Context, gen, off int64, max int) (b *[chunkMax]byte, n int, eof bool, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for {
		if s.gen != gen {
			return nil, 0, false, errSuperseded
		}
		if off < s.base {
			return nil, 0, false, errors.New("xhttp: download offset already acknowledged")
		}
		if i := int(off - s.base); i < s.down.Len() {
			b = chunkPool.Get().(*[chunkMax]byte)
			return b, s.down.CopyAt(b[:min(max, chunkMax)], i), false, nil
		}
		if s.downEOF || s.closed || s.abandoned {
			return nil, 0, true, nil
		}
		if err := s.waitLocked(ctx, time.Time{}); err != nil {
			return nil, 0, false, err
		}
	}
}

// push delivers upload packet seq, in order. Duplicates are dropped.
func (s *session) push(ctx context.Context, seq uint64, p packet) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return net.ErrClosed
	}
	if seq < s.nextSeq {
		return nil
	}
	if _, dup := s.pending[seq]; dup {
		return nil
	}
	if len(s.pending) >= maxPending {
		return errors.New("xhttp: too many upload packets out of order")
	}
	if s.pending == nil {
		s.pending = make(map[uint64]packet)
	}
	s.pending[seq] = p
	for {
		q, ok := s.pending[s.nextSeq]
		if !ok {
			if len(s.pending) == 0 {
				s.pending = nil // an idle session keeps no map
			}
			return nil
		}
		for s.up.Len() > upMax && !s.closed && !s.hclosed {
			if err := s.waitLocked(ctx, time.Time{}); err != nil {
				return err
			}
		}
		if s.closed {
			return net.ErrClosed
		}
		if _, still := s.pending[s.nextSeq]; !still {
			continue // another POST delivered it while we waited
		}
		delete(s.pending, s.nextSeq)
		s.nextSeq++
		if !s.upEOF && !s.hclosed {
			s.up.Write(q.data)
		}
		switch q.close {
		case closeWrite:
			s.upEOF = true
		case closeAll:
			s.upEOF = true
			s.abandoned = true
			if s.hclosed {
				s.broadcastLocked()
				s.mu.Unlock()
				s.close()
				s.mu.Lock()
				return nil
			}
		}
		s.broadcastLocked()
	}
}

// pushStream appends stream-up bytes.
func (s *session) pushStream(ctx context.Context, b []byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for s.up.Len() > upMax && !s.closed && !s.hclosed {
		if err := s.waitLocked(ctx, time.Time{}); err != nil {
			return err
		}
	}
	if s.closed {
		return net.ErrClosed
	}
	if !s.hclosed {
		s.up.Write(b)
	}
	s.broadcastLocked()
	return nil
}

func (s *session) endUpload() {
	s.mu.Lock()
	s.upEOF = true
	s.broadcastLocked()
	s.mu.Unlock()
}

func (s *session) close() {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	s.closed = true
	if s.idle != nil {
		s.idle.Stop()
	}
	f := s.onClose
	s.onClose = nil
	s.broadcastLocked()
	s.mu.Unlock()
	if f != nil {
		f()
	}
	s.hub.remove(s)
}

// setOnClose makes f what close runs (nil: nothing). If the session is
// already closed, f runs now.
func (s *session) setOnClose(f func()) {
	s.mu.Lock()
	if s.closed && f != nil {
		s.mu.Unlock()
		f()
		return
	}
	s.onClose = f
	s.mu.Unlock()
}

// expired reports whether deadline dl has passed.
func expired(dl time.Time) bool { return !dl.IsZero() && !time.Now().Before(dl) }

// serverConn is a session as the hub's Handle sees it.
type serverConn struct{ s *session }

func (c *serverConn) Read(p []byte) (int, error) {
	s := c.s
	s.mu.Lock()
	defer s.mu.Unlock()
	if expired(s.rdl) {
		return 0, os.ErrDeadlineExceeded
	}
	for {
		if s.up.Len() > 0 {
			n := s.up.Read(p)
			s.broadcastLocked()
			return n, nil
		}
		if s.hclosed {
			return 0, net.ErrClosed
		}
		if s.upEOF {
			return 0, io.EOF
		}
		if s.closed {
			return 0, net.ErrClosed
		}
		if err := s.waitLocked(context.Background(), s.rdl); err != nil {
			return 0, err
		}
	}
}

func (c *serverConn) Write(p []byte) (int, error) {
	s := c.s
	s.mu.Lock()
	defer s.mu.Unlock()
	if expired(s.wdl) {
		return 0, os.ErrDeadlineExceeded
	}
	n := 0
	for n < len(p) {
		switch {
		case s.closed || s.hclosed:
			return n, net.ErrClosed
		case s.abandoned:
			return n, io.ErrClosedPipe
		case s.downEOF:
			return n, errors.New("xhttp: write after CloseWrite")
		}
		if room := RetainMax - s.down.Len(); room > 0 {
			k := min(room, len(p)-n)
			s.down.Write(p[n : n+k])
			n += k
			s.broadcastLocked()
			continue
		}
		if err := s.waitLocked(context.Background(), s.wdl); err != nil {
			return n, err
		}
	}
	return n, nil
}

// CloseWrite ends the download once the bytes written so far are sent.
func (c *serverConn) CloseWrite() error {
	s := c.s
	s.mu.Lock()
	defer s.mu.Unlock()
	s.downEOF = true
	s.broadcastLocked()
	return nil
}

// SetLinger(0) makes Close end the download as a reset instead of an end of
// stream: a Burrow client's Read then returns ErrReset once it has the
// bytes written before (an Xray client, whose download cannot resume, sees
// the end of stream). Used by splices that pass on how a TCP peer ended.
// Other values undo it.
func (c *serverConn) SetLinger(sec int) error {
	c.s.mu.Lock()
	c.s.reset = sec == 0
	c.s.mu.Unlock()
	return nil
}

// wasReset reports whether the download ended as a reset.
func (s *session) wasReset() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.reset && s.hclosed
}

// Close ends the conn for the handler. Download bytes already written are
// still delivered; the session ends when the client has them, or when no
// download request comes for ResumeTimeout.
func (c *serverConn) Close() error {
	s := c.s
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.hclosed {
		return nil
	}
	s.hclosed = true
	s.downEOF = true
	s.up.Reset()
	if s.abandoned || s.id == "" {
		s.mu.Unlock()
		s.close()
		s.mu.Lock()
		return nil
	}
	if s.gen == 0 {
		s.armIdleLocked()
	}
	s.broadcastLocked()
	return nil
}

func (c *serverConn) LocalAddr() net.Addr  { return c.s.local }
func (c *serverConn) RemoteAddr() net.Addr { return c.s.remote }

func (c *serverConn) SetDeadline(t time.Time) error {
	c.SetReadDeadline(t)
	return c.SetWriteDeadline(t)
}

func (c *serverConn) SetReadDeadline(t time.Time) error {
	c.s.mu.Lock()
	c.s.rdl = t
	c.s.broadcastLocked()
	c.s.mu.Unlock()
	return nil
}

func (c *serverConn) SetWriteDeadline(t time.Time) error {
	c.s.mu.Lock()
	c.s.wdl = t
	c.s.broadcastLocked()
	c.s.mu.Unlock()
	return nil
}
