// Package meter counts the bytes that cross a connection without taking away
// the kernel's fast path, and admits them against a byte budget.
//
// Wrapping a *net.TCPConn in an ordinary counting type hides its ReadFrom and
// WriteTo methods, so io.Copy falls back to a userspace buffer and Linux can
// no longer splice. The types here instead move data in bounded chunks through
// io.LimitedReader, which net.TCPConn.ReadFrom still splices, and count each
// chunk as it completes.
//
// Admission is by reservation: before bytes move, the Counter grants up to so
// many (Reserve), and afterwards it learns how many did move (Settle), so a
// budget shared by many connections is never overdrawn, whichever of them
// sends. Bytes already in hand (a buffer just read) are reserved exactly; a
// chunk that the kernel splices is the bytes its socket holds, reserved once
// they arrived. No reservation waits for data: an idle or slow connection
// holds none while the user's other connections run down the budget.
package meter

import (
	"errors"
	"io"
	"net"
	"syscall"
)

// DefaultChunk is the most bytes moved between two counts.
const DefaultChunk = 256 << 10

// ErrBudget is returned when the counter grants no more bytes.
var ErrBudget = errors.New("meter: byte budget exhausted")

// Counter admits and counts bytes. Implementations must be safe for
// concurrent use.
type Counter interface {
	// Reserve asks to move up to n > 0 bytes and returns how many may move,
	// from 0 (stop: the budget is spent) to n. A counter may grant less than
	// n while budget remains; the caller asks again.
	Reserve(n int64) int64
	// Settle reports that of reserved bytes (the sum of some grants), moved
	// did move; the rest goes back to the budget.
	Settle(reserved, moved int64)
}

// Unlimited is a Counter body for callers that only count.
type Unlimited struct{ AddFunc func(int64) }

func (u Unlimited) Reserve(n int64) int64 { return n }
func (u Unlimited) Settle(_, moved int64) {
	if u.AddFunc != nil && moved > 0 {
		u.AddFunc(moved)
	}
}

// ReserveAll asks c for n bytes until it has them all or c grants nothing,
// and returns the total granted: for bytes already in hand.
func ReserveAll(c Counter, n int64) int64 {
	var got int64
	for got < n {
		g := c.Reserve(n - got)
		if g <= 0 {
			break
		}
		got += g
	}
	return got
}

// Copy moves bytes from src to dst until EOF or error, counting them on c.
// It prefers dst.ReadFrom (so a *net.TCPConn destination can splice from a
// *net.TCPConn source) and otherwise src.WriteTo, one chunk at a time.
//
// When src is a socket, no reservation waits for data: each chunk is the
// bytes the socket holds once it is readable, reserved whole, so a splice
// moves exactly what was reserved. A dst that aligns its writes on records
// until it goes direct (a vless.Conn, see directWriter) is instead given a
// reader that reserves what each read returned, and gets chunks once direct.
func Copy(dst io.Writer, src io.Reader, c Counter) (int64, error) {
	var avail func() (int64, error)
	if _, free := c.(Unlimited); !free {
		avail = readable(src)
	}
	if avail == nil {
		return copyChunks(dst, src, c)
	}
	var total int64
	for {
		if dw, ok := dst.(directWriter); ok && !dw.WritesDirect() {
			rr := &reservingReader{r: src, c: c, dst: dw}
			n, err := dw.ReadFrom(rr)
			total += n
			if err != nil || !rr.direct {
				return total, err
			}
			continue
		}
		k, err := avail()
		if err != nil {
			return total, err
		}
		allow := c.Reserve(min(max(k, 1), DefaultChunk))
		if allow <= 0 {
			return total, ErrBudget
		}
		lr := &io.LimitedReader{R: src, N: allow}
		n, err := copyOnce(dst, lr)
		total += n
		c.Settle(allow, n)
		if err != nil {
			return total, err
		}
		if n < allow {
			return total, nil // the socket held its end: EOF
		}
	}
}

// copyChunks is Copy from a source it cannot watch: each chunk is reserved
// before its first byte.
func copyChunks(dst io.Writer, src io.Reader, c Counter) (int64, error) {
	var total int64
	for {
		allow := c.Reserve(DefaultChunk)
		if allow <= 0 {
			return total, ErrBudget
		}
		lr := &io.LimitedReader{R: src, N: allow}
		n, err := copyOnce(dst, lr)
		total += n
		c.Settle(allow, n)
		if err != nil {
			return total, err
		}
		if n == 0 || lr.N > 0 {
			// The source ended inside the chunk: EOF.
			return total, nil
		}
	}
}

// directWriter is a destination that copies through its own buffer, aligned
// on records, until it reports that its writes went direct (a vless.Conn
// with Vision).
type directWriter interface {
	io.ReaderFrom
	WritesDirect() bool
}

