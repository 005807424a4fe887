// Package trunk carries many byte streams over one reliable byte stream,
// each with its own flow control, so that one stream whose reader is slow
// never holds up the others. An entry relay carries its client connections
// to an exit in a few trunks (each an XHTTP session of the relay link,
// which survives the rotation of the connections under it) instead of one
// session per client: an idle client connection then costs the relay one
// goroutine and a few hundred bytes, not an HTTP/2 stream with its
// goroutines, requests and buffers.
//
// # Frames (both directions)
//
//	+------+-----------+--------+-----------------+
//	| type | stream id | length | payload         |
//	|  1   |   4 BE    |  2 BE  | length bytes    |
//	+------+-----------+--------+-----------------+
//
//	1 Open    (opener → acceptor) a new stream; no payload. Ids count up from 1.
//	2 Data    payload ≤ MaxPayload bytes of the stream, within the sender's credit
//	3 Credit  payload 4 BE: the receiver consumed that many more bytes
//	4 Fin     the sender writes no more on the stream (a half close)
//	5 Reset   the stream is aborted both ways
//
// Each side may have Window bytes of a stream in flight, unread by the
// other; Credit frames give it back as the reader consumes. A frame that
// breaks these rules (an unknown type, Data beyond the credit, an Open
// from the side that does not accept, an id that does not count up)
// ends the trunk and every stream on it.
package trunk

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
)

// Frame types.
const (
	frameOpen   byte = 1
	frameData   byte = 2
	frameCredit byte = 3
	frameFin    byte = 4
	frameReset  byte = 5
)

const (
	headerLen = 7
	// MaxPayload is the most bytes one Data frame carries.
	MaxPayload = 16<<10 - headerLen
	// Window is how many bytes of a stream may be in flight each way.
	Window = 1 << 20
	// creditEvery: a reader gives credit back once it consumed this much.
	creditEvery = Window / 4
	// MaxStreams bounds the open streams of a trunk (the acceptor resets
	// any beyond).
	MaxStreams = 4096
	// smallFrame: frames up to this size are read into the reading
	// loop's own buffer.
	smallFrame = 512
	// maxResetting bounds the Opens beyond MaxStreams waiting for their
	// Reset to be written.
	maxResetting = 256
	// maxID is the last id a trunk opens; a trunk that has used them
	// all opens no more (Spent) and the opener starts another.
	maxID = 1<<31 - 1
)

// framePool holds frame buffers while a frame is written (the conns under
// trunks copy what they are given).
var framePool = sync.Pool{New: func() any { return new([headerLen + MaxPayload]byte) }}

// ErrReset is a stream's read or write error after the other side reset
// it (its end closed the way a TCP reset does).
var ErrReset = errors.New("trunk: the stream was reset")

// ErrProtocol wraps the error a trunk ends with when the other side broke
// the framing.
var ErrProtocol = errors.New("trunk: protocol error")

// ErrSpent: the trunk has opened as many streams as its ids count; open
// another trunk.
var ErrSpent = errors.New("trunk: every stream id used")

// errClosed is the error of streams on a trunk closed on this side.
var errClosed = fmt.Errorf("trunk: closed: %w", net.ErrClosed)

// Trunk is one side of a trunk.
type Trunk struct {
	conn   io.ReadWriteCloser
	accept func(*Stream) // nil on the opening side
	local  net.Addr
	remote net.Addr

	openMu sync.Mutex // one Open at a time
	wmu    sync.Mutex // one frame at a time onto conn

	mu      sync.Mutex
	streams map[uint32]*Stream // guarded by mu
	lastID  uint32             // guarded by mu: the newest stream's id
	// resetting counts Opens beyond MaxStreams whose Reset is not
	// written yet. guarded by mu
	resetting int
	err       error         // guarded by mu: why the trunk ended
	done      chan struct{} // closed when the trunk ended
	read      chan struct{} // closed when readLoop returned: no more accept calls
}

