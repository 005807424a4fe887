package mux

import (
	"context"
	"errors"
	"io"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"
)

// tcpSession is one TCP session: the client's Keep frames are written to a conn dialed for
// the New frame's destination, and what that conn reads comes back as Keep frames of at most
// chunkSize bytes. Either side's end is a full close, as in Xray: the target's EOF is
// answered with End, a read error with End+error; the client's End lets the queued data
// reach the target, then closes it.
//
// An idle session runs one goroutine (the download loop, which also dialed the target)
// and holds no buffer; the client's data is written to the target by a goroutine that
// runs only while there is some queued, and the idle timeout is a timer.
type tcpSession struct {
	srv     *server
	id      uint16
	dest    string
	ctx     context.Context
	cancel  context.CancelFunc
	queue   chan *[]byte // client → target (pooled buffers); closed by the reader loop on the client's End
	last    atomic.Int64 // unix nanoseconds of the last data either way
	closed  atomic.Bool  // no more frames for this session
	ended   atomic.Bool  // the client sent End
	writing atomic.Bool  // a writeLoop runs
	idle    *time.Timer  // IdleTimeout; set before the session is published
	started bool         // data from the client arrived; touched only by the reader loop

	mu     sync.Mutex // guards target
	target net.Conn   // nil until dialed
}

func newTCPSession(s *server, id uint16, dest string) *tcpSession {
	ctx, cancel := context.WithCancel(s.ctx)
	ss := &tcpSession{srv: s, id: id, dest: dest, ctx: ctx, cancel: cancel, queue: make(chan *[]byte, tcpQueueLen)}
	ss.touch()
	ss.idle = time.AfterFunc(IdleTimeout, ss.checkIdle)
	return ss
}

func (ss *tcpSession) touch() { ss.last.Store(time.Now().UnixNano()) }

// checkIdle ends the session if nothing moved for IdleTimeout, else checks again then.
func (ss *tcpSession) checkIdle() {
	if ss.closed.Load() {
		return
	}
	if left := IdleTimeout - time.Since(time.Unix(0, ss.last.Load())); left > 0 {
		ss.idle.Reset(left)
		return
	}
	ss.shutdown(true, false)
}

// deliver queues data for the target, waiting while the queue is full.
func (ss *tcpSession) deliver(_ string, data *[]byte) {
	if len(*data) == 0 || ss.ended.Load() {
		putBuf(data)
		return
	}
	if !ss.started {
		ss.started = true
		if ss.srv.refusesFirst(*data) { // a New frame without data; the New frame's own is checked in handleNew
			putBuf(data)
			ss.shutdown(true, true)
			return
		}
	}
	select {
	case ss.queue <- data:
		ss.touch()
		ss.kick()
	case <-ss.ctx.Done():
		putBuf(data)
	}
}

// end is the client's End: the session is forgotten at once (later Keep frames for its id
// are answered with End, as Xray does), and the target is closed once the data queued for
// it is written. Only the reader loop calls it, and only once: after it, the session is no
// longer in the map, so nothing sends on queue again.
func (ss *tcpSession) end() {
	if ss.ended.Swap(true) {
		return
	}
	ss.srv.remove(ss.id, ss)
	close(ss.queue)
	ss.kick()
}

func (ss *tcpSession) close(notify bool) { ss.shutdown(notify, false) }

// shutdown ends the session at once: the target is closed and, with notify, the client gets
// an End frame (with the error option if failed).
func (ss *tcpSession) shutdown(notify, failed bool) {
	if ss.closed.Swap(true) {
		return
	}
	ss.idle.Stop()
	ss.cancel()
	ss.srv.remove(ss.id, ss)
	ss.mu.Lock()
	if ss.target != nil {
		ss.target.Close()
	}
	ss.mu.Unlock()
	if notify && !ss.ended.Load() {
		var opt byte
		if failed {
			opt = optError
		}
		ss.srv.writeFrame(ss.id, statusEnd, opt, netip.AddrPort{}, nil)
	}
}

