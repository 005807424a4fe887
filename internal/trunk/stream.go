package trunk

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"time"
)

// Stream is one stream of a trunk: a net.Conn with half close
// (CloseWrite) and SetLinger(0), which makes Close a reset.
type Stream struct {
	t  *Trunk
	id uint32

	wmu sync.Mutex // one Write or CloseWrite at a time: Data frames keep their order

	mu         sync.Mutex
	changed    chan struct{} // guarded by mu: closed and replaced on every change
	rbuf       recvQueue     // guarded by mu: received, not yet read
	uncredited int           // guarded by mu: read, not yet given back as credit
	rEOF       bool          // guarded by mu: the other side sent Fin
	rErr       error         // guarded by mu: reset, or the trunk ended
	credit     int           // guarded by mu: bytes this side may still send
	wFin       bool          // guarded by mu: this side sent Fin (or will, closing)
	closed     bool          // guarded by mu: Close was called
	linger0    bool          // guarded by mu: Close resets
	rdl, wdl   time.Time     // guarded by mu

	// A sink (Sink) takes what the stream receives instead of Read.
	sink     io.Writer                // guarded by mu
	sinkDone func(n int64, err error) // guarded by mu; nil once called
	sunk     int64                    // guarded by mu: bytes written to the sink
	draining bool                     // guarded by mu: a drain goroutine runs
}

var _ net.Conn = (*Stream)(nil)

func (s *Stream) broadcastLocked() {
	close(s.changed)
	s.changed = make(chan struct{})
}

// waitLocked waits for a change or the deadline dl; mu is held on entry
// and on return.
func (s *Stream) waitLocked(dl time.Time) error {
	ch := s.changed
	s.mu.Unlock()
	defer s.mu.Lock()
	if dl.IsZero() {
		<-ch
		return nil
	}
	d := time.Until(dl)
	if d <= 0 {
		return os.ErrDeadlineExceeded
	}
	tm := time.NewTimer(d)
	defer tm.Stop()
	select {
	case <-ch:
		return nil
	case <-tm.C:
		return os.ErrDeadlineExceeded
	}
}

func expired(dl time.Time) bool { return !dl.IsZero() && !time.Now().Before(dl) }

// received takes a Data frame's payload (on the trunk's reading goroutine).
func (s *Stream) received(p []byte) error {
	s.mu.Lock()
	if s.closed {
		// Closed here: the other side learns it with a reset, as TCP
		// answers data that reaches a closed socket.
		s.mu.Unlock()
		s.t.forget(s.id)
		go s.t.writeFrame(frameReset, s.id, nil)
		return nil
	}
	if s.rEOF {
		s.mu.Unlock()
		return errors.New("data after fin")
	}
	if s.rbuf.Len()+s.uncredited+len(p) > Window {
		s.mu.Unlock()
		return errors.New("data beyond the window")
	}
	if s.rErr == nil {
		s.rbuf.Write(p)
		s.broadcastLocked()
		s.kickLocked()
	}
	s.mu.Unlock()
	return nil
}

// credited takes a Credit frame's amount: more than was ever sent and
// not yet credited breaks the rules.
func (s *Stream) credited(n uint32) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if n == 0 || n > uint32(Window-s.credit) {
		return fmt.Errorf("credit of %d on a stream with %d in flight", n, Window-s.credit)
	}
	s.credit += int(n)
	s.broadcastLocked()
	return nil
}

func (s *Stream) finished() {
	s.mu.Lock()
	s.rEOF = true
	forget := s.closed
	s.broadcastLocked()
	s.kickLocked()
	s.mu.Unlock()
	if forget {
		s.t.forget(s.id)
	}
}

// fail ends the stream with err (a reset, the trunk's end); what was
// received before is still read.
func (s *Stream) fail(err error) {
	s.mu.Lock()
	if s.rErr == nil {
		s.rErr = err
	}
	s.broadcastLocked()
	s.kickLocked()
	s.mu.Unlock()
}

// Read reads what the other side sent; io.EOF after its Fin.
func (s *Stream) Read(p []byte) (int, error) {
	s.mu.Lock()
	for {
		switch {
		case s.closed:
			s.mu.Unlock()
			return 0, net.ErrClosed
		case len(p) == 0:
			s.mu.Unlock()
			return 0, nil
		case s.rbuf.Len() > 0:
			n := s.rbuf.Read(p)
			give := s.consumedLocked(n)
			s.mu.Unlock()
			s.giveCredit(give)
			return n, nil
		case s.rEOF:
			s.mu.Unlock()
			return 0, io.EOF
		case s.rErr != nil:
			err := s.rErr
			s.mu.Unlock()
			return 0, err
		case expired(s.rdl):
			s.mu.Unlock()
			return 0, os.ErrDeadlineExceeded
		}
		if err := s.waitLocked(s.rdl); err != nil {
			s.mu.Unlock()
			return 0, err
		}
	}
}

// consumedLocked counts n bytes read and returns the credit to give back
// now, if any.
func (s *Stream) consumedLocked(n int) int {
	s.uncredited += n
	if s.uncredited < creditEvery || s.rEOF { // after a Fin nothing more comes
		return 0
	}
	give := s.uncredited
	s.uncredited = 0
	return give
}

func (s *Stream) giveCredit(n int) {
	if n > 0 {
		var b [4]byte
		binary.BigEndian.PutUint32(b[:], uint32(n))
		s.t.writeFrame(frameCredit, s.id, b[:])
	}
}

