package mux

import "sync"

// Every buffer that stream data passes through comes from one of two pools and goes back
// once its bytes are written (to a conn) or read (by a stream's Read), so that an idle
// session holds none. Buffers travel as *[]byte whose slice starts at the buffer's start;
// its length is how much of it is in use, its capacity tells which pool it returns to.
const (
	// smallBuf holds one frame of at most 8 KiB of data with its header, or a datagram one
	// byte over the 8 KiB limit (to tell those apart) behind room for a header.
	smallBuf = chunkSize + 64
	// largeBuf holds 64 KiB of stream data as 8 frames with their headers, behind a New
	// frame's metadata.
	largeBuf = 64<<10 + maxMeta
)

var (
	smallPool = sync.Pool{New: func() any { b := make([]byte, smallBuf); return &b }}
	largePool = sync.Pool{New: func() any { b := make([]byte, largeBuf); return &b }}
)

// getBuf returns a buffer of length n from the smallest pool whose buffers hold n bytes,
// or a new one if none does.
func getBuf(n int) *[]byte {
	var b *[]byte
	switch {
	case n <= smallBuf:
		b = smallPool.Get().(*[]byte)
	case n <= largeBuf:
		b = largePool.Get().(*[]byte)
	default:
		s := make([]byte, n)
		return &s
	}
	*b = (*b)[:n]
	return b
}

// putBuf returns a buffer from getBuf (or nil) to its pool; the caller must not use it
// after.
func putBuf(b *[]byte) {
	if b == nil {
		return
	}
	switch cap(*b) {
	case smallBuf:
		smallPool.Put(b)
	case largeBuf:
		largePool.Put(b)
	}
}
