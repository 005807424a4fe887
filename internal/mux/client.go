package mux

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"sync"
	"time"
)

// ErrClientFull is returned by Client.Dial when the connection carries maxSessions streams.
var ErrClientFull = errors.New("mux: too many streams on one connection")

// ErrSessionFailed is what a stream's Read returns after an End frame with the error option
// (the server refused or failed the destination).
var ErrSessionFailed = errors.New("mux: session ended with an error by the server")

// Client is the client end of one mux.cool connection (a VLESS CommandMux conn to an Xray
// or Burrow server): Dial opens a stream over it and returns it as a net.Conn.
//
// Streams follow Xray's client: ids count up from 1; a TCP stream's data goes in Keep frames
// of at most 8 KiB; a UDP stream is plain mux UDP (not XUDP): one Write is one datagram of at
// most 8 KiB to the dialed address, one Read one datagram from it. There is no half close
// (mux.cool has none: End ends both directions) and no flow control besides TCP's: a stream
// buffers a few frames, then the reader waits for the application, stalling every stream
// of the connection as Xray's client does.
type Client struct {
	conn      net.Conn
	frames    chan []byte   // to writeLoop, unbuffered: a frame is sent once writeLoop takes it
	ctrl      chan []byte   // End frames to writeLoop, buffered so that Close never waits
	done      chan struct{} // closed when the reader loop has ended every stream
	quit      chan struct{} // closed by Close
	closeOnce sync.Once
	wg        sync.WaitGroup // readLoop
	wwg       sync.WaitGroup // writeLoop

	mu      sync.Mutex // guards the fields below
	streams map[uint16]*stream
	lastID  uint16
	err     error // why the connection ended
}

// NewClient starts serving conn. The Client owns conn: Close (or a failure of conn) closes
// it and ends every stream.
func NewClient(conn net.Conn) *Client {
	c := &Client{conn: conn, frames: make(chan []byte), ctrl: make(chan []byte, 2*maxSessions), done: make(chan struct{}), quit: make(chan struct{}),
		streams: make(map[uint16]*stream)}
	c.wg.Go(c.readLoop)
	c.wwg.Go(c.writeLoop)
	return c
}

