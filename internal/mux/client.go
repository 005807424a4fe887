package mux

import (
	"bufio"
	"context"
	"encoding/binary"
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

// Sizes of the client's buffers.
const (
	// readBufSize is the buffer of the connection's reader: frame headers come out of it
	// without a read call each, and the Keep frames of one stream found in it together
	// reach the stream as one chunk.
	readBufSize = 64 << 10
	// writeBatch is the most stream data a Write hands to the writer at once (8 frames).
	writeBatch = 8 * chunkSize
)

// streamBuffer is how much buffer space (counted by capacity) a stream holds for its
// application before the reader loop waits for it.
var streamBuffer = 1 << 20

// Client is the client end of one mux.cool connection (a VLESS CommandMux conn to an Xray
// or Burrow server): Dial opens a stream over it and returns it as a net.Conn.
//
// Streams follow Xray's client: ids count up from 1; a TCP stream's data goes in Keep frames
// of at most 8 KiB; a UDP stream is plain mux UDP (not XUDP): one Write is one datagram of at
// most 8 KiB to the dialed address, one Read one datagram from it. There is no half close
// (mux.cool has none: End ends both directions) and no flow control besides TCP's: a stream
// buffers about 1 MiB, then the reader waits for the application, stalling every stream
// of the connection as Xray's client does.
type Client struct {
	conn      net.Conn
	frames    chan *[]byte  // whole frames to writeLoop, unbuffered: handed over once it takes them
	ctrl      chan uint16   // ids to send End for, buffered so that Close never waits
	done      chan struct{} // closed when the reader loop has ended every stream
	quit      chan struct{} // closed by Close
	closeOnce sync.Once
	wg        sync.WaitGroup // readLoop
	wwg       sync.WaitGroup // writeLoop

	mu        sync.Mutex // guards the fields below
	streams   map[uint16]*stream
	lastID    uint16
	idleSince time.Time // when streams last became empty
	err       error     // why the connection ended
}

// NewClient starts serving conn. The Client owns conn: Close (or a failure of conn) closes
// it and ends every stream.
func NewClient(conn net.Conn) *Client {
	c := &Client{conn: conn, frames: make(chan *[]byte), ctrl: make(chan uint16, 2*maxSessions),
		done: make(chan struct{}), quit: make(chan struct{}), streams: make(map[uint16]*stream), idleSince: time.Now()}
	c.wg.Go(c.readLoop)
	c.wwg.Go(c.writeLoop)
	return c
}

// Dial opens a stream to address (host:port; a domain is sent as is, for the server to
// resolve) on network "tcp" or "udp". It sends the New frame and returns without waiting
// for the server: a refused destination shows as an error from the stream's Read.
func (c *Client) Dial(ctx context.Context, network, address string) (net.Conn, error) {
	return c.DialData(ctx, network, address, nil)
}

// DialData is Dial with the stream's first data in its New frame, as Xray's client sends
// its first payload: for TCP the first 8 KiB of data (the rest follows in Keep frames, in
// the same write when it fits), for UDP the first datagram (at most 8 KiB). Empty data is
// none. ctx bounds the handover of the frames; when the rest of the data cannot be handed
// over the stream is closed and the error returned.
func (c *Client) DialData(ctx context.Context, network, address string, data []byte) (net.Conn, error) {
	var nb byte
	switch network {
	case "tcp", "tcp4", "tcp6":
		nb = netTCP
	case "udp", "udp4", "udp6":
		nb = netUDP
		if len(data) > maxPacketData {
			return nil, fmt.Errorf("mux: dial %s %s: datagram of %d bytes, over %d", network, address, len(data), maxPacketData)
		}
	default:
		return nil, fmt.Errorf("mux: dial %s: unsupported network", network)
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	var first []byte
	if len(data) > 0 {
		first = data[:min(len(data), chunkSize)]
	}
	rest := data[len(first):]
	b := getBuf(maxNewHeader + len(first) + keepsSize(min(len(rest), writeBatch-len(first))))
	nbuf, err := appendNewFrame((*b)[:0], 0, nb, address, first)
	if err != nil {
		putBuf(b)
		return nil, fmt.Errorf("mux: dial %s %s: %w", network, address, err)
	}
	*b = nbuf
	st, err := c.open(nb == netUDP, address)
	if err != nil {
		putBuf(b)
		return nil, err
	}
	binary.BigEndian.PutUint16((*b)[2:], st.id)
	sent := 0
	if len(rest) > 0 {
		*b, sent = appendKeeps(*b, st.id, rest, writeBatch-len(first))
	}
	if err := c.write(b, ctx.Done()); err != nil {
		c.forget(st.id, st) // the server never heard of it
		return nil, fmt.Errorf("mux: dial %s %s: %w", network, address, err)
	}
	if sent < len(rest) {
		if _, err := st.write(rest[sent:], ctx.Done()); err != nil {
			st.Close()
			return nil, fmt.Errorf("mux: dial %s %s: %w", network, address, err)
		}
	}
	return st, nil
}

// open registers a new stream under the next free id.
func (c *Client) open(udp bool, address string) (*stream, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err != nil {
		return nil, fmt.Errorf("mux: dial: %w", c.err)
	}
	if len(c.streams) >= maxSessions {
		return nil, ErrClientFull
	}
	id := c.lastID + 1
	for id == 0 || c.streams[id] != nil { // 0 is XUDP's
		id++
	}
	c.lastID = id
	st := newStream(c, id, udp, address)
	c.streams[id] = st
	return st, nil
}

// Len is the number of live streams: dialed, and ended by neither side.
func (c *Client) Len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.streams)
}

