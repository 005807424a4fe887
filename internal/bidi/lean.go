package bidi

import (
	"io"
	"sync"
)

// Buffer sizes of CopyLean.
const (
	// IdleRead is what CopyLean reads into while reads are small: what a
	// copy blocked in Read — an idle proxied connection — holds.
	IdleRead = 1 << 10
	// BurstRead is the pooled buffer CopyLean reads into while data flows
	// (io.Copy's size).
	BurstRead = 32 << 10
)

var burstPool = sync.Pool{New: func() any { return new([BurstRead]byte) }}

// CopyLean copies src to dst until src ends (nil) or a read or write fails
// (that error), as io.Copy does, and calls count, if not nil, with the bytes
// of each write that succeeded. Unlike io.Copy it allocates no 32 KiB
// buffer for the life of the copy: it reads into IdleRead bytes while reads
// are small, takes a pooled BurstRead buffer when a read fills the small
// one, and gives it back when a read does not fill it (the source caught
// up; the next read will likely wait). It never uses dst's ReadFrom or
// src's WriteTo: use it where those fast paths do not apply anyway (a
// stream of another transport on either side), for copies that spend most
// of their life idle.
func CopyLean(dst io.Writer, src io.Reader, count func(int64)) (int64, error) {
	small := make([]byte, IdleRead)
	var large *[BurstRead]byte
	defer func() {
		if large != nil {
			burstPool.Put(large)
		}
	}()
	var total int64
	for {
		buf := small
		if large != nil {
			buf = large[:]
		}
		n, err := src.Read(buf)
		if n > 0 {
			w, werr := dst.Write(buf[:n])
			total += int64(w)
			if w > 0 && count != nil {
				count(int64(w))
			}
			if werr == nil && w < n {
				werr = io.ErrShortWrite
			}
			if werr != nil {
				return total, werr
			}
		}
		switch {
		case large == nil && n == len(small):
			large = burstPool.Get().(*[BurstRead]byte)
		case large != nil && n < len(large):
			burstPool.Put(large)
			large = nil
		}
		if err == io.EOF {
			return total, nil
		}
		if err != nil {
			return total, err
		}
	}
}
