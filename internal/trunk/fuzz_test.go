package trunk

import (
	"bytes"
	"encoding/binary"
	"io"
	"sync"
	"testing"
	"time"
)

// feed is the other side of a trunk that sends the given bytes once open
// is closed, and then ends; what the trunk writes is dropped.
type feed struct {
	r    *bytes.Reader
	open chan struct{}
}

func (f *feed) Read(p []byte) (int, error) {
	<-f.open
	return f.r.Read(p)
}
func (f *feed) Write(p []byte) (int, error) { return len(p), nil }
func (f *feed) Close() error                { return nil }

// sentData returns, per stream id, the Data payloads the frames in b carry
// before that stream's Fin or Reset: what a reader of the stream may be
// handed at most, and in this order.
func sentData(b []byte) map[uint32][]byte {
	data := map[uint32][]byte{}
	ended := map[uint32]bool{}
	for len(b) >= headerLen {
		typ, id, n := b[0], binary.BigEndian.Uint32(b[1:5]), int(binary.BigEndian.Uint16(b[5:7]))
		if n > MaxPayload || len(b) < headerLen+n {
			break
		}
		switch typ {
		case frameData:
			if !ended[id] {
				data[id] = append(data[id], b[headerLen:headerLen+n]...)
			}
		case frameFin, frameReset:
			ended[id] = true
		}
		b = b[headerLen+n:]
	}
	return data
}

// FuzzTrunk feeds arbitrary frames to either side of a trunk (an exit reads
// what a relay sends; a relay reads what an exit sends). Whatever arrives,
// the trunk must not panic, must end once its input ends and let go of every
// stream's reader, and must hand each reader only the bytes sent on its
// stream, in order.
func FuzzTrunk(f *testing.F) {
	join := func(frames ...[]byte) []byte { return bytes.Join(frames, nil) }
	// The first byte picks the side: even accepts, odd opens three streams
	// (ids 1–3) before the input arrives.
	f.Add(append([]byte{0}, join(frame(frameOpen, 1, nil), frame(frameData, 1, []byte("hello")), frame(frameFin, 1, nil))...))
	f.Add(append([]byte{0}, join(frame(frameOpen, 1, nil), frame(frameOpen, 2, nil), frame(frameData, 2, []byte("two")),
		frame(frameReset, 1, nil), frame(frameCredit, 2, []byte{0, 0, 1, 0}), frame(frameData, 2, []byte(" more")))...))
	f.Add(append([]byte{1}, join(frame(frameData, 2, []byte("back")), frame(frameCredit, 1, []byte{0, 0, 0, 5}), frame(frameFin, 3, nil))...))
	f.Add(append([]byte{1}, join(frame(frameReset, 3, nil), frame(frameData, 3, []byte("late")))...))
	f.Add(append([]byte{0}, frame(9, 1, nil)...))
	f.Fuzz(func(t *testing.T, in []byte) {
		if len(in) == 0 {
			return
		}
		opening := in[0]&1 == 1
		conn := &feed{r: bytes.NewReader(in[1:]), open: make(chan struct{})}
		var (
			readers sync.WaitGroup
			mu      sync.Mutex
			got     = map[uint32][]byte{}
		)
		read := func(s *Stream) {
			readers.Go(func() {
				var b bytes.Buffer
				io.Copy(&b, s)
				mu.Lock()
				got[s.id] = b.Bytes()
				mu.Unlock()
			})
		}
		var accept func(*Stream)
		if !opening {
			accept = read
		}
		tr := New(conn, accept)
		var opened []*Stream
		if opening {
			for range 3 {
				s, err := tr.Open()
				if err != nil {
					t.Fatalf("open on a trunk that has read nothing: %v", err)
				}
				opened = append(opened, s)
				read(s)
			}
		}
		close(conn.open) // the input arrives once the opens are done
		// A hang must fail here: a fuzz run that ends its window with
		// an input still running drops it unreported.
		waited := make(chan struct{})
		go func() {
			<-tr.Done()
			readers.Wait()
			close(waited)
		}()
		select {
		case <-waited:
		case <-time.After(5 * time.Second):
			t.Fatalf("5 s after its input ended the trunk (done: %v) still holds a reader", isDone(tr))
		}
		for _, s := range opened {
			if _, err := s.Write([]byte("x")); err == nil {
				t.Fatal("a stream of the ended trunk still takes writes")
			}
		}
		sent := sentData(in[1:])
		for id, b := range got {
			if !bytes.HasPrefix(sent[id], b) {
				t.Fatalf("stream %d read %q, not a prefix of what was sent on it (%q)", id, b, sent[id])
			}
		}
	})
}

func isDone(tr *Trunk) bool {
	select {
	case <-tr.Done():
		return true
	default:
		return false
	}
}
