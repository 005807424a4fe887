package bidi_test

import (
	"bytes"
	"errors"
	"io"
	"testing"

	"github.com/burrow-vpn/burrow/internal/bidi"
)

// chunks is a source that returns its chunks one per Read (as much of one
// as fits) and records the size of each buffer it is given.
type chunks struct {
	left  [][]byte
	sizes []int
}

func (c *chunks) Read(p []byte) (int, error) {
	c.sizes = append(c.sizes, len(p))
	if len(c.left) == 0 {
		return 0, io.EOF
	}
	n := copy(p, c.left[0])
	if c.left[0] = c.left[0][n:]; len(c.left[0]) == 0 {
		c.left = c.left[1:]
	}
	return n, nil
}

// TestCopyLean: small reads use the small buffer, a read that fills it
// switches to the large one, a read that does not fill the large one
// switches back; every byte arrives and is counted.
func TestCopyLean(t *testing.T) {
	big := bytes.Repeat([]byte{7}, 3*bidi.BurstRead)
	src := &chunks{left: [][]byte{[]byte("hello"), big, []byte("bye")}}
	var dst bytes.Buffer
	var counted int64
	n, err := bidi.CopyLean(&dst, src, func(k int64) { counted += k })
	want := 5 + len(big) + 3
	if err != nil || n != int64(want) || counted != n || dst.Len() != want {
		t.Fatalf("CopyLean = %d, %v, counted %d, copied %d; want %d, nil, %d, %d", n, err, counted, dst.Len(), want, want, want)
	}
	// hello (small), big: a full small read, then large reads until the
	// remainder does not fill one, bye and EOF in the small one again.
	wantSizes := []int{bidi.IdleRead, bidi.IdleRead, bidi.BurstRead, bidi.BurstRead, bidi.BurstRead, bidi.IdleRead, bidi.IdleRead}
	if len(src.sizes) != len(wantSizes) {
		t.Fatalf("read sizes %v, want %v", src.sizes, wantSizes)
	}
	for i := range wantSizes {
		if src.sizes[i] != wantSizes[i] {
			t.Fatalf("read sizes %v, want %v", src.sizes, wantSizes)
		}
	}
}

type failWriter struct{ n int }

func (w failWriter) Write(p []byte) (int, error) { return min(w.n, len(p)), nil }

// TestCopyLeanErrors: a short write is an error, and a read error other
// than EOF is returned.
func TestCopyLeanErrors(t *testing.T) {
	src := &chunks{left: [][]byte{[]byte("hello")}}
	if n, err := bidi.CopyLean(failWriter{2}, src, nil); n != 2 || !errors.Is(err, io.ErrShortWrite) {
		t.Errorf("CopyLean to a short writer = %d, %v; want 2, io.ErrShortWrite", n, err)
	}
	boom := errors.New("boom")
	r := io.MultiReader(bytes.NewReader([]byte("ab")), errReader{boom})
	var dst bytes.Buffer
	if n, err := bidi.CopyLean(&dst, r, nil); n != 2 || !errors.Is(err, boom) {
		t.Errorf("CopyLean from a failing reader = %d, %v; want 2, boom", n, err)
	}
}

type errReader struct{ err error }

func (r errReader) Read([]byte) (int, error) { return 0, r.err }