// run dials the target, then runs the download loop until the session ends. Whatever ends
// the session (the server too) closes the target, which unblocks both loops.
func (ss *tcpSession) run() {
	dctx, cancel := context.WithTimeout(ss.ctx, DialTimeout)
	c, err := ss.srv.dial(dctx, "tcp", ss.dest)
	cancel()
	if err != nil {
		ss.shutdown(true, true)
		return
	}
	ss.mu.Lock()
	ss.target = c
	ss.mu.Unlock()
	if ss.closed.Load() { // closed while dialing: shutdown may have missed c
		c.Close()
		return
	}
	stop := context.AfterFunc(ss.ctx, func() { c.Close() })
	defer stop()
	ss.kick() // data that came with the New frame, or while dialing
	ss.downLoop(c)
}

// kick starts a writeLoop unless one runs or the target is not dialed yet (run kicks once
// it is).
func (ss *tcpSession) kick() {
	ss.mu.Lock()
	dialed := ss.target != nil
	ss.mu.Unlock()
	if dialed && ss.writing.CompareAndSwap(false, true) {
		ss.srv.wg.Go(ss.writeLoop)
	}
}

// writeLoop writes the queued data to the target and returns when the queue is empty; after
// the client's End it drains the queue and closes the session.
func (ss *tcpSession) writeLoop() {
	c := ss.targetConn()
	for {
		select {
		case b, ok := <-ss.queue:
			if !ok {
				ss.shutdown(false, false) // the client's End, drained
				return
			}
			_, err := c.Write(*b)
			putBuf(b)
			if err != nil {
				ss.shutdown(true, true)
				return
			}
			ss.touch()
			continue
		case <-ss.ctx.Done():
			ss.writing.Store(false)
			return
		default:
		}
		// Empty: stop, unless something was queued (or the queue closed) between the look
		// and the flag going down, and no other writeLoop took it.
		ss.writing.Store(false)
		if len(ss.queue) == 0 && !ss.ended.Load() || !ss.writing.CompareAndSwap(false, true) {
			return
		}
	}
}

func (ss *tcpSession) targetConn() net.Conn {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	return ss.target
}

// downRead is the most a download read takes from the target: 4 frames, two full TLS
// records with their headers. Larger reads and writes cost more CPU per byte here, not
// less (loopback TCP with 16 KiB writes and reads is cheaper per byte than with 64 KiB ones,
// measured; cache footprint), and 32 KiB is what Vision's relay reads too.
const downRead = 4 * chunkSize

// downLoop frames what the target sends back to the client, in frames of at most 8 KiB as
// Xray's writer does, and ends the session when the target ends. Each read takes up to
// downRead into a pooled buffer, lays it out as frames in place, and sends them with one
// write; between reads it waits for the target without a buffer where it can.
func (ss *tcpSession) downLoop(c net.Conn) {
	wait := readyWaiter(c)
	// While reads come back full the data is flowing: the same buffer serves the next read
	// (a buffer fresh from the pool is cold in the cache, which costs more than the copy);
	// before a wait it goes back to the pool.
	var b *[]byte
	defer func() { putBuf(b) }()
	for {
		if b == nil {
			if wait != nil {
				wait() // an error shows in the Read below
			}
			b = getBuf(largeBuf)
		}
		n, err := c.Read((*b)[keepHeader : keepHeader+downRead])
		if n > 0 {
			if ss.closed.Load() || ss.ended.Load() {
				return
			}
			ss.touch()
			if ss.srv.write(layoutKeeps(*b, ss.id, n)) != nil {
				ss.shutdown(false, false)
				return
			}
		}
		if err != nil {
			ss.shutdown(true, !errors.Is(err, io.EOF))
			return
		}
		if n < downRead {
			putBuf(b)
			b = nil
		}
	}
}

// layoutKeeps turns n bytes of stream data at b[keepHeader:] into Keep frames of at most
// 8 KiB in place and returns them. The first frame's data stays where it is; each later
// one moves up by a header's length per frame before it, last first, so that nothing is
// overwritten before it has moved. b must have room for the headers behind the data.
func layoutKeeps(b []byte, id uint16, n int) []byte {
	frames := max(1, (n+chunkSize-1)/chunkSize)
	for i := frames - 1; i >= 0; i-- {
		size := min(chunkSize, n-i*chunkSize)
		at := i * (keepHeader + chunkSize) // where frame i starts
		copy(b[at+keepHeader:at+keepHeader+size], b[keepHeader+i*chunkSize:][:size])
		appendHeader(b[at:at], id, statusKeep, optData, netip.AddrPort{}, size)
	}
	return b[:n+frames*keepHeader]
}
