package vless

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// headerFlushDelay is how long a client conn that is read before it is written waits for a
// first payload to carry the request header, like Xray's 500 ms (server-speaks-first protocols).
var headerFlushDelay = 500 * time.Millisecond

// maxDatagram is the largest UDP payload the 2-byte length prefix can carry.
const maxDatagram = 0xffff

// ErrDatagramTooLarge is returned by Write on a UDP conn for payloads over 65535 bytes.
var ErrDatagramTooLarge = errors.New("vless: datagram larger than 65535 bytes")

// Conn is a VLESS stream (or datagram) conn over an outer TLS conn. It is returned by
// ServerConn and ClientConn; see the package documentation for the wire format. Deadlines
// and addresses are the outer conn's (which passes deadlines to the raw conn, so they also
// hold after Vision went direct). Read and Write may be called concurrently.
type Conn struct {
	net.Conn // the outer TLS conn; use it only through Conn's methods

	client bool
	udp    bool
	vision bool
	tlsErr error         // Vision without a usable outer TLS 1.3 conn
	tin    *tlsInternals // Vision only
	st     *trafficState // Vision only; shared by both directions

	closed atomic.Bool // Close was called: Read returns net.ErrClosed, not buffered data

	tmu        sync.Mutex  // guards flushTimer
	flushTimer *time.Timer // client: sends the header if the app reads before writing

	wmu        sync.Mutex // guards the fields below it up to rmu
	header     []byte     // header still to send with the first write; nil once sent
	pad        padder
	wbuf       []byte      // UDP framing buffer (Vision blocks use blockPool)
	headerSent atomic.Bool // header == nil (readable without wmu)
	wDirect    atomic.Bool // writes go to tin.raw (set under wmu)

	rmu      sync.Mutex  // guards the fields below it
	needResp bool        // client: response header not yet read
	resp     []byte      // client: response header bytes read so far
	onResp   func(error) // client: told once of the response header: nil, or a *RefusedError
	unpad    unpadder
	out      []byte // decoded bytes not yet returned
	outOff   int
	rerr     error   // read error to return once out is drained
	rDirect  bool    // reads come from tin.raw
	rPlain   bool    // Vision padding ended; reads come from the outer TLS conn
	dgHdr    [2]byte // UDP: length prefix and datagram, kept across timeouts
	dgHdrN   int
	dg       []byte
	dgN      int

	// Test observability: bytes moved on the raw conn, and by the splice-capable paths.
	directRead, directWritten atomic.Int64
	rawReadFrom, rawWriteTo   atomic.Int64
}

var (
	_ io.ReaderFrom = (*Conn)(nil)
	_ io.WriterTo   = (*Conn)(nil)
)

// ServerConn wraps the outer TLS conn after ReadRequest returned req. The response header
// (version 0, no addons) goes out with the first Write. With req.Flow == FlowVision the
// outer conn must be TLS 1.3 (crypto/tls, utls or REALITY), or the first Read/Write fails
// with ErrVisionTransport. For CommandUDP each Read/Write is one datagram.
func ServerConn(tls net.Conn, req *Request) net.Conn {
	return newConn(tls, req, false, append([]byte(nil), responseHeader...))
}

// ClientConn wraps the outer TLS conn of a client. The request header goes out with the first
// Write (a zero-length Write sends it alone; a Read before any Write sends it after 500 ms);
// the response header is consumed by the first Read. Vision is used when req.Flow is
// FlowVision and req.Command is not CommandUDP: Xray servers refuse Vision for UDP, so UDP
// requests are sent with no flow (which they accept from Vision users).
func ClientConn(tls net.Conn, req *Request) net.Conn {
	return ClientConnWatch(tls, req, nil)
}

// ClientConnWatch is ClientConn that also calls onResponse (if not nil) once the response
// header has been read: with nil when the server accepted the request, or with the
// *RefusedError a Burrow server's refusal makes (refusal.go). It is called from Read, before
// Read returns.
func ClientConnWatch(tls net.Conn, req *Request, onResponse func(error)) net.Conn {
	flow := req.Flow
	if req.Command == CommandUDP {
		flow = ""
	}
	h, err := req.appendWire(nil, flow)
	c := newConn(tls, &Request{UUID: req.UUID, Flow: flow, Command: req.Command}, true, h)
	if err != nil {
		c.tlsErr = fmt.Errorf("vless: encode request: %w", err)
	}
	c.needResp = true
	c.onResp = onResponse
	return c
}

