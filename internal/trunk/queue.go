package trunk

import "sync"

// chunkPool holds the buffers received bytes wait in.
var chunkPool = sync.Pool{New: func() any { return new([MaxPayload]byte) }}

// recvQueue holds a stream's received bytes until they are read: in
// pooled chunks, small frames packed together, so a stream holds about
// what it has unread (at most its window) and an idle one nothing.
type recvQueue struct {
	chunks []*[MaxPayload]byte
	head   int // read offset in chunks[0]
	tail   int // bytes used in the last chunk
	n      int // bytes queued
}

func (q *recvQueue) Len() int { return q.n }

// Write queues a copy of p.
func (q *recvQueue) Write(p []byte) {
	q.n += len(p)
	for len(p) > 0 {
		if len(q.chunks) == 0 || q.tail == MaxPayload {
			q.chunks = append(q.chunks, chunkPool.Get().(*[MaxPayload]byte))
			q.tail = 0
		}
		k := copy(q.chunks[len(q.chunks)-1][q.tail:], p)
		q.tail += k
		p = p[k:]
	}
}

// Read moves queued bytes into p.
func (q *recvQueue) Read(p []byte) int {
	n := 0
	for n < len(p) && q.n > 0 {
		end := MaxPayload
		if len(q.chunks) == 1 {
			end = q.tail
		}
		k := copy(p[n:], q.chunks[0][q.head:end])
		n += k
		q.n -= k
		q.head += k
		if q.head == end {
			q.drop()
		}
	}
	return n
}

// drop gives the first chunk back.
func (q *recvQueue) drop() {
	chunkPool.Put(q.chunks[0])
	q.chunks[0] = nil
	q.chunks = q.chunks[1:]
	q.head = 0
	if len(q.chunks) == 0 {
		q.chunks, q.tail = nil, 0
	}
}

// Reset gives every chunk back.
func (q *recvQueue) Reset() {
	for len(q.chunks) > 0 {
		q.drop()
	}
	q.n = 0
}
