package vless

import "sync"

// Buffer sizes of ReadFrom and WriteTo before Vision goes direct. An idle proxied conn spends
// its life blocked in one Read per direction, so what that Read is given is what each idle
// conn costs: a small buffer while reads are small, a large one only while data flows.
const (
	smallCopy  = 2 << 10
	largeCopy  = 32 << 10
	minScratch = 1 << 10 // readVision reads padded bytes into p itself when p is at least this long
)

// Vision's own buffers, taken for one Read or Write and given back: scratchSize holds the
// plaintext of any TLS record (what one Read of the outer conn returns); a padded write's blocks
// are pooled unless a large write made them bigger than maxPooledBlocks.
const (
	scratchSize     = 16 << 10
	maxPooledBlocks = 64 << 10
)

var (
	smallPool   = sync.Pool{New: func() any { return new([smallCopy]byte) }}
	largePool   = sync.Pool{New: func() any { return new([largeCopy]byte) }}
	scratchPool = sync.Pool{New: func() any { return new([scratchSize]byte) }}
	blockPool   = sync.Pool{New: func() any { return new([]byte) }}
)

// copyBuf is the buffer of one ReadFrom or WriteTo call: pooled, small until a read fills it,
// large until a read returns less than the small size; always large if fixed. Not safe for
// concurrent use.
type copyBuf struct {
	small *[smallCopy]byte
	large *[largeCopy]byte
	fixed bool // keep one large buffer of its own, not pooled (see below)
}

// UDP conns keep a fresh 32 KiB buffer of their own per call: each read is one datagram,
// which a small buffer would cut. Every other conn (Vision, XHTTP streams, TCP without a
// flow) adapts: 2,000 idle XHTTP sessions held 32 KiB per direction per side before, about
// 130 KiB of RSS a session. (XHTTP's Write copies what it is given, so a pooled buffer may
// go back to its pool once Write returns.)

// startLarge makes the next read use the large buffer.
func (b *copyBuf) startLarge() {
	switch {
	case b.large != nil:
	case b.fixed:
		b.large = new([largeCopy]byte)
	default:
		b.large = largePool.Get().(*[largeCopy]byte)
	}
}

// get returns the buffer for the next read.
func (b *copyBuf) get() []byte {
	if b.fixed {
		b.startLarge()
	}
	if b.large != nil {
		return b.large[:]
	}
	if b.small == nil {
		b.small = smallPool.Get().(*[smallCopy]byte)
	}
	return b.small[:]
}

// adapt picks the size for the next read from the n bytes the last one returned. It may
// return the current buffer to its pool: call it only once done with that buffer.
func (b *copyBuf) adapt(n int) {
	switch {
	case b.fixed:
	case b.large == nil && n >= smallCopy:
		b.large = largePool.Get().(*[largeCopy]byte)
	case b.large != nil && n < smallCopy:
		largePool.Put(b.large)
		b.large = nil
	}
}

// keepLarge switches to the large buffer (which holds any TLS record), keeping the first keep
// bytes of the current one.
func (b *copyBuf) keepLarge(keep int) {
	if b.large != nil {
		return
	}
	b.large = largePool.Get().(*[largeCopy]byte)
	if b.small != nil {
		copy(b.large[:], b.small[:keep])
	}
}

// release returns the buffers to their pools.
func (b *copyBuf) release() {
	if b.small != nil {
		smallPool.Put(b.small)
		b.small = nil
	}
	if b.large != nil {
		if !b.fixed {
			largePool.Put(b.large)
		}
		b.large = nil
	}
}