func newConn(tls net.Conn, req *Request, client bool, header []byte) *Conn {
	c := &Conn{
		Conn:   tls,
		client: client,
		udp:    req.Command == CommandUDP,
		vision: req.Flow == FlowVision && req.Command != CommandUDP,
		header: header,
	}
	if c.vision {
		c.tin, c.tlsErr = findTLSInternals(tls)
		c.st = newTrafficState()
		c.pad = padder{uuid: append([]byte(nil), req.UUID[:]...), padding: true, endLong: client}
		c.unpad.uuid = req.UUID
	}
	return c
}

// Write sends p: one datagram for UDP, otherwise stream data (padded by Vision while the
// inner traffic calls for it, and straight onto the raw conn once Vision went direct).
// A zero-length Write sends a pending header (with Vision, behind an empty padded block)
// and is otherwise a no-op; in particular empty datagrams are not sent, as in Xray.
func (c *Conn) Write(p []byte) (int, error) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.tlsErr != nil {
		return 0, c.tlsErr
	}
	if len(p) == 0 && c.header == nil {
		return 0, nil
	}
	switch {
	case c.udp:
		if len(p) > maxDatagram {
			return 0, ErrDatagramTooLarge
		}
		b := append(c.wbuf[:0], c.header...)
		if len(p) > 0 {
			b = append(b, byte(len(p)>>8), byte(len(p)))
			b = append(b, p...)
		}
		c.wbuf = b[:0]
		return c.writeOuter(b, len(p))
	case c.wDirect.Load():
		n, err := c.tin.raw.Write(p)
		c.directWritten.Add(int64(n))
		return n, err
	case c.vision && c.pad.padding:
		// The padded blocks are built in a pooled buffer: the outer TLS conn copies them into
		// its records, and an idle conn should not keep a buffer of its own.
		bp := blockPool.Get().(*[]byte)
		b, direct := c.pad.encode(append((*bp)[:0], c.header...), p, c.st)
		n, err := c.writeOuter(b, len(p))
		if cap(b) <= maxPooledBlocks {
			*bp = b[:0]
			blockPool.Put(bp)
		}
		if err == nil && direct {
			c.wDirect.Store(true)
		}
		return n, err
	case c.header != nil:
		b := append(c.wbuf[:0], c.header...)
		b = append(b, p...)
		c.wbuf = nil
		return c.writeOuter(b, len(p))
	default:
		if c.st != nil {
			c.filter(p)
		}
		return c.Conn.Write(p)
	}
}

// writeOuter writes a framed buffer to the outer conn and reports n payload bytes written.
func (c *Conn) writeOuter(b []byte, n int) (int, error) {
	if _, err := c.Conn.Write(b); err != nil {
		return 0, err
	}
	if c.header != nil {
		c.header = nil
		c.headerSent.Store(true)
		c.stopFlushTimer()
	}
	return n, nil
}

func (c *Conn) stopFlushTimer() {
	c.tmu.Lock()
	if c.flushTimer != nil {
		c.flushTimer.Stop()
	}
	c.tmu.Unlock()
}

// filter runs the TLS filter over p in ≤8 KiB pieces while it still counts packets.
func (c *Conn) filter(p []byte) {
	c.st.mu.Lock()
	defer c.st.mu.Unlock()
	for len(p) > 0 && c.st.toFilter > 0 {
		n := min(len(p), bufSize)
		c.st.filterLocked(p[:n])
		p = p[n:]
	}
}

// Read returns stream data, or one datagram for UDP (a datagram longer than p is truncated
// and io.ErrShortBuffer returned).
func (c *Conn) Read(p []byte) (int, error) {
	c.rmu.Lock()
	defer c.rmu.Unlock()
	if c.closed.Load() {
		return 0, net.ErrClosed
	}
	if c.tlsErr != nil {
		return 0, c.tlsErr
	}
	if c.needResp {
		c.scheduleHeaderFlush()
		if err := c.readResponse(); err != nil {
			return 0, err
		}
		c.needResp = false
		c.resp = nil
	}
	switch {
	case c.udp:
		return c.readDatagram(p)
	case !c.vision:
		return c.Conn.Read(p)
	}
	return c.readVision(p)
}