// reservingReader reserves on c the bytes each read returned (they are in
// hand), and ends with io.EOF, direct set, once dst went direct, so that
// Copy switches to chunks the kernel can splice.
type reservingReader struct {
	r      io.Reader
	c      Counter
	dst    directWriter
	direct bool
}

func (rr *reservingReader) Read(p []byte) (int, error) {
	if rr.dst.WritesDirect() {
		rr.direct = true
		return 0, io.EOF
	}
	n, err := rr.r.Read(p)
	if n > 0 {
		g := ReserveAll(rr.c, int64(n))
		rr.c.Settle(g, g)
		if g < int64(n) {
			return int(g), ErrBudget
		}
	}
	return n, err
}

// readable returns a function that waits until src, a socket, is readable
// and returns how many bytes it holds (0 at its end or on an error, which
// the read that follows reports), or nil when src is not a socket or the
// platform cannot tell.
func readable(src io.Reader) func() (int64, error) {
	sc, ok := src.(syscall.Conn)
	if !ok || !canWait {
		return nil
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return nil
	}
	return func() (int64, error) { return waitReadable(rc) }
}

// CopyWriterTo is Copy for a source whose fast path is its own WriteTo rather
// than a reader dst.ReadFrom could splice from: a vless.Conn, which hands its
// raw socket to dst.ReadFrom once Vision went direct, and a LimitedReader
// would hide that. src.WriteTo writes into a writer that reserves each buffer
// it is given before passing it on (and ends the copy with ErrBudget, having
// passed what was granted, when the budget runs out), and whose ReadFrom is
// Copy: the socket still splices, a chunk at a time.
func CopyWriterTo(dst io.Writer, src io.WriterTo, c Counter) (int64, error) {
	return src.WriteTo(&budgetWriter{w: dst, c: c})
}

// budgetWriter passes writes to w as c admits them.
type budgetWriter struct {
	w io.Writer
	c Counter
}

func (bw *budgetWriter) Write(p []byte) (int, error) {
	g := ReserveAll(bw.c, int64(len(p)))
	if g == 0 && len(p) > 0 {
		return 0, ErrBudget
	}
	n, err := bw.w.Write(p[:g])
	bw.c.Settle(g, int64(n))
	if err == nil && n < len(p) {
		err = ErrBudget
	}
	return n, err
}

func (bw *budgetWriter) ReadFrom(r io.Reader) (int64, error) { return Copy(bw.w, r, bw.c) }

func copyOnce(dst io.Writer, lr *io.LimitedReader) (int64, error) {
	if rf, ok := dst.(io.ReaderFrom); ok {
		return rf.ReadFrom(lr)
	}
	return io.Copy(dst, lr)
}

// Conn wraps a net.Conn and counts bytes read (In) and written (Out) while
// keeping ReadFrom/WriteTo on the fast path of the wrapped conn.
type Conn struct {
	net.Conn
	In, Out Counter
}

// NewConn wraps c. Nil counters count nothing.
func NewConn(c net.Conn, in, out Counter) *Conn {
	if in == nil {
		in = Unlimited{}
	}
	if out == nil {
		out = Unlimited{}
	}
	return &Conn{Conn: c, In: in, Out: out}
}

// Read reads from the conn and admits what it read on In: the bytes are in
// hand, so the reservation is exact. Bytes In does not grant are dropped, and
// Read returns ErrBudget with those it did.
func (c *Conn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if n > 0 {
		g := ReserveAll(c.In, int64(n))
		c.In.Settle(g, g)
		if g < int64(n) {
			return int(g), ErrBudget
		}
	}
	return n, err
}

// Write writes p as Out admits it, reserving before each write.
func (c *Conn) Write(p []byte) (int, error) {
	var done int
	for len(p) > 0 {
		g := c.Out.Reserve(int64(len(p)))
		if g <= 0 {
			return done, ErrBudget
		}
		n, err := c.Conn.Write(p[:g])
		c.Out.Settle(g, int64(n))
		done += n
		if err != nil {
			return done, err
		}
		p = p[n:]
	}
	return done, nil
}

// ReadFrom writes everything from r to the connection, counted on Out.
func (c *Conn) ReadFrom(r io.Reader) (int64, error) { return Copy(c.Conn, r, c.Out) }

// WriteTo copies everything read from the connection to w, counted on In.
func (c *Conn) WriteTo(w io.Writer) (int64, error) { return Copy(w, c.Conn, c.In) }

// CloseWrite half-closes the wrapped conn when it supports it.
func (c *Conn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return c.Conn.Close()
}

// SetLinger forwards to the wrapped conn when it supports it.
func (c *Conn) SetLinger(sec int) error {
	if l, ok := c.Conn.(interface{ SetLinger(int) error }); ok {
		return l.SetLinger(sec)
	}
	return nil
}

// Unwrap returns the wrapped conn.
func (c *Conn) Unwrap() net.Conn { return c.Conn }
