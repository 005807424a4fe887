package mux

import (
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"time"
)

// stream is one session of a Client, as a net.Conn.
type stream struct {
	c        *Client
	id       uint16
	udp      bool
	remote   muxAddr
	ended    chan struct{} // closed on the server's End (or the connection's end)
	closed   chan struct{} // closed by Close
	readable chan struct{} // signalled when data or the end arrives
	space    chan struct{} // signalled when Read frees buffer space

	endOnce, closeOnce sync.Once
	failErr            error // why the stream failed (End's error option, or the connection's end); nil: a clean End; written before ended is closed

	rmu sync.Mutex // serialises Read

	mu      sync.Mutex // guards the fields below
	queue   []chunk    // data from the server, oldest first
	held    int        // capacity of the buffers in queue
	dropped bool       // Close ran: data is dropped
	qarr    [2]chunk   // queue's first backing array

	rdl, wdl deadline
}

// chunk is data a stream holds for Read: (*buf)[off:] of a pooled buffer; for UDP, one
// datagram.
type chunk struct {
	buf *[]byte
	off int
}

func newStream(c *Client, id uint16, udp bool, address string) *stream {
	network := "tcp"
	if udp {
		network = "udp"
	}
	st := &stream{
		c: c, id: id, udp: udp, remote: muxAddr{network, address},
		ended: make(chan struct{}), closed: make(chan struct{}),
		readable: make(chan struct{}, 1), space: make(chan struct{}, 1),
		rdl: newDeadline(), wdl: newDeadline(),
	}
	st.queue = st.qarr[:0]
	return st
}