// scheduleHeaderFlush makes sure a client that reads first still sends its request.
func (c *Conn) scheduleHeaderFlush() {
	if c.headerSent.Load() {
		return
	}
	c.tmu.Lock()
	defer c.tmu.Unlock()
	if c.flushTimer == nil {
		c.flushTimer = time.AfterFunc(headerFlushDelay, func() { c.Write(nil) })
	}
}

// readResponse consumes the response header (version 0, addons length, addons). Progress
// survives a timeout; I/O errors are returned unwrapped so timeouts stay net.Errors.
func (c *Conn) readResponse() error {
	need := 2
	for {
		if len(c.resp) >= 2 {
			if c.resp[0] != Version {
				return fmt.Errorf("%w %d in response", ErrVersion, c.resp[0])
			}
			need = 2 + int(c.resp[1])
		}
		if len(c.resp) == need {
			break
		}
		var b [255]byte
		n, err := c.Conn.Read(b[:need-len(c.resp)])
		c.resp = append(c.resp, b[:n]...)
		if err != nil && len(c.resp) < need {
			if err == io.EOF && len(c.resp) > 0 {
				err = io.ErrUnexpectedEOF
			}
			return err
		}
	}
	_, refusal, err := parseAddons(c.resp[2:])
	if err != nil {
		return fmt.Errorf("vless: read response addons: %w", err)
	}
	if refusal != 0 {
		err = &RefusedError{Reason: refusal}
	}
	if f := c.onResp; f != nil {
		c.onResp = nil
		f(err)
	}
	return err
}

// readDatagram reads one length-prefixed datagram. Progress survives a timeout.
func (c *Conn) readDatagram(p []byte) (int, error) {
	for c.dgHdrN < 2 {
		n, err := c.Conn.Read(c.dgHdr[c.dgHdrN:])
		c.dgHdrN += n
		if err != nil && c.dgHdrN < 2 {
			if err == io.EOF && c.dgHdrN > 0 {
				err = io.ErrUnexpectedEOF
			}
			return 0, err
		}
	}
	size := int(c.dgHdr[0])<<8 | int(c.dgHdr[1])
	if cap(c.dg) < size {
		c.dg = make([]byte, size, max(size, 2048))
	}
	c.dg = c.dg[:size]
	for c.dgN < size {
		n, err := c.Conn.Read(c.dg[c.dgN:])
		c.dgN += n
		if err != nil && c.dgN < size {
			return 0, noEOF(err)
		}
	}
	c.dgHdrN, c.dgN = 0, 0
	n := copy(p, c.dg)
	if n < size {
		return n, io.ErrShortBuffer
	}
	return n, nil
}

func noEOF(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}

func (c *Conn) readVision(p []byte) (int, error) {
	for {
		if c.outOff < len(c.out) {
			n := copy(p, c.out[c.outOff:])
			c.outOff += n
			if c.outOff == len(c.out) {
				c.out, c.outOff = c.out[:0], 0
				if c.rDirect || c.rPlain {
					c.out = nil
				}
			}
			return n, nil
		}
		if c.rerr != nil {
			return 0, c.rerr
		}
		if c.rDirect {
			n, err := c.tin.raw.Read(p)
			c.directRead.Add(int64(n))
			return n, err
		}
		if c.rPlain {
			n, err := c.Conn.Read(p)
			if n > 0 {
				c.filter(p[:n])
			}
			return n, err
		}
		// A large enough p is scratch space for the padded bytes (decode copies out all it
		// keeps); a small one is replaced by a pooled record-sized buffer for this Read, so an
		// idle conn does not hold a read buffer of its own.
		in := p
		var scratch *[scratchSize]byte
		if len(in) < minScratch {
			scratch = scratchPool.Get().(*[scratchSize]byte)
			in = scratch[:]
		}
		n, err := c.Conn.Read(in)
		if n > 0 {
			c.decode(in[:n])
		}
		if scratch != nil {
			scratchPool.Put(scratch)
		}
		if err != nil {
			if ne, ok := err.(net.Error); ok && ne.Timeout() {
				if c.outOff < len(c.out) {
					continue // deliver what we have; the deadline will fire again
				}
				return 0, err // not sticky: the caller may extend the deadline
			}
			if c.unpad.state == upUUID && len(c.unpad.seen) > 0 {
				c.out = append(c.out, c.unpad.seen...) // a short unpadded stream
				c.unpad.seen = nil
			}
			c.rerr = err
		}
	}
}

