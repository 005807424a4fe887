// Package meter counts the bytes that cross a connection without taking away
// the kernel's fast path.
//
// Wrapping a *net.TCPConn in an ordinary counting type hides its ReadFrom and
// WriteTo methods, so io.Copy falls back to a userspace buffer and Linux can
// no longer splice. The types here instead move data in bounded chunks through
// io.LimitedReader, which net.TCPConn.ReadFrom still splices, and count each
// chunk as it completes. A chunk is also the unit of admission: before each
// one the Budget callback says how many bytes may still pass, which is how a
// quota stops a transfer within one chunk of its limit.
package meter

import (
	"errors"
	"io"
	"net"
)

// DefaultChunk is the most bytes moved between two counts.
const DefaultChunk = 256 << 10

// ErrBudget is returned when the budget callback allows no more bytes.
var ErrBudget = errors.New("meter: byte budget exhausted")

// Counter receives byte counts. Implementations must be safe for concurrent use.
type Counter interface {
	// Budget returns how many more bytes may pass (<= 0 means stop). It is
	// called before each chunk.
	Budget() int64
	// Add records n bytes that passed.
	Add(n int64)
}

// Unlimited is a Counter body for callers that only count.
type Unlimited struct{ AddFunc func(int64) }

func (u Unlimited) Budget() int64 { return 1 << 62 }
func (u Unlimited) Add(n int64) {
	if u.AddFunc != nil {
		u.AddFunc(n)
	}
}

// Copy moves bytes from src to dst until EOF or error, counting them on c.
// It prefers dst.ReadFrom (so a *net.TCPConn destination can splice from a
// *net.TCPConn source) and otherwise src.WriteTo, one chunk at a time.
func Copy(dst io.Writer, src io.Reader, c Counter) (int64, error) {
	var total int64
	for {
		allow := c.Budget()
		if allow <= 0 {
			return total, ErrBudget
		}
		if allow > DefaultChunk {
			allow = DefaultChunk
		}
		lr := &io.LimitedReader{R: src, N: allow}
		n, err := copyOnce(dst, lr)
		total += n
		if n > 0 {
			c.Add(n)
		}
		if err != nil {
			return total, err
		}
		if n == 0 || lr.N > 0 {
			// The source ended inside the chunk: EOF.
			return total, nil
		}
	}
}

// CopyWriterTo is Copy for a source whose fast path is its own WriteTo rather
// than a reader dst.ReadFrom could splice from: a vless.Conn, which hands its
// raw socket to dst.ReadFrom once Vision went direct, and a LimitedReader
// would hide that. Each chunk is one src.WriteTo call into a writer that ends
// the call when the chunk is full: its ReadFrom passes dst.ReadFrom an
// io.LimitedReader (so the socket still splices, stopping exactly at the
// chunk), and its Write passes each buffer on whole, so a chunk copied through
// buffers may run over by at most one buffer (≤ 32 KiB) — a quota still stops
// within one chunk.
func CopyWriterTo(dst io.Writer, src io.WriterTo, c Counter) (int64, error) {
	var total int64
	for {
		allow := c.Budget()
		if allow <= 0 {
			return total, ErrBudget
		}
		if allow > DefaultChunk {
			allow = DefaultChunk
		}
		cw := &chunkWriter{w: dst, left: allow}
		n, err := src.WriteTo(cw)
		total += n
		if n > 0 {
			c.Add(n)
		}
		switch {
		case errors.Is(err, errChunkFull): // net wraps it on the way: "writeto tcp ...: chunk full"
		case err != nil:
			return total, err
		default: // WriteTo returned at EOF
			return total, nil
		}
	}
}

// errChunkFull ends a WriteTo call of CopyWriterTo when its chunk is full.
var errChunkFull = errors.New("meter: chunk full")

// chunkWriter passes writes to w until left bytes have passed, then fails
// them with errChunkFull (after passing the one that filled the chunk).
type chunkWriter struct {
	w    io.Writer
	left int64
}

func (cw *chunkWriter) Write(p []byte) (int, error) {
	if cw.left <= 0 {
		return 0, errChunkFull
	}
	n, err := cw.w.Write(p)
	cw.left -= int64(n)
	if err == nil && cw.left <= 0 {
		err = errChunkFull
	}
	return n, err
}

func (cw *chunkWriter) ReadFrom(r io.Reader) (int64, error) {
	if cw.left <= 0 {
		return 0, errChunkFull
	}
	lr := &io.LimitedReader{R: r, N: cw.left}
	var n int64
	var err error
	if rf, ok := cw.w.(io.ReaderFrom); ok {
		n, err = rf.ReadFrom(lr)
	} else {
		n, err = io.Copy(struct{ io.Writer }{cw.w}, lr)
	}
	cw.left -= n
	if err == nil && cw.left <= 0 {
		err = errChunkFull
	}
	return n, err
}

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

func (c *Conn) Read(p []byte) (int, error) {
	if b := c.In.Budget(); b <= 0 {
		return 0, ErrBudget
	} else if int64(len(p)) > b {
		p = p[:b]
	}
	n, err := c.Conn.Read(p)
	if n > 0 {
		c.In.Add(int64(n))
	}
	return n, err
}

func (c *Conn) Write(p []byte) (int, error) {
	var done int
	for len(p) > 0 {
		b := c.Out.Budget()
		if b <= 0 {
			return done, ErrBudget
		}
		chunk := p
		if int64(len(chunk)) > b {
			chunk = chunk[:b]
		}
		n, err := c.Conn.Write(chunk)
		if n > 0 {
			c.Out.Add(int64(n))
		}
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
