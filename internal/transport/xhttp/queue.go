package xhttp

import "sync"

// A session's download, its upload and a client's downloaded bytes are
// queues that grow at one end and shrink at the other. Kept in one slice,
// every append past the capacity of what the consumed head left copies the
// whole queue (up to RetainMax per append at full speed), and the arrays it
// drops wake the scavenger. byteQueue keeps the bytes in blocks instead:
// an append copies only what it appends, and a consumed block is given back.
//
// Blocks start small and double up to queueBlock, so a queue that holds a
// few hundred bytes (an idle session's last answer) costs about that much;
// full-size blocks come from a pool.
const (
	queueBlock    = 16 << 10
	queueMinBlock = 512
)

var queuePool = sync.Pool{New: func() any { return new([queueBlock]byte) }}

// byteQueue is a FIFO of bytes. The zero value is empty. Not safe for
// concurrent use.
type byteQueue struct {
	blocks [][]byte // each filled to len; only the last one has room left
	head   int      // bytes of blocks[0] already consumed
	n      int      // bytes held
}

// Len returns the bytes held.
func (q *byteQueue) Len() int { return q.n }

// Write appends p.
func (q *byteQueue) Write(p []byte) {
	for len(p) > 0 {
		if len(q.blocks) > 0 {
			last := &q.blocks[len(q.blocks)-1]
			if room := cap(*last) - len(*last); room > 0 {
				k := min(room, len(p))
				*last = append(*last, p[:k]...)
				q.n += k
				p = p[k:]
				continue
			}
		}
		q.blocks = append(q.blocks, q.newBlock(len(p)))
	}
}

// newBlock returns an empty block for a write of want bytes: twice the
// last block, at least queueMinBlock and what fits want, at most
// queueBlock.
func (q *byteQueue) newBlock(want int) []byte {
	size := queueMinBlock
	if len(q.blocks) > 0 {
		size = 2 * cap(q.blocks[len(q.blocks)-1])
	}
	for size < want && size < queueBlock {
		size *= 2
	}
	if size >= queueBlock {
		return queuePool.Get().(*[queueBlock]byte)[:0]
	}
	return make([]byte, 0, size)
}

// CopyAt copies bytes from offset off (0 is the first byte held) into p
// and returns how many.
func (q *byteQueue) CopyAt(p []byte, off int) int {
	if off < 0 || off >= q.n {
		return 0
	}
	off += q.head
	n := 0
	for _, b := range q.blocks {
		if off >= len(b) {
			off -= len(b)
			continue
		}
		k := copy(p[n:], b[off:])
		n += k
		off = 0
		if n == len(p) {
			break
		}
	}
	return n
}

// Discard drops the first n bytes held (all of them if n is larger).
func (q *byteQueue) Discard(n int) {
	n = min(n, q.n)
	q.n -= n
	for n > 0 {
		b := q.blocks[0]
		k := min(n, len(b)-q.head)
		q.head += k
		n -= k
		if q.head == len(b) && (len(q.blocks) > 1 || q.n == 0) {
			q.drop()
		}
	}
	if q.n == 0 {
		q.Reset()
	}
}

// drop gives back the first block.
func (q *byteQueue) drop() {
	b := q.blocks[0]
	if cap(b) == queueBlock {
		queuePool.Put((*[queueBlock]byte)(b[:queueBlock]))
	}
	q.blocks[0] = nil
	q.blocks = q.blocks[1:]
	q.head = 0
	if len(q.blocks) == 0 {
		q.blocks = nil
	}
}

// Shrink moves the bytes held into one small block when there are at most
// limit of them and they sit in full-size blocks: the unacknowledged tail
// of a download that went idle would otherwise keep one or two pooled
// blocks for a few hundred bytes.
func (q *byteQueue) Shrink(limit int) {
	if q.n == 0 || q.n > limit || len(q.blocks) == 1 && cap(q.blocks[0]) < queueBlock {
		return
	}
	size := queueMinBlock
	for size < q.n {
		size *= 2
	}
	b := make([]byte, q.n, size)
	q.CopyAt(b, 0)
	q.Reset()
	q.blocks, q.n = [][]byte{b}, len(b)
}

// Read moves up to len(p) bytes from the front of the queue into p.
func (q *byteQueue) Read(p []byte) int {
	n := q.CopyAt(p, 0)
	q.Discard(n)
	return n
}

// Reset empties the queue and gives back its blocks.
func (q *byteQueue) Reset() {
	for len(q.blocks) > 0 {
		q.drop()
	}
	q.head, q.n = 0, 0
}

// chunkMax bounds one download write; the write's bytes are copied out of
// the session (whose blocks may be given back once acknowledged) into a
// buffer of chunkPool, taken only while there is something to write.
const chunkMax = 64 << 10

var chunkPool = sync.Pool{New: func() any { return new([chunkMax]byte) }}

// releaseChunk gives buf back after a download write that returned err.
// HTTP/2's server copies a handler's write into frames on its own
// goroutine; a write that failed (the stream reset, the connection gone)
// may return while that copy still reads buf, so buf is then left to the
// collector rather than handed to another session.
func releaseChunk(buf *[chunkMax]byte, err error) {
	if err == nil {
		chunkPool.Put(buf)
	}
}
