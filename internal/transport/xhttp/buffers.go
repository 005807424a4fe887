package xhttp

import (
	"strings"
	"sync"
)

// An idle session spends its life blocked in Reads: the client's download
// loop in the response body, the server's stream-up copy in the request
// body. What those Reads are given is what every idle session costs, so
// they read into a small buffer while reads are small and take a large,
// pooled one only while data flows: a read that fills the small one
// starts a burst, one that returns less than burstEnd ends it.
//
// A download's large buffer is larger (downloadRead) because HTTP/2 gives
// flow-control credit back per Read of a response body: a WINDOW_UPDATE
// frame, a TLS record and a system call each time 4 KiB or more were read.
// Reads of up to 256 KiB instead of 32 KiB cut a relayed download's CPU at
// the relay and the exit (docs/relay.md). An upload's credit goes the other
// way, from the server, so the server's copy keeps the smaller one.
const (
	idleRead     = 1 << 10
	burstRead    = 32 << 10
	downloadRead = 256 << 10
	burstEnd     = 32 << 10
)

var (
	burstPool    = sync.Pool{New: func() any { return new([burstRead]byte) }}
	downloadPool = sync.Pool{New: func() any { return new([downloadRead]byte) }}
)

// readBuf is the buffer of one read loop. Not safe for concurrent use.
type readBuf struct {
	download bool // the large buffer is downloadRead bytes, else burstRead
	small    []byte
	large    []byte
	held     any // the pooled array behind large
}

// get returns the buffer for the next Read.
func (b *readBuf) get() []byte {
	if b.large != nil {
		return b.large
	}
	if b.small == nil {
		b.small = make([]byte, idleRead)
	}
	return b.small
}

// adapt picks the buffer for the next Read from the n bytes the last one
// returned: a full small buffer means a burst, a large one given less than
// burstEnd means the reader caught up and the next Read will likely wait.
// Call it only once done with the bytes read.
func (b *readBuf) adapt(n int) {
	switch {
	case b.large == nil && n == len(b.small):
		if b.download {
			a := downloadPool.Get().(*[downloadRead]byte)
			b.held, b.large = a, a[:]
		} else {
			a := burstPool.Get().(*[burstRead]byte)
			b.held, b.large = a, a[:]
		}
	case b.large != nil && n < burstEnd:
		b.release()
	}
}

// release gives the large buffer back.
func (b *readBuf) release() {
	if b.large == nil {
		return
	}
	if b.download {
		downloadPool.Put(b.held)
	} else {
		burstPool.Put(b.held)
	}
	b.held, b.large = nil, nil
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