// Done is closed when the connection has ended (it failed, the server closed it, or Close):
// Dial fails from then on.
func (c *Client) Done() <-chan struct{} { return c.done }

// Idle is how long the client has had no live stream, 0 while it has one.
func (c *Client) Idle() time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.streams) > 0 {
		return 0
	}
	return time.Since(c.idleSince)
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

// write hands b, whole frames, to writeLoop, giving up when the connection ends or stop
// (may be nil) is closed; b is writeLoop's if it returns nil, back in the pool if not.
func (c *Client) write(b *[]byte, stop <-chan struct{}) error {
	select {
	case c.frames <- b:
		return nil
	case <-c.done:
		putBuf(b)
		return net.ErrClosed
	case <-c.quit:
		putBuf(b)
		return net.ErrClosed
	case <-stop:
		putBuf(b)
		return os.ErrDeadlineExceeded
	}
}

// sendEnd queues an End frame without waiting; if the queue is full (the connection is
// stalled with hundreds of Ends pending) it is dropped: the server ends the session when
// the connection ends.
func (c *Client) sendEnd(id uint16) {
	select {
	case c.ctrl <- id:
	default:
	}
}

// writeLoop writes what the streams hand over, End frames first, gathering frames already
// queued into the same conn.Write while they fit its buffer; a failed write closes the
// connection, which ends the reader loop and with it every stream. On Close it writes what
// it holds and the End frames still queued, then returns.
func (c *Client) writeLoop() {
	var next *[]byte // taken from frames, not written yet: it goes before any later End
	defer func() { putBuf(next) }()
	for {
		out := next
		next = nil
		if out == nil {
			select {
			case id := <-c.ctrl:
				out = endFrame(id)
			default:
				select {
				case id := <-c.ctrl:
					out = endFrame(id)
				case out = <-c.frames:
				case <-c.done:
					return
				case <-c.quit:
					out = getBuf(0)
				}
			}
		}
		out, next = c.gather(out)
		if next == nil {
			select {
			case <-c.quit: // write what is queued, then stop
				out = c.gatherEnds(out)
				if len(*out) > 0 {
					c.conn.Write(*out)
				}
				putBuf(out)
				return
			default:
			}
		}
		_, err := c.conn.Write(*out)
		putBuf(out)
		if err != nil {
			c.conn.Close()
			return
		}
	}
}

// endFrame returns a buffer holding the End frame of id.
func endFrame(id uint16) *[]byte {
	b := getBuf(0)
	*b = appendFrame(*b, id, statusEnd, 0, netip.AddrPort{}, nil)
	return b
}

