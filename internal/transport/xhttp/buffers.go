package xhttp

import (
	"strings"
	"sync"
)

// An idle session spends its life blocked in Reads: the client's download
// loop in the response body, the server's stream-up copy in the request
// body. What those Reads are given is what every idle session costs, so
// they read into a small buffer while reads are small and take a large,
// pooled one only while data flows. The large one is large because HTTP/2
// gives flow-control credit back per Read of a response body (a
// WINDOW_UPDATE frame, a TLS record and a system call each time 4 KiB or
// more were read): reads of up to 256 KiB instead of 32 KiB cut a relayed
// download's CPU by a tenth at the relay and the exit (docs/relay.md).
const (
	idleRead  = 1 << 10
	burstRead = 256 << 10
)

var burstPool = sync.Pool{New: func() any { return new([burstRead]byte) }}

// readBuf is the buffer of one read loop. Not safe for concurrent use.
type readBuf struct {
	small []byte
	large *[burstRead]byte
}

// get returns the buffer for the next Read.
func (b *readBuf) get() []byte {
	if b.large != nil {
		return b.large[:]
	}
	if b.small == nil {
		b.small = make([]byte, idleRead)
	}
	return b.small
}

// adapt picks the buffer for the next Read from the n bytes the last one
// returned: a full small buffer means a burst, a large one not filled
// means the reader caught up and the next Read will likely wait. Call it
// only once done with the bytes read.
func (b *readBuf) adapt(n int) {
	switch {
	case b.large == nil && n == len(b.small):
		b.large = burstPool.Get().(*[burstRead]byte)
	case b.large != nil && n < len(b.large):
		b.release()
	}
}

// release gives the large buffer back.
func (b *readBuf) release() {
	if b.large != nil {
		burstPool.Put(b.large)
		b.large = nil
	}
}

// xs backs every padding string: slicing it allocates nothing, and the
// headers of long-lived requests and responses share it.
var xs = strings.Repeat("X", 4096)

// padding returns n X's. HPACK's Huffman code gives 'X' 8 bits, so the
// length on the wire is n.
func padding(n int) string {
	if n <= len(xs) {
		return xs[:max(n, 0)]
	}
	return strings.Repeat("X", n)
}