// New starts a trunk on conn. With accept nil this side opens streams
// (Open); otherwise the other side does, and accept is called, on the
// trunk's reading goroutine, for each new stream: it must not block.
func New(conn io.ReadWriteCloser, accept func(*Stream)) *Trunk {
	t := &Trunk{conn: conn, accept: accept, streams: map[uint32]*Stream{}, done: make(chan struct{}), read: make(chan struct{})}
	t.local, t.remote = addr{}, addr{}
	if nc, ok := conn.(net.Conn); ok {
		t.local, t.remote = nc.LocalAddr(), nc.RemoteAddr()
	}
	go t.readLoop()
	return t
}

// addr stands in for the address of a trunk on a conn that has none.
type addr struct{}

func (addr) Network() string { return "trunk" }
func (addr) String() string  { return "trunk" }

// Done is closed when the trunk has ended.
func (t *Trunk) Done() <-chan struct{} { return t.done }

// Wait waits until the trunk has ended and calls accept no more.
func (t *Trunk) Wait() {
	<-t.done
	<-t.read
}

// Err is why the trunk ended, nil while it runs.
func (t *Trunk) Err() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.err
}

// Streams is how many streams are open on the trunk.
func (t *Trunk) Streams() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.streams)
}

// Close ends the trunk: its conn and every stream on it.
func (t *Trunk) Close() error {
	t.end(errClosed)
	return nil
}

// Open opens a stream (the opening side only).
func (t *Trunk) Open() (*Stream, error) {
	if t.accept != nil {
		return nil, errors.New("trunk: the accepting side cannot open streams")
	}
	t.openMu.Lock() // Open frames go out in the order of their ids
	defer t.openMu.Unlock()
	t.mu.Lock()
	if t.err != nil {
		err := t.err
		t.mu.Unlock()
		return nil, err
	}
	if len(t.streams) >= MaxStreams {
		t.mu.Unlock()
		return nil, fmt.Errorf("trunk: %d streams open already", MaxStreams)
	}
	if t.lastID >= maxID {
		t.mu.Unlock()
		return nil, ErrSpent
	}
	t.lastID++
	s := t.newStreamLocked(t.lastID)
	t.mu.Unlock()
	if err := t.writeFrame(frameOpen, s.id, nil); err != nil {
		t.forget(s.id)
		return nil, err
	}
	return s, nil
}

// Spent reports whether the trunk opens no more streams (ErrSpent).
func (t *Trunk) Spent() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.lastID >= maxID
}

func (t *Trunk) newStreamLocked(id uint32) *Stream {
	s := &Stream{t: t, id: id, credit: Window, changed: make(chan struct{})}
	t.streams[id] = s
	return s
}

func (t *Trunk) forget(id uint32) {
	t.mu.Lock()
	delete(t.streams, id)
	t.mu.Unlock()
}

// stream returns stream id, nil when it is gone; opened is false for an
// id that was never opened.
func (t *Trunk) stream(id uint32) (s *Stream, opened bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.streams[id], id != 0 && id <= t.lastID
}

// writeFrame writes one frame; frames of different streams interleave
// whole.
func (t *Trunk) writeFrame(typ byte, id uint32, payload []byte) error {
	t.wmu.Lock()
	defer t.wmu.Unlock()
	select {
	case <-t.done:
		return t.Err()
	default:
	}
	fb := framePool.Get().(*[headerLen + MaxPayload]byte)
	defer framePool.Put(fb)
	b := fb[:headerLen]
	b[0] = typ
	binary.BigEndian.PutUint32(b[1:5], id)
	binary.BigEndian.PutUint16(b[5:7], uint16(len(payload)))
	b = append(b, payload...)
	if _, err := t.conn.Write(b); err != nil {
		t.end(fmt.Errorf("trunk: write: %w", err))
		return t.Err()
	}
	return nil
}

// end ends the trunk with err (the first one counts).
func (t *Trunk) end(err error) {
	t.mu.Lock()
	if t.err != nil {
		t.mu.Unlock()
		return
	}
	t.err = err
	streams := t.streams
	t.streams = map[uint32]*Stream{}
	close(t.done)
	t.mu.Unlock()
	t.conn.Close()
	for _, s := range streams {
		s.fail(err)
	}
}