// signal wakes whoever waits on ch (of capacity 1), now or at its next wait.
func signal(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

// push queues b (the stream takes the buffer over) for Read, waiting while the stream holds
// streamBuffer bytes of buffers. TCP data goes into the spare room of the last buffer
// queued when it fits there.
func (st *stream) push(b *[]byte) {
	st.mu.Lock()
	for !st.dropped && st.held >= streamBuffer {
		st.mu.Unlock()
		select {
		case <-st.space:
		case <-st.closed:
		case <-st.c.quit:
			putBuf(b)
			return
		}
		st.mu.Lock()
	}
	defer st.mu.Unlock()
	defer signal(st.readable)
	if st.dropped {
		putBuf(b)
		return
	}
	if n := len(st.queue); n > 0 && !st.udp {
		if last := st.queue[n-1].buf; cap(*last)-len(*last) >= len(*b) {
			*last = append(*last, *b...)
			putBuf(b)
			return
		}
	}
	st.queue = append(st.queue, chunk{buf: b})
	st.held += cap(*b)
}

// take copies queued data into p: for TCP as much as there is, for UDP one datagram (the
// part of it that fits). ok is false if nothing is queued.
func (st *stream) take(p []byte) (n int, ok bool) {
	st.mu.Lock()
	defer st.mu.Unlock()
	for len(st.queue) > 0 && (n < len(p) || !ok) {
		ok = true
		ch := &st.queue[0]
		m := copy(p[n:], (*ch.buf)[ch.off:])
		n += m
		ch.off += m
		if !st.udp && ch.off < len(*ch.buf) {
			break
		}
		putBuf(st.popLocked().buf)
		if st.udp {
			break
		}
	}
	return n, ok
}

// popLocked takes the oldest chunk out of the non-empty queue (st.mu held); the caller
// owns its buffer.
func (st *stream) popLocked() chunk {
	ch := st.queue[0]
	st.held -= cap(*ch.buf)
	last := len(st.queue) - 1
	copy(st.queue, st.queue[1:]) // a few dozen chunks at most: kept in place, no regrowth
	st.queue[last] = chunk{}
	st.queue = st.queue[:last]
	if len(st.queue) == 0 && cap(st.queue) > 2*len(st.qarr) {
		st.queue = st.qarr[:0] // an idle stream keeps no grown queue
	}
	signal(st.space)
	return ch
}

// remoteEnd ends the stream from the server's side: cleanly (failErr nil) or with failErr
// for Read to return once the data that arrived before is read.
func (st *stream) remoteEnd(failErr error) {
	st.endOnce.Do(func() {
		st.failErr = failErr
		close(st.ended)
	})
}

// Read reads queued data; data that arrived before an End is read first.
func (st *stream) Read(p []byte) (int, error) {
	st.rmu.Lock()
	defer st.rmu.Unlock()
	for {
		select {
		case <-st.closed:
			return 0, net.ErrClosed
		default:
		}
		if n, ok := st.take(p); ok {
			return n, nil
		}
		select {
		case <-st.readable:
		case <-st.closed:
			return 0, net.ErrClosed
		case <-st.rdl.wait():
			return 0, os.ErrDeadlineExceeded
		case <-st.ended:
			if n, ok := st.take(p); ok {
				return n, nil
			}
			if st.failErr != nil {
				return 0, st.failErr
			}
			return 0, io.EOF
		}
	}
}

// WriteTo writes what the stream receives to w until it ends (io.Copy calls it): each
// chunk straight from the buffer it arrived in, so no copy buffer is held while the stream
// is idle.
func (st *stream) WriteTo(w io.Writer) (int64, error) {
	if st.udp {
		return io.Copy(w, readerOnly{st})
	}
	st.rmu.Lock()
	defer st.rmu.Unlock()
	var total int64
	for {
		ch, err := st.nextChunk()
		if err != nil {
			if err == io.EOF {
				err = nil
			}
			return total, err
		}
		n, err := w.Write((*ch.buf)[ch.off:])
		total += int64(n)
		putBuf(ch.buf)
		if err != nil {
			return total, err
		}
	}
}

// nextChunk waits for the oldest queued chunk and takes it out of the queue; the caller
// returns its buffer to the pool. Data that arrived before an End comes first.
func (st *stream) nextChunk() (chunk, error) {
	pop := func() (chunk, bool) {
		st.mu.Lock()
		defer st.mu.Unlock()
		if len(st.queue) == 0 {
			return chunk{}, false
		}
		return st.popLocked(), true
	}
	for {
		select {
		case <-st.closed:
			return chunk{}, net.ErrClosed
		default:
		}
		if ch, ok := pop(); ok {
			return ch, nil
		}
		select {
		case <-st.readable:
		case <-st.closed:
			return chunk{}, net.ErrClosed
		case <-st.rdl.wait():
			return chunk{}, os.ErrDeadlineExceeded
		case <-st.ended:
			if ch, ok := pop(); ok {
				return ch, nil
			}
			if st.failErr != nil {
				return chunk{}, st.failErr
			}
			return chunk{}, io.EOF
		}
	}
}

// ReadFrom sends what r reads until its end (io.Copy calls it). While r has nothing to
// read it holds no buffer when r is a TCP socket of the standard library's (as io.Copy from
// a *net.TCPConn passes it); a buffer is taken per read.
func (st *stream) ReadFrom(r io.Reader) (int64, error) {
	if st.udp {
		return io.Copy(writerOnly{st}, r)
	}
	wait := readyWaiter(r)
	full := false // the last read filled its buffer: more is likely there, skip the wait
	var total int64
	for {
		if wait != nil && !full {
			wait()
		}
		b := getBuf(writeBatch)
		n, err := r.Read(*b)
		full = n == len(*b)
		if n > 0 {
			m, werr := st.Write((*b)[:n])
			total += int64(m)
			if werr != nil {
				putBuf(b)
				return total, werr
			}
		}
		putBuf(b)
		if err != nil {
			if err == io.EOF {
				err = nil
			}
			return total, err
		}
	}
}

type readerOnly struct{ io.Reader }
type writerOnly struct{ io.Writer }

// Write sends p in Keep frames: for TCP in frames of at most 8 KiB, handed to the writer up
// to 64 KiB at a time; for UDP as one datagram (at most 8 KiB, Xray's limit). Data counts
// as written once the connection's writer has taken it.
func (st *stream) Write(p []byte) (int, error) { return st.write(p, nil) }

// write is Write; a closed stop (may be nil) ends it as a passed deadline does.
func (st *stream) write(p []byte, stop <-chan struct{}) (int, error) {
	if st.udp && len(p) > maxPacketData {
		return 0, fmt.Errorf("mux: datagram of %d bytes, over %d", len(p), maxPacketData)
	}
	n := 0
	for first := true; first || n < len(p); first = false {
		wake := st.wdl.wait()
		select {
		case <-st.closed:
			return n, net.ErrClosed
		case <-st.ended:
			return n, io.ErrClosedPipe
		case <-wake:
			return n, os.ErrDeadlineExceeded
		case <-stop:
			return n, os.ErrDeadlineExceeded
		default:
		}
		b := getBuf(keepsSize(min(len(p)-n, writeBatch)))
		var m int
		*b, m = appendKeeps((*b)[:0], st.id, p[n:], writeBatch)
		select {
		case st.c.frames <- b:
		case <-st.closed:
			putBuf(b)
			return n, net.ErrClosed
		case <-st.ended:
			putBuf(b)
			return n, io.ErrClosedPipe
		case <-wake:
			putBuf(b)
			return n, os.ErrDeadlineExceeded
		case <-stop:
			putBuf(b)
			return n, os.ErrDeadlineExceeded
		case <-st.c.done:
			putBuf(b)
			return n, net.ErrClosed
		}
		n += m
	}
	return n, nil
}

// Close ends the session: an End frame unless the server ended it first. Data queued for
// Read is dropped.
func (st *stream) Close() error {
	st.closeOnce.Do(func() {
		st.mu.Lock()
		st.dropped = true
		for _, ch := range st.queue {
			putBuf(ch.buf)
		}
		st.queue, st.held = nil, 0 // and any queue grown past qarr goes with it
		st.mu.Unlock()
		close(st.closed)
		st.c.forget(st.id, st)
		select {
		case <-st.ended:
		default:
			st.c.sendEnd(st.id)
		}
		st.rdl.set(time.Time{})
		st.wdl.set(time.Time{})
	})
	return nil
}

func (st *stream) LocalAddr() net.Addr  { return st.c.conn.LocalAddr() }
func (st *stream) RemoteAddr() net.Addr { return st.remote }

func (st *stream) SetDeadline(t time.Time) error {
	st.rdl.set(t)
	st.wdl.set(t)
	return nil
}

func (st *stream) SetReadDeadline(t time.Time) error  { st.rdl.set(t); return nil }
func (st *stream) SetWriteDeadline(t time.Time) error { st.wdl.set(t); return nil }

// deadline is a settable deadline whose wait channel is closed when it passes.
type deadline struct {
	mu    *sync.Mutex // guards the fields below
	timer *time.Timer
	gen   int           // counts changes; a timer fires only for its own
	ch    chan struct{} // closed when the deadline passes; replaced on reset
}

func newDeadline() deadline { return deadline{mu: new(sync.Mutex), ch: make(chan struct{})} }

func (d *deadline) wait() <-chan struct{} {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.ch
}

func (d *deadline) set(t time.Time) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.timer != nil {
		d.timer.Stop()
		d.timer = nil
	}
	d.gen++
	select {
	case <-d.ch: // passed before: a fresh channel for the new deadline
		d.ch = make(chan struct{})
	default:
	}
	if t.IsZero() {
		return
	}
	if left := time.Until(t); left <= 0 {
		close(d.ch)
		return
	}
	gen := d.gen
	d.timer = time.AfterFunc(time.Until(t), func() {
		d.mu.Lock()
		defer d.mu.Unlock()
		if d.gen == gen { // not reset since
			close(d.ch)
		}
	})
}

// muxAddr is a stream's remote address: the destination it was dialed for.
type muxAddr struct{ network, address string }

func (a muxAddr) Network() string { return a.network }
func (a muxAddr) String() string  { return a.address }
