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
	wu1 := sized(frameWindowUpdateType, 0, 1, 4)
	rst := sized(frameRSTStreamType, 0, 3, 4)
	hdr := sized(frameHeadersType, 0x4, 5, 300)
	hdrEnd := sized(frameHeadersType, 0x4|flagEndStream, 5, 300)
	cont := sized(frameContinuationType, 0x4, 5, 100)
	data := sized(0x0, 0, 5, 100)
	tests := []struct {
		name          string
		p             []byte
		control, hold bool
	}{
		{"WINDOW_UPDATE pair", cat(wu, wu1), true, false},
		{"RST_STREAM and WINDOW_UPDATE", cat(rst, wu), true, false},
		{"lone WINDOW_UPDATE", wu, false, false},
		{"WINDOW_UPDATE and DATA", cat(wu, data), false, false},
		{"torn frame", cat(wu, wu1)[:20], false, false},
		{"request headers, body follows", hdr, false, true},
		{"headers and CONTINUATION, body follows", cat(hdr, cont), false, true},
		{"headers ending the stream (GET)", hdrEnd, false, false},
		{"headers and DATA", cat(hdr, data), false, false},
		{"CONTINUATION alone", cont, false, false},
		{"empty", nil, false, false},
	}
	for _, tt := range tests {
		if got := controlFramesOnly(tt.p); got != tt.control {
			t.Errorf("controlFramesOnly(%s) = %v, want %v", tt.name, got, tt.control)
		}
		if got := headersAwaitingBody(tt.p); got != tt.hold {
			t.Errorf("headersAwaitingBody(%s) = %v, want %v", tt.name, got, tt.hold)
		}
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
		want := func(step string, writes ...[]byte) {
			t.Helper()
			got := w.got()
			if len(got) != len(writes) {
				t.Fatalf("%s: %d writes, want %d", step, len(got), len(writes))
			}
			for i := range got {
				if !bytes.Equal(got[i], writes[i]) {
					t.Fatalf("%s: write %d is %d bytes, want %d", step, i, len(got[i]), len(writes[i]))
				}
			}
		}
		write(cat(wu, wu1))
		want("WINDOW_UPDATE pair", wu, wu1)
		write(get)
		want("GET", wu, wu1, get)
		write(hdr)
		want("POST headers", wu, wu1, get)
		write(data)
		want("POST body", wu, wu1, get, cat(hdr, data))

		// Headers whose body does not come go out alone after holdMax.
		write(hdr)
		time.Sleep(holdMax - time.Nanosecond)
		synctest.Wait()
		want("headers held", wu, wu1, get, cat(hdr, data))
		time.Sleep(time.Nanosecond)
		synctest.Wait()
		want("headers after holdMax", wu, wu1, get, cat(hdr, data), hdr)

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
// socket writes (its TLS records under REALITY): window updates travel one per write, and
// every packet-up POST's body starts in the write that carries its headers, but for headers
// the shaper let go alone after holdMax (a stall of net/http's writer on a busy machine).
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
	updates, posts, apart := 0, 0, 0
	for i, f := range out {
		switch {
		case f.typ == frameWindowUpdate && i > 1: // after the opening SETTINGS and WINDOW_UPDATE
			updates++
			if i > 0 && out[i-1].typ == frameWindowUpdate && writeOf(out[i-1]) == writeOf(f) {
				t.Errorf("WINDOW_UPDATEs for streams %d and %d share a write", out[i-1].stream, f.stream)
			}
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
	if updates == 0 || posts < 6 {
		t.Fatalf("%d window updates and %d POSTs with a body seen, want some and at least 6", updates, posts)
	}
}