// decode runs the unpadder over in and moves its output to c.out, switching to plain or direct
// reading when padding ends.
func (c *Conn) decode(in []byte) {
	rest := c.unpad.feed(in, func(b []byte) {
		c.filter(b)
		c.out = append(c.out, b...)
	})
	switch c.unpad.state {
	case upPlain:
		c.rPlain = true
		c.filter(rest)
		c.out = append(c.out, rest...)
	case upDirect:
		c.rDirect = true
		c.out = append(c.out, rest...)
		// What the outer TLS conn read past the last record is direct data; its undelivered
		// plaintext (none, normally) precedes it.
		if n := c.tin.input.Len(); n > 0 {
			start := len(c.out)
			c.out = append(c.out, make([]byte, n)...)
			c.tin.input.Read(c.out[start:])
		}
		c.out = append(c.out, c.tin.rawInput.Bytes()...)
		// Nothing reads the outer TLS conn again, so its read buffer (grown to the largest
		// record it read) is let go rather than emptied. Only Read touches these fields, and
		// all Reads of the TLS conn are made under rmu, which we hold.
		*c.tin.input = bytes.Reader{}
		*c.tin.rawInput = bytes.Buffer{}
	}
}

// WriteTo copies the conn's data to w. Once Vision went direct, it hands the raw conn over:
// to raw.WriteTo when the raw conn has one (a *net.TCPConn, or a wrapper such as the camo
// server's replay conn or a byte meter, whose WriteTo reaches w.ReadFrom with the socket
// itself), else to w.ReadFrom. With w a *net.TCPConn, Linux splices. Until then it copies
// through a buffer that is small while the conn is idle (see copyBuf).
func (c *Conn) WriteTo(w io.Writer) (int64, error) {
	buf := copyBuf{fixed: c.udp}
	defer buf.release()
	var total int64
	for {
		if c.rawReady() {
			buf.release()
			var n int64
			var err error
			switch {
			case isWriterTo(c.tin.raw):
				n, err = c.tin.raw.(io.WriterTo).WriteTo(w)
			case isReaderFrom(w):
				n, err = w.(io.ReaderFrom).ReadFrom(c.tin.raw)
			default:
				n, err = io.Copy(w, c.tin.raw)
			}
			c.rawWriteTo.Add(n)
			c.directRead.Add(n)
			return total + n, err
		}
		b := buf.get()
		n, err := c.Read(b)
		if n > 0 {
			m, werr := w.Write(b[:n])
			total += int64(m)
			if werr != nil {
				return total, werr
			}
		}
		buf.adapt(n) // after the write: adapt may give b back to the pool
		if err == io.EOF {
			return total, nil
		}
		if err != nil {
			return total, err
		}
	}
}

// WritesDirect reports whether writes have gone direct (Vision): from then on
// ReadFrom hands its reader to the raw conn, so a byte meter may size its
// chunks freely; before, ReadFrom aligns what it writes on TLS records.
func (c *Conn) WritesDirect() bool { return c.wDirect.Load() }

func isWriterTo(r io.Reader) bool   { _, ok := r.(io.WriterTo); return ok }
func isReaderFrom(w io.Writer) bool { _, ok := w.(io.ReaderFrom); return ok }

// rawReady reports whether reads have gone direct with nothing buffered.
func (c *Conn) rawReady() bool {
	c.rmu.Lock()
	defer c.rmu.Unlock()
	return c.rDirect && c.outOff == len(c.out) && c.rerr == nil
}

