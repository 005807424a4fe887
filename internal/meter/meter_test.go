package meter

import (
	"bytes"
	"crypto/rand"
	"errors"
	"io"
	"net"
	"os"
	"sync/atomic"
	"testing"
	"time"
)

// budget grants bytes from left, at most 64 KiB at a time, as a
// quota does; added counts what moved.
type budget struct {
	left  atomic.Int64
	added atomic.Int64
}

func (b *budget) Reserve(n int64) int64 {
	g := min(n, max(b.left.Load(), 0), 64<<10)
	b.left.Add(-g)
	return g
}

func (b *budget) Settle(reserved, moved int64) {
	b.left.Add(reserved - moved)
	b.added.Add(moved)
}

func tcpPair(t testing.TB) (*net.TCPConn, *net.TCPConn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	ch := make(chan net.Conn, 1)
	go func() { c, _ := ln.Accept(); ch <- c }()
	a, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	b := <-ch
	t.Cleanup(func() { a.Close(); b.Close() })
	return a.(*net.TCPConn), b.(*net.TCPConn)
}

func TestCopyCountsAndStopsAtBudget(t *testing.T) {
	data := make([]byte, 3*DefaultChunk+123)
	rand.Read(data)
	tests := []struct {
		name   string
		budget int64
		want   int64
		err    error
	}{
		{"unlimited", 1 << 40, int64(len(data)), nil},
		{"budget inside data", DefaultChunk + 7, DefaultChunk + 7, ErrBudget},
		{"zero budget", 0, 0, ErrBudget},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := &budget{}
			b.left.Store(tt.budget)
			var dst bytes.Buffer
			n, err := Copy(&dst, bytes.NewReader(data), b)
			if n != tt.want || !errors.Is(err, tt.err) {
				t.Fatalf("Copy = %d, %v; want %d, %v", n, err, tt.want, tt.err)
			}
			if b.added.Load() != tt.want || !bytes.Equal(dst.Bytes(), data[:tt.want]) {
				t.Fatalf("counted %d bytes, copied %d; want %d matching", b.added.Load(), dst.Len(), tt.want)
			}
		})
	}
}

// spy is a counter that records whether Reserve was called.
type spy struct{ reserved atomic.Bool }

func (s *spy) Reserve(n int64) int64 { s.reserved.Store(true); return n }
func (s *spy) Settle(_, _ int64)     {}

// An idle socket holds no reservation: Copy waits for data before it
// reserves a chunk, so a copy that times out waiting never reserved.
func TestCopyReservesOnlyOnceDataArrives(t *testing.T) {
	_, a2 := tcpPair(t)
	c := &spy{}
	a2.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
	n, err := Copy(io.Discard, a2, c)
	if n != 0 || !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("Copy from an idle socket = %d, %v; want 0, deadline exceeded", n, err)
	}
	if c.reserved.Load() {
		t.Error("Copy reserved a chunk while its source had no data")
	}
}

func TestConnOverTCP(t *testing.T) {
	// src -> (a1 a2) -> dst: a meter.Conn around a2 relays to b1 with ReadFrom/WriteTo.
	a1, a2 := tcpPair(t)
	b1, b2 := tcpPair(t)
	var in, out atomic.Int64
	m := NewConn(a2, Unlimited{AddFunc: func(n int64) { in.Add(n) }}, Unlimited{AddFunc: func(n int64) { out.Add(n) }})
	data := make([]byte, 4<<20)
	rand.Read(data)
	go func() { a1.Write(data); a1.CloseWrite() }()
	done := make(chan error, 1)
	go func() { _, err := m.WriteTo(b1); b1.CloseWrite(); done <- err }()
	got, err := io.ReadAll(b2)
	if err != nil || <-done != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, data) || in.Load() != int64(len(data)) {
		t.Fatalf("relayed %d bytes (counted %d), want %d", len(got), in.Load(), len(data))
	}
	// And the other way: ReadFrom counts on Out.
	go func() { b2.Write(data[:1<<20]); b2.Close() }()
	go func() { m.ReadFrom(b1); m.CloseWrite() }()
	got, _ = io.ReadAll(a1)
	if len(got) != 1<<20 || out.Load() != 1<<20 {
		t.Fatalf("ReadFrom moved %d (counted %d), want %d", len(got), out.Load(), 1<<20)
	}
}

// bufferedSource is a WriterTo that copies through a 32 KiB buffer, like a
// vless.Conn before Vision goes direct.
type bufferedSource struct{ r io.Reader }

func (s bufferedSource) Read(p []byte) (int, error) { return s.r.Read(p) }
func (s bufferedSource) WriteTo(w io.Writer) (int64, error) {
	buf := make([]byte, 32<<10)
	var total int64
	for {
		n, err := s.r.Read(buf)
		if n > 0 {
			m, werr := w.Write(buf[:n])
			total += int64(m)
			if werr != nil {
				return total, werr
			}
		}
		if err == io.EOF {
			return total, nil
		}
		if err != nil {
			return total, err
		}
	}
}

// socketSource is a WriterTo that hands its TCP conn over, like a vless.Conn
// after Vision went direct: through (*net.TCPConn).WriteTo, which reaches
// w.ReadFrom with the socket and wraps the error w returns in a *net.OpError.
type socketSource struct{ *net.TCPConn }

func (s socketSource) WriteTo(w io.Writer) (int64, error) { return s.TCPConn.WriteTo(w) }

func TestCopyWriterTo(t *testing.T) {
	data := make([]byte, 3*DefaultChunk+123)
	rand.Read(data)
	tests := []struct {
		name   string
		budget int64
		want   int64
		err    error
	}{
		{"unlimited", 1 << 40, int64(len(data)), nil},
		{"budget inside data", DefaultChunk + 7, DefaultChunk + 7, ErrBudget},
		{"zero budget", 0, 0, ErrBudget},
	}
	for _, tt := range tests {
		for _, kind := range []string{"buffered", "socket"} {
			t.Run(tt.name+"/"+kind, func(t *testing.T) {
				b := &budget{}
				b.left.Store(tt.budget)
				a1, a2 := tcpPair(t)
				go func() { a1.Write(data); a1.CloseWrite() }()
				var src io.WriterTo = bufferedSource{a2}
				if kind == "socket" {
					src = socketSource{a2}
				}
				b1, b2 := tcpPair(t)
				got := make(chan []byte, 1)
				go func() { d, _ := io.ReadAll(b2); got <- d }()
				n, err := CopyWriterTo(b1, src, b)
				b1.CloseWrite()
				d := <-got
				if n != tt.want || !errors.Is(err, tt.err) {
					t.Fatalf("CopyWriterTo = %d, %v; want %d, %v", n, err, tt.want, tt.err)
				}
				if left := b.left.Load(); left != tt.budget-tt.want {
					t.Fatalf("budget left %d, want %d (every grant settled)", left, tt.budget-tt.want)
				}
				if b.added.Load() != n || !bytes.Equal(d, data[:n]) {
					t.Fatalf("counted %d bytes, copied %d; want %d matching", b.added.Load(), len(d), n)
				}
			})
		}
	}
}
