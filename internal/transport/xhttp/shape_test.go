package xhttp

import (
	"bytes"
	"context"
	"errors"
	"io"
	"sync"
	"testing"
	"testing/synctest"
	"time"
)

// sized returns one HTTP/2 frame with n payload bytes.
func sized(typ, flags byte, stream uint32, n int) []byte {
	return frame(typ, flags, stream, bytes.Repeat([]byte{0xab}, n))
}

func cat(bs ...[]byte) []byte { return bytes.Join(bs, nil) }

// writeLog records each Write it gets (each becomes one TLS record under a TLS conn).
type writeLog struct {
	mu     sync.Mutex
	writes [][]byte // guarded by mu
	err    error
}

func (w *writeLog) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.err != nil {
		return 0, w.err
	}
	w.writes = append(w.writes, append([]byte(nil), p...))
	return len(p), nil
}

func (w *writeLog) got() [][]byte {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.writes
}

func TestFrameClassifiers(t *testing.T) {
	wu := sized(frameWindowUpdateType, 0, 0, 4)
	hdr := sized(frameHeadersType, 0x4, 5, 300)
	hdrEnd := sized(frameHeadersType, 0x4|flagEndStream, 5, 300)
	cont := sized(frameContinuationType, 0x4, 5, 100)
	data := sized(0x0, 0, 5, 100)
	tests := []struct {
		name string
		p    []byte
		hold bool
	}{
		{"request headers, body follows", hdr, true},
		{"headers and CONTINUATION, body follows", cat(hdr, cont), true},
		{"headers ending the stream (GET)", hdrEnd, false},
		{"headers and DATA", cat(hdr, data), false},
		{"CONTINUATION alone", cont, false},
		{"WINDOW_UPDATE", wu, false},
		{"torn headers", hdr[:20], false},
		{"empty", nil, false},
	}
	for _, tt := range tests {
		if got := headersAwaitingBody(tt.p); got != tt.hold {
			t.Errorf("headersAwaitingBody(%s) = %v, want %v", tt.name, got, tt.hold)
		}
	}
}

// checkPadded checks that got is want and one padding frame of zeros, paddedMin..paddedMax
// bytes in all.
func checkPadded(t *testing.T, step string, got, want []byte) {
	t.Helper()
	if len(got) < paddedMin || len(got) > paddedMax || !bytes.HasPrefix(got, want) {
		t.Fatalf("%s: write is %d bytes (starts as written: %v), want the %d bytes written and padding, %d..%d in all",
			step, len(got), bytes.HasPrefix(got, want), len(want), paddedMin, paddedMax)
	}
	pad := got[len(want):]
	n := int(pad[0])<<16 | int(pad[1])<<8 | int(pad[2])
	if n != len(pad)-9 || pad[3] != framePadType || pad[4] != 0 || !bytes.Equal(pad[5:], make([]byte, len(pad)-5)) {
		t.Fatalf("%s: padding = % x..., want one frame of type %#x, stream 0, zeros", step, pad[:9], framePadType)
	}
}

func TestFrameShaper(t *testing.T) {
	wu := sized(frameWindowUpdateType, 0, 0, 4)
	wu1 := sized(frameWindowUpdateType, 0, 1, 4)
	hdr := sized(frameHeadersType, 0x4, 1, 300)
	get := sized(frameHeadersType, 0x4|flagEndStream, 3, 300)
	data := sized(0x0, flagEndStream, 1, 124)
	synctest.Test(t, func(t *testing.T) {
		w := &writeLog{}
		s := &frameShaper{w: w}
		write := func(p []byte) {
			t.Helper()
			if n, err := s.Write(p); n != len(p) || err != nil {
				t.Fatalf("Write(%d bytes) = %d, %v", len(p), n, err)
			}
		}
		last := func(step string, n int) []byte {
			t.Helper()
			got := w.got()
			if len(got) != n {
				t.Fatalf("%s: %d writes, want %d", step, len(got), n)
			}
			return got[n-1]
		}
		same := func(step string, n int, want []byte) {
			t.Helper()
			if got := last(step, n); !bytes.Equal(got, want) {
				t.Fatalf("%s: write %d is %d bytes, want %d", step, n, len(got), len(want))
			}
		}
		// Control frames, alone or together, go out padded.
		write(cat(wu, wu1))
		checkPadded(t, "WINDOW_UPDATE pair", last("WINDOW_UPDATE pair", 1), cat(wu, wu1))
		write(get)
		same("GET", 2, get)
		write(hdr)
		last("POST headers", 2)
		write(data)
		same("POST body", 3, cat(hdr, data))

		// A short DATA frame alone is padded; one cut by net/http's buffer is padded
		// where it ends, never inside it.
		short := sized(0x0, 0, 1, 40)
		write(short)
		checkPadded(t, "short DATA", last("short DATA", 4), short)
		long := sized(0x0, 0, 1, 200)
		write(long[:150])
		same("DATA cut", 5, long[:150])
		write(long[150:])
		checkPadded(t, "DATA's end", last("DATA's end", 6), long[150:])

		// Nothing goes inside a header block: headers waiting for their CONTINUATION
		// are not padded; the CONTINUATION that ends them is.
		open := sized(frameHeadersType, flagEndStream, 5, 40)
		write(open)
		same("open header block", 7, open)
		cont := sized(frameContinuationType, 0x4, 5, 20)
		write(cont)
		checkPadded(t, "CONTINUATION", last("CONTINUATION", 8), cont)

		// Headers whose body does not come go out alone after holdMax.
		write(hdr)
		time.Sleep(holdMax - time.Nanosecond)
		synctest.Wait()
		last("headers held", 8)
		time.Sleep(time.Nanosecond)
		synctest.Wait()
		same("headers after holdMax", 9, hdr)

		// A flush that fails fails the next Write.
		write(hdr)
		w.mu.Lock()
		w.err = errors.New("broken")
		w.mu.Unlock()
		time.Sleep(holdMax)
		synctest.Wait()
		if _, err := s.Write(data); err == nil {
			t.Fatal("Write after a failed flush succeeded")
		}
	})
}

