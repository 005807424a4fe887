package camo

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"time"

	"github.com/burrow-vpn/burrow/internal/tlshello"
)

// flight reads the client's first flight while forwarding every byte to the
// cover as it arrives, and watches the cover meanwhile: if the cover speaks
// or ends before it has the whole hello, the read is interrupted so the
// connection falls back at once.
type flight struct {
	client net.Conn
	cover  net.Conn
	done   chan struct{} // closed when watchCover returns

	mu        sync.Mutex
	forwarded int    // client bytes handed to the cover (counted before the write)
	coverAt   int    // forwarded when the cover first spoke or ended; -1 before
	coverData []byte // cover bytes read so far
	coverErr  error  // how the cover ended, if it did
	reading   bool   // readHello is still reading
	stopping  bool   // stop called: a deadline error is ours, not the cover's
}

// startFlight starts watching cover. The client read is bounded by timeout.
func startFlight(client net.Conn, cover net.Conn, timeout time.Duration) *flight {
	f := &flight{client: client, cover: cover, done: make(chan struct{}), coverAt: -1, reading: true}
	client.SetReadDeadline(time.Now().Add(timeout))
	go f.watchCover()
	return f
}

func (f *flight) watchCover() {
	defer close(f.done)
	// Most connections end their flight before the cover says a word: take
	// no buffer until it does.
	if err := waitReadable(f.cover); err != nil {
		f.mu.Lock()
		if !(f.stopping && errors.Is(err, os.ErrDeadlineExceeded)) {
			f.endedLocked(err)
			if f.coverAt < 0 {
				f.coverAt = f.forwarded
				if f.reading {
					f.client.SetReadDeadline(time.Now())
				}
			}
		}
		f.mu.Unlock()
		return
	}
	buf := make([]byte, 16<<10)
	for {
		n, err := f.cover.Read(buf)
		f.mu.Lock()
		f.coverData = append(f.coverData, buf[:n]...)
		if err != nil && !(f.stopping && errors.Is(err, os.ErrDeadlineExceeded)) {
			f.endedLocked(err)
		}
		if (n > 0 || f.coverErr != nil) && f.coverAt < 0 {
			f.coverAt = f.forwarded
			if f.reading {
				f.client.SetReadDeadline(time.Now()) // interrupt readHello
			}
		}
		f.mu.Unlock()
		if err != nil {
			return
		}
	}
}

// endedLocked records how the cover ended. A reset stands: the kernel
// reports it once, to whichever call meets it first (a forward's write), and
// the next read only sees the end of the stream.
func (f *flight) endedLocked(err error) {
	if f.coverErr == nil || isReset(err) && !isReset(f.coverErr) {
		f.coverErr = err
	}
}

// readHello reads one ClientHello from the client. all is every byte read
// from the client, all forwarded to the cover, also on error; it may go on
// past the hello (helloLen bytes) if the client sent more at once.
func (f *flight) readHello() (h *tlshello.ClientHello, all []byte, helloLen int, err error) {
	fw := &forwarder{f: f}
	h, raw, err := tlshello.ReadRecords(fw)
	f.mu.Lock()
	f.reading = false
	f.mu.Unlock()
	return h, fw.all, len(raw), err
}

// forwarderChunk is the most a forwarder reads from the client at once.
const forwarderChunk = 32 << 10

// forwarder reads from the client whatever is available and writes it to
// the cover in one piece (so the cover sees the client's segments much as
// the client sent them), then serves it to the hello reader.
type forwarder struct {
	f   *flight
	all []byte // every byte read from the client
	off int    // all[off:] not yet served
}

func (w *forwarder) Read(p []byte) (int, error) {
	if w.off == len(w.all) {
		if err := w.fill(); err != nil {
			return 0, err
		}
	}
	n := copy(p, w.all[w.off:])
	w.off += n
	return n, nil
}

// chunkPool holds the forwarder's read buffers. A connection waiting for
// its first (or next) bytes holds none: it waits until the socket is
// readable, reads into a pooled chunk and keeps only the bytes read.
var chunkPool = sync.Pool{New: func() any { return new([forwarderChunk]byte) }}

func (w *forwarder) fill() error {
	start := len(w.all)
	err := waitReadable(w.f.client)
	n := 0
	if err == nil {
		chunk := chunkPool.Get().(*[forwarderChunk]byte)
		n, err = w.f.client.Read(chunk[:])
		w.all = append(w.all, chunk[:n]...)
		chunkPool.Put(chunk)
	}
	if n > 0 {
		w.f.mu.Lock()
		w.f.forwarded += n
		w.f.mu.Unlock()
		if _, werr := w.f.cover.Write(w.all[start:]); werr != nil {
			if isReset(werr) {
				w.f.mu.Lock()
				w.f.endedLocked(werr)
				if w.f.coverAt < 0 {
					w.f.coverAt = w.f.forwarded - n
				}
				w.f.mu.Unlock()
			}
			return fmt.Errorf("forward to cover: %w", werr)
		}
		return nil
	}
	if err == nil {
		err = io.ErrNoProgress
	}
	return err
}

// stop ends the watch and clears the deadlines it set. It returns what the
// cover sent, how it ended (nil if it did not), and whether it spoke or
// ended before it had the first helloLen bytes, the client's hello.
func (f *flight) stop(helloLen int) (coverData []byte, coverErr error, early bool) {
	f.mu.Lock()
	f.stopping = true
	f.mu.Unlock()
	f.cover.SetReadDeadline(time.Now())
	<-f.done
	f.cover.SetReadDeadline(time.Time{})
	f.client.SetReadDeadline(time.Time{})
	return f.coverData, f.coverErr, f.coverAt >= 0 && f.coverAt < helloLen
}