// ReadFrom copies r into the conn. Once Vision went direct, it hands r to the raw conn's
// ReadFrom: with both *net.TCPConn (or the wrapper io.Copy makes of one), Linux splices.
// Until then it copies through a buffer that is small while a Vision conn is idle (copyBuf),
// and while Vision pads inner TLS it writes whole TLS records only (see completeRecords):
// Vision goes direct on a write of whole application-data records, and a read from a TCP
// socket ends on a record boundary only by chance.
func (c *Conn) ReadFrom(r io.Reader) (int64, error) {
	// The first read is large: how reads cut the data is how writes cut it on the wire (a
	// ClientHello stays whole). Later reads adapt, except a UDP conn's (one datagram each):
	// a conn that sits idle holds a small buffer.
	buf := copyBuf{fixed: c.udp}
	buf.startLarge()
	defer buf.release()
	var total int64
	held := 0 // bytes at the start of the buffer not yet written: part of a TLS record
	for {
		if c.wDirect.Load() {
			if held > 0 {
				if _, err := c.Write(buf.get()[:held]); err != nil {
					return total, err
				}
				total += int64(held)
			}
			buf.release()
			var n int64
			var err error
			if rf, ok := c.tin.raw.(io.ReaderFrom); ok {
				n, err = rf.ReadFrom(r)
			} else {
				n, err = io.Copy(c.tin.raw, r)
			}
			c.rawReadFrom.Add(n)
			c.directWritten.Add(n)
			return total + n, err
		}
		b := buf.get()
		n, err := r.Read(b[held:])
		data := b[:held+n]
		send := len(data)
		if err == nil && n > 0 && c.alignRecords() {
			if k, ok := completeRecords(data); ok {
				send = k
			}
		}
		if send > 0 {
			if _, werr := c.Write(data[:send]); werr != nil {
				return total, werr
			}
			total += int64(send)
		}
		held = copy(b, data[send:])
		if held > 0 {
			buf.keepLarge(held)
		} else {
			buf.adapt(n)
		}
		if err == io.EOF {
			return total, nil
		}
		if err != nil {
			return total, err
		}
	}
}

// alignRecords reports whether writes should carry whole TLS records: Vision is still padding
// and has seen an inner TLS hello.
func (c *Conn) alignRecords() bool {
	if !c.vision {
		return false
	}
	c.wmu.Lock()
	padding := c.pad.padding
	c.wmu.Unlock()
	if !padding {
		return false
	}
	c.st.mu.Lock()
	defer c.st.mu.Unlock()
	return c.st.isTLS
}

// maxRecord is the longest TLS record body (TLSCiphertext: 2^14 + 256).
const maxRecord = 16384 + 256

// completeRecords returns the length of the longest prefix of b made of whole TLS records,
// and false if b does not look like a stream of TLS records (then it should be sent as is).
func completeRecords(b []byte) (int, bool) {
	n := 0
	for len(b)-n >= 5 {
		h := b[n : n+5]
		size := int(h[3])<<8 | int(h[4])
		if h[0] < 0x14 || h[0] > 0x17 || h[1] != 3 || size == 0 || size > maxRecord {
			return 0, false
		}
		if len(b)-n < 5+size {
			break
		}
		n += 5 + size
	}
	return n, true
}

type closeWriter interface{ CloseWrite() error }

// CloseWrite ends the write direction: on the raw conn once Vision went direct, otherwise with
// the outer TLS conn's close_notify. A client that never wrote sends its request header first.
func (c *Conn) CloseWrite() error {
	if !c.headerSent.Load() {
		if _, err := c.Write(nil); err != nil {
			return err
		}
	}
	var w net.Conn = c.Conn
	if c.wDirect.Load() {
		w = c.tin.raw
	}
	if cw, ok := w.(closeWriter); ok {
		return cw.CloseWrite()
	}
	return fmt.Errorf("vless: close write: %T cannot half-close", w)
}

// Close closes the conn. After Vision went direct the raw conn is closed without a TLS
// close_notify, which would otherwise land in the middle of the peer's direct stream.
// Reads after Close return net.ErrClosed, also when decoded data was still buffered.
func (c *Conn) Close() error {
	c.closed.Store(true)
	c.stopFlushTimer()
	if c.wDirect.Load() {
		return c.tin.raw.Close()
	}
	return c.Conn.Close()
}