// gather appends to out the End frames and frames already queued while they fit; it
// returns the frame that did not fit, if it took one.
func (c *Client) gather(out *[]byte) (*[]byte, *[]byte) {
	for {
		out = c.gatherEnds(out)
		select {
		case b := <-c.frames:
			if len(*out)+len(*b) > cap(*out) {
				return out, b
			}
			*out = append(*out, *b...)
			putBuf(b)
		default:
			return out, nil
		}
	}
}

// gatherEnds appends the queued End frames that fit to out.
func (c *Client) gatherEnds(out *[]byte) *[]byte {
	for cap(*out)-len(*out) >= keepHeader {
		select {
		case id := <-c.ctrl:
			*out = appendFrame(*out, id, statusEnd, 0, netip.AddrPort{}, nil)
		default:
			return out
		}
	}
	return out
}

func (c *Client) forget(id uint16, st *stream) {
	c.mu.Lock()
	if c.streams[id] == st {
		delete(c.streams, id)
		if len(c.streams) == 0 {
			c.idleSince = time.Now()
		}
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
	br := bufio.NewReaderSize(c.conn, readBufSize)
	fr := &frameReader{r: br}
	f := new(frame)
	var err error
	for err == nil {
		if err = fr.next(f); err != nil {
			break
		}
		err = c.handle(br, f)
	}
	if errors.Is(err, io.EOF) {
		err = io.ErrUnexpectedEOF
	}
	c.conn.Close()
	c.mu.Lock()
	c.err = err
	all := c.streams
	c.streams = map[uint16]*stream{}
	if len(all) > 0 {
		c.idleSince = time.Now()
	}
	c.mu.Unlock()
	close(c.done)
	// The streams fail with the connection's own error, which says why (a server's
	// refusal of the VLESS request says what the user should know).
	failed := fmt.Errorf("%w: connection ended: %w", ErrSessionFailed, err)
	for _, st := range all {
		st.remoteEnd(failed)
	}
}

// handle acts on frame f, whose data is next in br.
func (c *Client) handle(br *bufio.Reader, f *frame) error {
	var st *stream
	if f.status == statusKeep || f.status == statusEnd {
		st = c.stream(f.id)
	}
	switch {
	case f.status == statusKeep && f.option&optData != 0 && st != nil:
		if f.size == 0 && !st.udp {
			return nil
		}
		b, err := readChunk(br, f, st.udp)
		if err != nil {
			return err
		}
		st.push(b)
		return nil
	case f.status == statusKeep && f.option&optData != 0:
		c.sendEnd(f.id)
	case f.status == statusEnd && st != nil:
		c.forget(f.id, st)
		var failed error
		if f.option&optError != 0 {
			failed = ErrSessionFailed
		}
		st.remoteEnd(failed)
	case f.status > statusKeepAlive || f.status == 0:
		return fmt.Errorf("%w: status %d", ErrFrame, f.status)
	}
	// New and KeepAlive (Xray's client discards both), and data for no stream.
	_, err := br.Discard(f.size)
	return noEOF(err)
}

// readChunk reads the data of f, a Keep frame for a stream, into a pooled buffer. For a TCP
// stream, the data of the Keep frames for the same stream right behind it that br already
// holds is read into the same buffer, up to 64 KiB.
func readChunk(br *bufio.Reader, f *frame, udp bool) (*[]byte, error) {
	size := f.size
	if !udp && br.Buffered() > f.size {
		size = largeBuf
	}
	b := getBuf(max(size, f.size))
	*b = (*b)[:f.size]
	if _, err := io.ReadFull(br, *b); err != nil {
		putBuf(b)
		return nil, noEOF(err)
	}
	for !udp && br.Buffered() >= keepHeader {
		h, _ := br.Peek(keepHeader)
		if binary.BigEndian.Uint16(h) != 4 || binary.BigEndian.Uint16(h[2:]) != f.id || h[4] != statusKeep || h[5] != optData {
			break
		}
		n, have := int(binary.BigEndian.Uint16(h[6:])), len(*b)
		if have+n > cap(*b) || br.Buffered() < keepHeader+n {
			break
		}
		br.Discard(keepHeader)
		*b = (*b)[:have+n]
		br.Read((*b)[have:]) // buffered: all of it, at once
	}
	return b, nil
}