// readLoop reads frames until the conn ends or breaks the rules.
func (t *Trunk) readLoop() {
	defer close(t.read)
	br := bufio.NewReaderSize(t.conn, 4<<10)
	var hdr [headerLen]byte
	var small [smallFrame]byte
	for {
		if _, err := io.ReadFull(br, hdr[:]); err != nil {
			if errors.Is(err, io.EOF) {
				err = io.ErrUnexpectedEOF
			}
			t.end(fmt.Errorf("trunk: read: %w", err))
			return
		}
		typ, id, n := hdr[0], binary.BigEndian.Uint32(hdr[1:5]), int(binary.BigEndian.Uint16(hdr[5:7]))
		if n > MaxPayload {
			t.end(fmt.Errorf("%w: a %d-byte frame", ErrProtocol, n))
			return
		}
		// Small frames are read into a buffer of the loop's own, large
		// ones into a pooled one: a burst's buffer is not kept while
		// the trunk idles, nor allocated anew for each frame.
		var payload []byte
		var fb *[headerLen + MaxPayload]byte
		if n <= smallFrame {
			payload = small[:n]
		} else {
			fb = framePool.Get().(*[headerLen + MaxPayload]byte)
			payload = fb[:n]
		}
		_, err := io.ReadFull(br, payload)
		if err == nil {
			if herr := t.handle(typ, id, payload); herr != nil {
				err = fmt.Errorf("%w: %v", ErrProtocol, herr)
			}
		} else {
			err = fmt.Errorf("trunk: read: %w", err)
		}
		if fb != nil {
			framePool.Put(fb) // handle copied what it keeps
		}
		if err != nil {
			t.end(err)
			return
		}
	}
}

// handle acts on one frame.
func (t *Trunk) handle(typ byte, id uint32, payload []byte) error {
	if typ == frameOpen {
		return t.handleOpen(id, payload)
	}
	s, opened := t.stream(id)
	if s == nil && !opened {
		return fmt.Errorf("frame type %d on stream %d, never opened", typ, id)
	}
	switch typ {
	case frameData:
		if s == nil {
			// A stream closed here while the other side still sent: it
			// learns of the close from the Reset sent then.
			return nil
		}
		return s.received(payload)
	case frameCredit:
		if len(payload) != 4 {
			return fmt.Errorf("credit of %d bytes", len(payload))
		}
		if s != nil {
			return s.credited(binary.BigEndian.Uint32(payload))
		}
		return nil
	case frameFin:
		if s != nil {
			s.finished()
		}
		return nil
	case frameReset:
		if s != nil {
			t.forget(id)
			s.fail(ErrReset)
		}
		return nil
	}
	return fmt.Errorf("frame type %d", typ)
}

func (t *Trunk) handleOpen(id uint32, payload []byte) error {
	if t.accept == nil {
		return errors.New("an open from the accepting side")
	}
	if len(payload) != 0 {
		return errors.New("an open with a payload")
	}
	t.mu.Lock()
	if id <= t.lastID {
		t.mu.Unlock()
		return fmt.Errorf("stream %d opened after %d", id, t.lastID)
	}
	t.lastID = id
	if len(t.streams) >= MaxStreams {
		// The opener sees its streams end a little before this side
		// does and may open one too many now and then; a few resets
		// wait to be written at a time, and an opener that goes on
		// opening beyond them breaks the rules.
		if t.resetting >= maxResetting {
			t.mu.Unlock()
			return fmt.Errorf("opens beyond %d streams", MaxStreams)
		}
		t.resetting++
		t.mu.Unlock()
		go func() { // not on the reading goroutine: writes may wait
			t.writeFrame(frameReset, id, nil)
			t.mu.Lock()
			t.resetting--
			t.mu.Unlock()
		}()
		return nil
	}
	s := t.newStreamLocked(id)
	t.mu.Unlock()
	t.accept(s)
	return nil
}
