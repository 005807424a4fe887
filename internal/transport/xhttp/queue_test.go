package xhttp

import (
	"bytes"
	"math/rand/v2"
	"testing"
)

// held returns the capacity of the blocks q holds.
func held(q *byteQueue) int {
	n := 0
	for _, b := range q.blocks {
		n += cap(b)
	}
	return n
}

// TestByteQueueMatchesSlice runs random writes, reads, copies at offsets,
// shrinks and discards against a plain slice doing the same.
func TestByteQueueMatchesSlice(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	var q byteQueue
	var ref []byte
	next := byte(0)
	for step := range 20000 {
		switch op := rng.IntN(5); {
		case op == 0:
			p := make([]byte, rng.IntN(3*queueBlock))
			for i := range p {
				p[i] = next
				next++
			}
			q.Write(p)
			ref = append(ref, p...)
		case op == 1:
			p := make([]byte, rng.IntN(2*queueBlock))
			n := q.Read(p)
			want := min(len(p), len(ref))
			if n != want || !bytes.Equal(p[:n], ref[:n]) {
				t.Fatalf("step %d: Read got %d bytes, want %d (equal: %v)", step, n, want, bytes.Equal(p[:n], ref[:min(n, len(ref))]))
			}
			ref = ref[n:]
		case op == 2:
			off := rng.IntN(len(ref) + 2)
			p := make([]byte, rng.IntN(queueBlock*2)+1)
			n := q.CopyAt(p, off)
			want := max(0, min(len(p), len(ref)-off))
			if n != want || !bytes.Equal(p[:n], ref[min(off, len(ref)):][:n]) {
				t.Fatalf("step %d: CopyAt(%d) got %d bytes, want %d", step, off, n, want)
			}
		case op == 3:
			q.Shrink(rng.IntN(2 << 10))
		default:
			k := rng.IntN(len(ref) + 10)
			q.Discard(k)
			ref = ref[min(k, len(ref)):]
		}
		if q.Len() != len(ref) {
			t.Fatalf("step %d: Len = %d, want %d", step, q.Len(), len(ref))
		}
		// Blocks are full but for the last, and the first one's consumed
		// head is under one block: what is held is the bytes plus at most
		// two blocks.
		if h := held(&q); h > len(ref)+2*queueBlock {
			t.Fatalf("step %d: %d bytes of blocks hold %d bytes", step, h, len(ref))
		}
	}
	q.Reset()
	if q.Len() != 0 || held(&q) != 0 {
		t.Fatalf("after Reset: Len %d, blocks of %d bytes", q.Len(), held(&q))
	}
}

// TestByteQueueSmall checks that a queue holding a few bytes holds a small
// block, not a full one: an idle session's last answer costs about its size.
func TestByteQueueSmall(t *testing.T) {
	var q byteQueue
	q.Write(make([]byte, 300))
	if h := held(&q); h != queueMinBlock {
		t.Errorf("300 bytes held in %d bytes of blocks, want %d", h, queueMinBlock)
	}
	q.Write(make([]byte, 5000))
	if h := held(&q); h > 300+5000+8192 {
		t.Errorf("5300 bytes held in %d bytes of blocks", h)
	}
	q.Discard(5300)
	if h := held(&q); h != 0 {
		t.Errorf("an empty queue holds %d bytes of blocks", h)
	}
}

// TestByteQueueShrink: a small tail left in full-size blocks moves into one
// small block, in order; a larger one stays where it is.
func TestByteQueueShrink(t *testing.T) {
	for _, tail := range []int{300, 1000} {
		for _, spans := range []bool{false, true} { // spans: the tail at another offset
			var q byteQueue
			head := 200 << 10
			if spans {
				head = 13*queueBlock - tail/2 // the tail at another offset in the blocks
			}
			data := make([]byte, head+tail)
			for i := range data {
				data[i] = byte(i * 7)
			}
			q.Write(data)
			q.Discard(head)
			q.Shrink(1 << 10)
			got := make([]byte, tail)
			if n := q.CopyAt(got, 0); n != tail || !bytes.Equal(got, data[head:]) {
				t.Fatalf("tail %d spanning %v: %d bytes after Shrink, or not the same", tail, spans, n)
			}
			if h := held(&q); h > 1024 {
				t.Errorf("tail %d spanning %v: held in %d bytes of blocks, want at most 1024", tail, spans, h)
			}
			q.Write(data[:5000]) // it grows again from the small block
			if q.Len() != tail+5000 {
				t.Errorf("after a write: Len %d, want %d", q.Len(), tail+5000)
			}
		}
	}
	var q byteQueue
	q.Write(make([]byte, 3000))
	before := held(&q)
	q.Shrink(1 << 10)
	if held(&q) != before || q.Len() != 3000 {
		t.Errorf("3000 bytes over the limit: Shrink changed the queue (%d → %d bytes of blocks)", before, held(&q))
	}
}

// BenchmarkByteQueue streams bytes through a queue kept about a window
// full, as a session's download is between acknowledgements.
func BenchmarkByteQueue(b *testing.B) {
	chunk := make([]byte, 16<<10)
	out := make([]byte, 64<<10)
	var q byteQueue
	b.SetBytes(int64(len(chunk)))
	for b.Loop() {
		q.Write(chunk)
		if q.Len() > RetainMax {
			q.Discard(q.CopyAt(out, 0))
		}
	}
}