// TestClientRecords runs a session through a real hub over loopback and checks the client's
// socket writes (its TLS records under REALITY): after the opening flight none that ends
// between frames is shorter than smallWrite (window updates, SETTINGS ACK, short DATA go out
// padded), and every packet-up POST's body starts in the write that carries its headers, but
// for headers the shaper let go alone after holdMax (a stall of net/http's writer on a busy
// machine).
func TestClientRecords(t *testing.T) {
	d, wire := wiredDialer(t, HubConfig{Handle: testHandle})
	dctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	alone := heldAlone.Load()
	c, err := d.Dial(dctx)
	if err != nil {
		t.Fatalf("Dial: %v", err)
	}
	c.SetDeadline(time.Now().Add(30 * time.Second))
	// Echo: small uploads, each answered, then 64 KiB back (window updates every 4 KiB).
	msg := make([]byte, 124)
	reply := make([]byte, len(msg))
	if _, err := c.Write(append([]byte{'E'}, msg...)); err != nil {
		t.Fatalf("Write: %v", err)
	}
	if _, err := io.ReadFull(c, reply); err != nil {
		t.Fatalf("echo: %v", err)
	}
	for range 5 {
		if _, err := c.Write(msg); err != nil {
			t.Fatalf("Write: %v", err)
		}
		if _, err := io.ReadFull(c, reply); err != nil {
			t.Fatalf("echo: %v", err)
		}
	}
	big := pattern(1, 64<<10)
	go c.Write(big)
	if _, err := io.ReadFull(c, make([]byte, len(big))); err != nil {
		t.Fatalf("echo 64 KiB: %v", err)
	}
	c.Close()
	alone = heldAlone.Load() - alone

	wl := wire()
	wl.mu.Lock()
	out := parseFrames(wl.out, len(Preface))
	events := append([]wireEvent(nil), wl.events...)
	wl.mu.Unlock()
	writeOf := func(f wireFrame) int { return seq(events, true, f.end) }
	ends := map[int]bool{}
	for _, f := range out {
		ends[f.end] = true
	}
	writes, prev := 0, 0
	for _, e := range events {
		if !e.write {
			continue
		}
		writes++
		if n := e.end - prev; writes > 2 && ends[e.end] && n < smallWrite { // after the preface and the PING
			t.Errorf("client write %d is %d bytes, ending between frames: a record of an inner Finished's size", writes, n)
		}
		prev = e.end
	}
	updates, posts, apart, pads := 0, 0, 0, 0
	for i, f := range out {
		switch {
		case f.typ == framePadType:
			pads++
		case f.typ == frameWindowUpdate && i > 1: // after the opening SETTINGS and WINDOW_UPDATE
			updates++
		case f.typ == frameHeaders && f.flags&flagEndStream == 0:
			j := first(out[i+1:], func(g wireFrame) bool { return g.typ == frameData && g.stream == f.stream })
			if j < 0 {
				continue // the stream-up POST of another mode, or a body cut short
			}
			posts++
			if writeOf(out[i+1+j]) != writeOf(f) {
				apart++
			}
		}
	}
	if apart > int(alone) {
		t.Errorf("%d of %d POSTs have their headers and first DATA in different writes, %d after holdMax", apart, posts, alone)
	}
	if updates == 0 || pads == 0 || posts < 6 {
		t.Fatalf("%d window updates, %d padding frames and %d POSTs with a body seen, want some and at least 6", updates, pads, posts)
	}
}
