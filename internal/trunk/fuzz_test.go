package trunk

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"sync"
	"testing"
)

// feed is the other side of a trunk that sends the given bytes and then
// ends; what the trunk writes is dropped.
type feed struct{ r *bytes.Reader }

func (f *feed) Read(p []byte) (int, error)  { return f.r.Read(p) }
func (f *feed) Write(p []byte) (int, error) { return len(p), nil }
func (f *feed) Close() error                { return nil }

// FuzzTrunk feeds arbitrary frames to both sides of a trunk (an exit reads
// what a relay sends; a relay reads what an exit sends). Whatever arrives,
// the trunk must not panic, must end once its input ends, must fail every
// stream it had, and must not hand a reader more than was sent on its
// stream.
func FuzzTrunk(f *testing.F) {
	frame := func(typ byte, id uint32, payload []byte) []byte {
		b := []byte{typ, 0, 0, 0, 0, 0, 0}
		binary.BigEndian.PutUint32(b[1:5], id)
		binary.BigEndian.PutUint16(b[5:7], uint16(len(payload)))
		return append(b, payload...)
	}
	join := func(frames ...[]byte) []byte { return bytes.Join(frames, nil) }
	// The first byte picks the side: even accepts, odd opens three streams.
	f.Add(append([]byte{0}, join(frame(frameOpen, 1, nil), frame(frameData, 1, []byte("hello")), frame(frameFin, 1, nil))...))
	f.Add(append([]byte{0}, join(frame(frameOpen, 1, nil), frame(frameOpen, 2, nil), frame(frameReset, 1, nil), frame(frameCredit, 2, []byte{0, 0, 1, 0}))...))
	f.Add(append([]byte{1}, join(frame(frameData, 2, []byte("back")), frame(frameCredit, 1, []byte{0, 0, 0, 5}), frame(frameFin, 3, nil))...))
	f.Add(append([]byte{1}, join(frame(frameReset, 3, nil), frame(frameData, 3, []byte("late")))...))
	f.Add(append([]byte{0}, frame(9, 1, nil)...))
	f.Fuzz(func(t *testing.T, in []byte) {
		if len(in) == 0 {
			return
		}
		opening := in[0]&1 == 1
		conn := &feed{r: bytes.NewReader(in[1:])}
		var readers sync.WaitGroup
		var got sync.Map // stream → bytes read
		read := func(s *Stream) {
			readers.Add(1)
			go func() {
				defer readers.Done()
				n, _ := io.Copy(io.Discard, s)
				got.Store(s, n)
			}()
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
					break // the input may already have ended the trunk
				}
				opened = append(opened, s)
				read(s)
			}
		}
		<-tr.Done()
		if tr.Err() == nil {
			t.Fatal("the trunk ended without an error")
		}
		if n := tr.Streams(); n != 0 {
			t.Fatalf("%d streams left on an ended trunk", n)
		}
		readers.Wait() // every stream's reader must have been let go
		for _, s := range opened {
			if _, err := s.Write([]byte("x")); err == nil {
				t.Fatal("a stream of the ended trunk still takes writes")
			}
		}
		sent := len(in) - 1
		got.Range(func(_, v any) bool {
			if n := v.(int64); n > int64(sent) {
				t.Fatalf("a reader got %d bytes of a %d-byte input", n, sent)
			}
			return true
		})
		if errors.Is(tr.Err(), ErrSpent) {
			t.Fatal("three opens spent the ids")
		}
	})
}