// Sink makes the stream write what it receives to w, in place of Read,
// from a goroutine that runs only while there is something to write: an
// idle stream then holds no goroutine and no buffer for its download.
// done is called once: with nil after the other side's Fin and every byte
// before it, or with why the stream ended (ErrReset, the trunk's end,
// Close, or w's error).
func (s *Stream) Sink(w io.Writer, done func(n int64, err error)) {
	s.mu.Lock()
	s.sink, s.sinkDone = w, done
	s.kickLocked()
	s.mu.Unlock()
}

// drainPool holds the buffers sinks are written from.
var drainPool = sync.Pool{New: func() any { return new([32 << 10]byte) }}

// kickLocked starts a drain goroutine if the sink has something to do.
func (s *Stream) kickLocked() {
	if s.sink == nil || s.sinkDone == nil || s.draining {
		return
	}
	if s.rbuf.Len() == 0 && !s.rEOF && s.rErr == nil && !s.closed {
		return
	}
	s.draining = true
	go s.drain()
}

// drain writes received bytes to the sink until none are left, then
// returns, or reports the stream's end to done.
func (s *Stream) drain() {
	buf := drainPool.Get().(*[32 << 10]byte)
	defer drainPool.Put(buf)
	for {
		s.mu.Lock()
		if s.rbuf.Len() == 0 || s.closed {
			var err error
			switch {
			case s.rEOF && s.rbuf.Len() == 0:
			case s.closed:
				err = net.ErrClosed
			case s.rErr != nil:
				err = s.rErr
			default:
				s.draining = false // caught up: the next frame starts another
				s.mu.Unlock()
				return
			}
			s.finishSinkLocked(err)
			return
		}
		n := s.rbuf.Read(buf[:])
		give := s.consumedLocked(n)
		w := s.sink
		s.mu.Unlock()
		s.giveCredit(give)
		_, err := w.Write(buf[:n])
		s.mu.Lock()
		s.sunk += int64(n)
		if err != nil {
			s.finishSinkLocked(err)
			return
		}
		s.mu.Unlock()
	}
}

// finishSinkLocked ends the sink with err: mu is held on entry and
// released.
func (s *Stream) finishSinkLocked(err error) {
	done, n := s.sinkDone, s.sunk
	s.sinkDone = nil
	s.draining = false
	s.mu.Unlock()
	if done != nil {
		done(n, err)
	}
}

// Write sends p, waiting for credit as the other side reads.
func (s *Stream) Write(p []byte) (int, error) {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	written := 0
	for written < len(p) {
		s.mu.Lock()
		for {
			var err error
			switch {
			case s.closed:
				err = net.ErrClosed
			case s.wFin:
				err = errors.New("trunk: write after CloseWrite")
			case s.rErr != nil:
				err = s.rErr
			case expired(s.wdl):
				err = os.ErrDeadlineExceeded
			}
			if err == nil && s.credit == 0 {
				err = s.waitLocked(s.wdl)
				if err == nil {
					continue
				}
			}
			if err != nil {
				s.mu.Unlock()
				return written, err
			}
			break
		}
		n := min(len(p)-written, s.credit, MaxPayload)
		s.credit -= n
		s.mu.Unlock()
		if err := s.t.writeFrame(frameData, s.id, p[written:written+n]); err != nil {
			return written, err
		}
		written += n
	}
	return written, nil
}

// CloseWrite sends Fin after what was written: the other side reads
// io.EOF; this side may go on reading.
func (s *Stream) CloseWrite() error {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	s.mu.Lock()
	if s.wFin || s.closed {
		s.mu.Unlock()
		return nil
	}
	s.wFin = true
	s.mu.Unlock()
	return s.t.writeFrame(frameFin, s.id, nil)
}

// SetLinger(0) makes Close reset the stream, as it makes a TCP socket's
// Close send a reset; any other value is the default, a Fin.
func (s *Stream) SetLinger(sec int) error {
	s.mu.Lock()
	s.linger0 = sec == 0
	s.mu.Unlock()
	return nil
}

// Close ends the stream: a Fin for this side's direction if it was not
// sent yet (a reset after SetLinger(0)); what the other side sends later
// is answered with a reset.
func (s *Stream) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	// As a TCP socket closed with unread data sends a reset: the other
	// side, whose window those bytes fill, would otherwise wait for
	// credit that never comes.
	reset := (s.linger0 || s.rbuf.Len() > 0 && !s.rEOF) && s.rErr == nil
	fin := !s.wFin && !reset && s.rErr == nil
	s.wFin = true
	done := s.rEOF || s.rErr != nil
	s.rbuf.Reset()
	s.broadcastLocked()
	s.kickLocked()
	s.mu.Unlock()
	switch {
	case reset:
		s.t.forget(s.id)
		s.t.writeFrame(frameReset, s.id, nil)
		return nil
	case fin:
		// After a Write that waits for credit: its Data goes first.
		s.wmu.Lock()
		s.t.writeFrame(frameFin, s.id, nil)
		s.wmu.Unlock()
	}
	if done {
		s.t.forget(s.id)
	}
	return nil
}

func (s *Stream) LocalAddr() net.Addr  { return s.t.local }
func (s *Stream) RemoteAddr() net.Addr { return s.t.remote }

func (s *Stream) SetDeadline(t time.Time) error {
	s.SetReadDeadline(t)
	return s.SetWriteDeadline(t)
}

func (s *Stream) SetReadDeadline(t time.Time) error {
	s.mu.Lock()
	s.rdl = t
	s.broadcastLocked()
	s.mu.Unlock()
	return nil
}

func (s *Stream) SetWriteDeadline(t time.Time) error {
	s.mu.Lock()
	s.wdl = t
	s.broadcastLocked()
	s.mu.Unlock()
	return nil
}