// Dial opens a stream to address (host:port; a domain is sent as is, for the server to
// resolve) on network "tcp" or "udp". It sends the New frame and returns without waiting
// for the server: a refused destination shows as an error from the stream's Read.
func (c *Client) Dial(ctx context.Context, network, address string) (net.Conn, error) {
	var nb byte
	switch network {
	case "tcp", "tcp4", "tcp6":
		nb = netTCP
	case "udp", "udp4", "udp6":
		nb = netUDP
	default:
		return nil, fmt.Errorf("mux: dial %s: unsupported network", network)
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	c.mu.Lock()
	if c.err != nil {
		c.mu.Unlock()
		return nil, fmt.Errorf("mux: dial: %w", c.err)
	}
	if len(c.streams) >= maxSessions {
		c.mu.Unlock()
		return nil, ErrClientFull
	}
	id := c.lastID + 1
	for id == 0 || c.streams[id] != nil { // 0 is XUDP's
		id++
	}
	c.lastID = id
	st := newStream(c, id, nb == netUDP, address)
	c.streams[id] = st
	c.mu.Unlock()
	b, err := appendNewFrame(nil, id, nb, address, nil)
	if err == nil {
		err = c.write(b, ctx.Done())
	}
	if err != nil {
		c.forget(id, st)
		return nil, fmt.Errorf("mux: dial %s %s: %w", network, address, err)
	}
	return st, nil
}

// Close ends every stream and closes the connection, after writing the End frames of
// streams closed before (for at most a second); it waits for its goroutines.
func (c *Client) Close() error {
	var err error
	c.closeOnce.Do(func() {
		c.conn.SetWriteDeadline(time.Now().Add(time.Second))
		close(c.quit)
		c.wwg.Wait()
		err = c.conn.Close()
	})
	c.wg.Wait()
	return err
}

// write hands a frame to writeLoop, giving up when the connection ends or stop (may be nil)
// is closed.
func (c *Client) write(b []byte, stop <-chan struct{}) error {
	select {
	case c.frames <- b:
		return nil
	case <-c.done:
		return net.ErrClosed
	case <-c.quit:
		return net.ErrClosed
	case <-stop:
		return os.ErrDeadlineExceeded
	}
}

// sendEnd queues an End frame without waiting; if the queue is full (the connection is
// stalled with hundreds of Ends pending) it is dropped: the server ends the session when
// the connection ends.
func (c *Client) sendEnd(id uint16) {
	select {
	case c.ctrl <- appendFrame(nil, id, statusEnd, 0, netip.AddrPort{}, nil):
	default:
	}
}

// writeLoop writes frames one at a time, End frames first; a failed write closes the
// connection, which ends the reader loop and with it every stream. On Close it writes the
// End frames still queued, then returns.
func (c *Client) writeLoop() {
	write := func(b []byte) bool {
		if _, err := c.conn.Write(b); err != nil {
			c.conn.Close()
			return false
		}
		return true
	}
	for {
		var b []byte
		select {
		case b = <-c.ctrl:
		default:
			select {
			case b = <-c.ctrl:
			case b = <-c.frames:
			case <-c.done:
				return
			case <-c.quit:
				for {
					select {
					case b := <-c.ctrl:
						if !write(b) {
							return
						}
					default:
						return
					}
				}
			}
		}
		if !write(b) {
			return
		}
	}
}

func (c *Client) forget(id uint16, st *stream) {
	c.mu.Lock()
	if c.streams[id] == st {
		delete(c.streams, id)
	}
	c.mu.Unlock()
}

func (c *Client) stream(id uint16) *stream {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.streams[id]
}

// readLoop dispatches the server's frames to the streams until conn fails.
func (c *Client) readLoop() {
	fr := &frameReader{r: c.conn}
	var err error
	for err == nil {
		var f *frame
		if f, err = fr.read(); err != nil {
			break
		}
		switch f.status {
		case statusKeep:
			if f.option&optData == 0 {
				continue
			}
			if st := c.stream(f.id); st != nil {
				st.push(f.data)
			} else {
				c.sendEnd(f.id)
			}
		case statusEnd:
			if st := c.stream(f.id); st != nil {
				c.forget(f.id, st)
				st.remoteEnd(f.option&optError != 0)
			}
		case statusNew, statusKeepAlive:
			// Xray's client discards both.
		default:
			err = fmt.Errorf("%w: status %d", ErrFrame, f.status)
		}
	}
	if errors.Is(err, io.EOF) {
		err = io.ErrUnexpectedEOF
	}
	c.conn.Close()
	c.mu.Lock()
	c.err = err
	all := c.streams
	c.streams = map[uint16]*stream{}
	c.mu.Unlock()
	close(c.done)
	for _, st := range all {
		st.remoteEnd(true)
	}
}

// stream is one session of a Client, as a net.Conn.
type stream struct {
	c      *Client
	id     uint16
	udp    bool
	remote muxAddr
	in     chan []byte   // data from the server; the reader loop sends, Read receives
	ended  chan struct{} // closed on the server's End (or the connection's end)
	closed chan struct{} // closed by Close

	endOnce, closeOnce sync.Once
	failed             bool // End carried the error option; written before ended is closed

	rmu  sync.Mutex // serialises Read; guards rbuf
	rbuf []byte     // rest of the chunk being read (TCP)

	rdl, wdl deadline
}

func newStream(c *Client, id uint16, udp bool, address string) *stream {
	network := "tcp"
	if udp {
		network = "udp"
	}
	return &stream{
		c: c, id: id, udp: udp, remote: muxAddr{network, address},
		in: make(chan []byte, 16), ended: make(chan struct{}), closed: make(chan struct{}),
		rdl: newDeadline(), wdl: newDeadline(),
	}
}

// push hands a copy of data to the stream, waiting while its buffer is full.
func (st *stream) push(data []byte) {
	b := append([]byte(nil), data...)
	select {
	case st.in <- b:
	case <-st.closed:
	case <-st.c.quit:
	}
}

func (st *stream) remoteEnd(failed bool) {
	st.endOnce.Do(func() {
		st.failed = failed
		close(st.ended)
	})
}

func (st *stream) Read(p []byte) (int, error) {
	st.rmu.Lock()
	defer st.rmu.Unlock()
	if len(st.rbuf) == 0 {
		b, err := st.next()
		if err != nil {
			return 0, err
		}
		if st.udp {
			return copy(p, b), nil
		}
		st.rbuf = b
	}
	n := copy(p, st.rbuf)
	st.rbuf = st.rbuf[n:]
	return n, nil
}

// next waits for the next chunk of data; data that arrived before an End is read first.
func (st *stream) next() ([]byte, error) {
	wake := st.rdl.wait()
	select {
	case <-st.closed:
		return nil, net.ErrClosed
	case b := <-st.in:
		return b, nil
	default:
	}
	select {
	case b := <-st.in:
		return b, nil
	case <-st.closed:
		return nil, net.ErrClosed
	case <-wake:
		return nil, os.ErrDeadlineExceeded
	case <-st.ended:
		select {
		case b := <-st.in:
			return b, nil
		default:
		}
		if st.failed {
			return nil, ErrSessionFailed
		}
		return nil, io.EOF
	}
}

// Write sends p in Keep frames: for TCP in chunks of at most 8 KiB, for UDP as one datagram
// (at most 8 KiB, Xray's limit). A frame counts as written once the connection's writer
// has taken it.
func (st *stream) Write(p []byte) (int, error) {
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
		default:
		}
		chunk := p[n:min(len(p), n+chunkSize)]
		frame := appendFrame(nil, st.id, statusKeep, optData, netip.AddrPort{}, chunk)
		select {
		case st.c.frames <- frame:
		case <-st.closed:
			return n, net.ErrClosed
		case <-st.ended:
			return n, io.ErrClosedPipe
		case <-wake:
			return n, os.ErrDeadlineExceeded
		case <-st.c.done:
			return n, net.ErrClosed
		}
		n += len(chunk)
	}
	return n, nil
}

// Close ends the session: an End frame unless the server ended it first.
func (st *stream) Close() error {
	st.closeOnce.Do(func() {
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
