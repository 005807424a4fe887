package xhttp

import (
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"sync"
	"testing"
	"time"
)

// The opening of a connection is part of the camouflage and of the flow
// control both ends rely on: the SETTINGS each side sends, the PING round
// trip before the client's first request, and the server's wait for the
// client's SETTINGS acknowledgement before its first answer. The test
// records both byte streams at the client's socket and checks them frame
// by frame.

// HTTP/2 frame types and settings (RFC 9113).
const (
	frameData         = 0x0
	frameHeaders      = 0x1
	frameSettings     = 0x4
	framePing         = 0x6
	frameWindowUpdate = 0x8
	flagAck           = 0x1

	settingEnablePush        = 0x2
	settingMaxConcurrent     = 0x3
	settingInitialWindowSize = 0x4
	settingMaxFrameSize      = 0x5
	settingMaxHeaderListSize = 0x6
)

// wireEvent is one Read or Write at the socket: which way, and where in
// that direction's byte stream it ended.
type wireEvent struct {
	write bool
	end   int
}

// wireLog is a client socket that records both directions in order.
type wireLog struct {
	net.Conn
	mu     sync.Mutex
	events []wireEvent // guarded by mu
	out    []byte      // guarded by mu: what the client wrote
	in     []byte      // guarded by mu: what it read
}

func (c *wireLog) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.mu.Lock()
	c.in = append(c.in, p[:n]...)
	c.events = append(c.events, wireEvent{false, len(c.in)})
	c.mu.Unlock()
	return n, err
}

func (c *wireLog) Write(p []byte) (int, error) {
	n, err := c.Conn.Write(p)
	c.mu.Lock()
	c.out = append(c.out, p[:n]...)
	c.events = append(c.events, wireEvent{true, len(c.out)})
	c.mu.Unlock()
	return n, err
}

// wireFrame is one frame of a recorded stream; end is where it ends.
type wireFrame struct {
	typ, flags byte
	stream     uint32
	payload    []byte
	end        int
}

// parseFrames splits b, after skip bytes, into whole frames.
func parseFrames(b []byte, skip int) []wireFrame {
	var fs []wireFrame
	off := skip
	for len(b)-off >= 9 {
		h := b[off : off+9]
		n := int(h[0])<<16 | int(h[1])<<8 | int(h[2])
		if len(b)-off-9 < n {
			break
		}
		fs = append(fs, wireFrame{
			typ: h[3], flags: h[4], stream: binary.BigEndian.Uint32(h[5:9]) &^ (1 << 31),
			payload: b[off+9 : off+9+n], end: off + 9 + n,
		})
		off += 9 + n
	}
	return fs
}

func settingsOf(f wireFrame) map[uint16]uint32 {
	m := map[uint16]uint32{}
	for p := f.payload; len(p) >= 6; p = p[6:] {
		m[binary.BigEndian.Uint16(p)] = binary.BigEndian.Uint32(p[2:])
	}
	return m
}

// first returns the index of the first frame matching ok, or -1.
func first(fs []wireFrame, ok func(wireFrame) bool) int {
	for i, f := range fs {
		if ok(f) {
			return i
		}
	}
	return -1
}

// seq returns the position in events of the Read or Write that carried the
// last byte of a frame ending at end.
func seq(events []wireEvent, write bool, end int) int {
	for i, e := range events {
		if e.write == write && e.end >= end {
			return i
		}
	}
	return -1
}

// wiredDialer serves hc's hub on loopback and returns a dialer of one
// connection at most, and the log of that connection's bytes (the latest
// dialed), taken at the client's socket.
func wiredDialer(t *testing.T, hc HubConfig) (*Dialer, func() *wireLog) {
	t.Helper()
	ctx, stop := context.WithCancel(context.Background())
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hub := NewHub(ctx, hc)
	serveDone := make(chan struct{})
	go func() {
		defer close(serveDone)
		serveListener(ctx, hub, ln)
	}()
	t.Cleanup(func() {
		bounded(t, "the hub's cleanup", func() {
			stop()
			<-serveDone
			hub.Close()
		})
	})
	var (
		mu sync.Mutex
		wl *wireLog
	)
	dial := func(ctx context.Context) (net.Conn, func() int64, error) {
		var nd net.Dialer
		c, err := nd.DialContext(ctx, "tcp", ln.Addr().String())
		if err != nil {
			return nil, nil, err
		}
		mu.Lock()
		defer mu.Unlock()
		wl = &wireLog{Conn: c}
		return wl, nil, nil
	}
	d, err := NewDialer(DialerConfig{Dial: dial, Host: "example.com", Path: "/x", MaxConns: 1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { bounded(t, "the dialer's Close", func() { d.Close() }) })
	return d, func() *wireLog {
		mu.Lock()
		defer mu.Unlock()
		return wl
	}
}

func TestOpeningFlights(t *testing.T) {
	const maxStreams = 777
	d, wire := wiredDialer(t, HubConfig{Handle: testHandle, MaxStreams: maxStreams})
	dctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := d.Dial(dctx)
	if err != nil {
		t.Fatalf("Dial: %v", err)
	}
	if _, err := c.Write([]byte{'E', 'x'}); err != nil {
		t.Fatalf("Write: %v", err)
	}
	var b [1]byte
	c.SetReadDeadline(time.Now().Add(30 * time.Second))
	if _, err := io.ReadFull(c, b[:]); err != nil {
		t.Fatalf("echo: %v", err)
	}
	d.mu.Lock()
	limit := d.conns[0].limit
	d.mu.Unlock()
	c.Close()

	wl := wire()
	wl.mu.Lock()
	out, in := parseFrames(wl.out, len(Preface)), parseFrames(wl.in, 0)
	events := append([]wireEvent(nil), wl.events...)
	preface := string(wl.out[:min(len(wl.out), len(Preface))])
	wl.mu.Unlock()
	if preface != Preface {
		t.Fatalf("client's first bytes = %q, want the HTTP/2 preface", preface)
	}

	// The client's SETTINGS and connection window: Go's HTTP/2 client
	// defaults, which the download's throughput was measured with.
	if len(out) < 3 || out[0].typ != frameSettings || out[0].flags != 0 || out[1].typ != frameWindowUpdate {
		t.Fatalf("client's first frames = %v, want SETTINGS, WINDOW_UPDATE", frameTypes(out, 3))
	}
	checkSettings(t, "client", settingsOf(out[0]), map[uint16]uint32{
		settingEnablePush:        0,
		settingInitialWindowSize: 4 << 20,
		settingMaxFrameSize:      16 << 10,
		settingMaxHeaderListSize: 10 << 20,
	})
	if got := binary.BigEndian.Uint32(out[1].payload); out[1].stream != 0 || got != 1<<30 {
		t.Errorf("client WINDOW_UPDATE = stream %d +%d, want stream 0 +%d", out[1].stream, got, 1<<30)
	}

	// The server's SETTINGS: the hub's stream limit and frame size, and
	// Go's default receive windows (1 MiB per stream and connection).
	wu := first(in, func(f wireFrame) bool { return f.typ == frameWindowUpdate && f.stream == 0 })
	if len(in) < 1 || in[0].typ != frameSettings || in[0].flags != 0 || wu < 0 {
		t.Fatalf("server's frames = %v, want SETTINGS first and a connection WINDOW_UPDATE", frameTypes(in, 12))
	}
	checkSettings(t, "server", settingsOf(in[0]), map[uint16]uint32{
		settingMaxFrameSize:      1 << 20,
		settingMaxConcurrent:     maxStreams,
		settingInitialWindowSize: 1 << 20,
		settingMaxHeaderListSize: 1<<20 + 320,
	})
	if got := binary.BigEndian.Uint32(in[wu].payload); got != 1<<20-65535 {
		t.Errorf("server's connection WINDOW_UPDATE = +%d, want +%d", got, 1<<20-65535)
	}
	t.Logf("client frames: %v", frameTypes(out, 12))
	t.Logf("server frames: %v", frameTypes(in, 12))
	if limit != maxStreams {
		t.Errorf("dialer's stream limit for the connection = %d, want the server's %d", limit, maxStreams)
	}

	// One PING round trip before the first request.
	ping := first(out, func(f wireFrame) bool { return f.typ == framePing && f.flags&flagAck == 0 })
	headers := first(out, func(f wireFrame) bool { return f.typ == frameHeaders })
	if ping < 0 || headers < 0 || ping > headers {
		t.Fatalf("client frames = %v, want a PING before the first HEADERS", frameTypes(out, 12))
	}
	pong := first(in, func(f wireFrame) bool {
		return f.typ == framePing && f.flags&flagAck != 0 && string(f.payload) == string(out[ping].payload)
	})
	if pong < 0 {
		t.Fatalf("server frames = %v, want the PING's ACK", frameTypes(in, 12))
	}
	if r, w := seq(events, false, in[pong].end), seq(events, true, out[headers].end); r > w {
		t.Errorf("first HEADERS written at event %d, before the PING's ACK was read (event %d)", w, r)
	}

	// The server's first answer waits for the client's SETTINGS ACK.
	sack := first(out, func(f wireFrame) bool { return f.typ == frameSettings && f.flags&flagAck != 0 })
	answer := first(in, func(f wireFrame) bool { return f.typ == frameHeaders })
	if sack < 0 || answer < 0 {
		t.Fatalf("client frames %v, server frames %v: want a SETTINGS ACK and an answer", frameTypes(out, 12), frameTypes(in, 12))
	}
	if w, r := seq(events, true, out[sack].end), seq(events, false, in[answer].end); w > r {
		t.Errorf("server's first HEADERS read at event %d, before the client's SETTINGS ACK was written (event %d)", r, w)
	}
}

// checkSettings checks the settings in want; others may be present.
func checkSettings(t *testing.T, side string, got, want map[uint16]uint32) {
	t.Helper()
	for id, v := range want {
		if g, ok := got[id]; !ok || g != v {
			t.Errorf("%s SETTINGS %#x = %d (present: %v), want %d; all: %v", side, id, g, ok, v, got)
		}
	}
}

// frameTypes names the first n frames, for messages.
func frameTypes(fs []wireFrame, n int) []string {
	names := map[byte]string{frameData: "DATA", frameHeaders: "HEADERS", frameSettings: "SETTINGS", framePing: "PING", frameWindowUpdate: "WINDOW_UPDATE"}
	var s []string
	for _, f := range fs[:min(n, len(fs))] {
		name := names[f.typ]
		if name == "" {
			name = fmt.Sprintf("type %d", f.typ)
		}
		if f.flags&flagAck != 0 && (f.typ == frameSettings || f.typ == framePing) {
			name += "+ACK"
		}
		s = append(s, name)
	}
	return s
}
