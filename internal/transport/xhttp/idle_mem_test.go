package xhttp

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"runtime"
	"runtime/pprof"
	"strings"
	"testing"
	"time"
)

// The idle-memory test holds many established sessions, each with one
// byte echoed and then nothing, both ends blocked in Read — the state of
// most proxied connections most of the time — and measures what they
// cost. Allocations and goroutines are told apart by who made them: the
// outermost frame that belongs to one side decides (see sideOf).

// idleHandle echoes one byte, then waits in Read until the session ends.
func idleHandle(ctx context.Context, c net.Conn) {
	defer c.Close()
	var b [1]byte
	if _, err := io.ReadFull(c, b[:]); err != nil {
		return
	}
	if _, err := c.Write(b[:]); err != nil {
		return
	}
	c.Read(b[:])
}

// sideOf names the side a stack (outermost frame last) belongs to:
// "server", "client", or "" for neither (the test's own frames, the
// runtime).
func sideOf(funcs []string) string {
	for i := len(funcs) - 1; i >= 0; i-- {
		f := funcs[i]
		switch {
		case strings.Contains(f, "xhttp.idleHandle"),
			strings.Contains(f, "xhttp.(*Hub)"),
			strings.Contains(f, "xhttp.(*session)"),
			strings.Contains(f, "xhttp.(*serverConn)"),
			strings.Contains(f, "xhttp.(*connListener)"),
			strings.Contains(f, "http.(*Server)"),
			strings.Contains(f, "http.(*conn)"),
			strings.Contains(f, "http.(*http2serverConn)"),
			strings.Contains(f, "http.(*http2Server)"),
			strings.Contains(f, "http.(*http2responseWriter"):
			return "server"
		case strings.Contains(f, "xhttp.(*Dialer)"),
			strings.Contains(f, "xhttp.(*clientConn)"),
			strings.Contains(f, "xhttp.(*pingConn)"),
			strings.Contains(f, "http.(*ClientConn)"),
			strings.Contains(f, "http.(*Transport)"),
			strings.Contains(f, "http.(*http2ClientConn)"),
			strings.Contains(f, "http.(*http2clientStream)"),
			strings.Contains(f, "http.(*http2clientConnReadLoop)"),
			strings.Contains(f, "http.(*http2Transport)"):
			return "client"
		}
	}
	return ""
}

// sideUsage is what one side holds.
type sideUsage struct {
	heap       int64 // bytes in live objects allocated by this side
	goroutines int
}

// usageBySide reads the heap profile of the last GC (exact with
// MemProfileRate 1) and the goroutines' stacks.
func usageBySide() map[string]sideUsage {
	u := map[string]sideUsage{}
	var recs []runtime.MemProfileRecord
	for {
		n, ok := runtime.MemProfile(recs, false)
		if ok {
			recs = recs[:n]
			break
		}
		recs = make([]runtime.MemProfileRecord, n+100)
	}
	for _, r := range recs {
		var funcs []string
		frames := runtime.CallersFrames(r.Stack())
		for {
			f, more := frames.Next()
			funcs = append(funcs, f.Function)
			if !more {
				break
			}
		}
		side := sideOf(funcs)
		su := u[side]
		su.heap += r.InUseBytes()
		u[side] = su
	}
	var buf bytes.Buffer
	pprof.Lookup("goroutine").WriteTo(&buf, 2)
	for _, g := range strings.Split(buf.String(), "\n\n") {
		var funcs []string
		for _, line := range strings.Split(g, "\n") {
			if strings.HasPrefix(line, "goroutine ") || strings.HasPrefix(line, "\t") || line == "" {
				continue
			}
			line = strings.TrimPrefix(line, "created by ")
			if i := strings.Index(line, " in goroutine"); i >= 0 {
				line = line[:i]
			}
			funcs = append(funcs, line)
		}
		side := sideOf(funcs)
		su := u[side]
		su.goroutines++
		u[side] = su
	}
	return u
}

// settle collects garbage until the heap stops shrinking, so what is left
// is what is really held.
func settle() runtime.MemStats {
	var ms runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&ms)
	for range 10 {
		runtime.Gosched() // let finalizers run
		runtime.GC()
		prev := ms.HeapAlloc
		runtime.ReadMemStats(&ms)
		if ms.HeapAlloc >= prev {
			break
		}
	}
	return ms
}

// readIdle is the test's idle reader of a session; named so that waitIdle
// can find it.
func readIdle(c net.Conn, b []byte) error {
	_, err := c.Read(b)
	return err
}

// waitIdle waits until sessions sessions are idle: their handler and the
// test's reader both parked in Read, and no packet-up upload running. It
// fails t after 30 s.
func waitIdle(t *testing.T, sessions int) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	var handlers, readers, uploads int
	for {
		var buf bytes.Buffer
		pprof.Lookup("goroutine").WriteTo(&buf, 2)
		handlers, readers, uploads = 0, 0, 0
		for g := range strings.SplitSeq(buf.String(), "\n\n") {
			header, _, _ := strings.Cut(g, "\n")
			parked := !strings.Contains(header, "[running") && !strings.Contains(header, "[runnable")
			switch {
			case strings.Contains(g, "xhttp.(*clientConn).uploadLoop("):
				uploads++
			case parked && strings.Contains(g, "xhttp.idleHandle("):
				handlers++
			case parked && strings.Contains(g, "xhttp.readIdle("):
				readers++
			}
		}
		if handlers >= sessions && readers >= sessions && uploads == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after 30s: %d handlers and %d readers parked, %d uploads running; want %d, %d, 0",
				handlers, readers, uploads, sessions, sessions)
		}
		time.Sleep(time.Millisecond) // polling interval
	}
}

// idleCost is the per-session cost of idle sessions.
type idleCost struct {
	heapInuse, heapAlloc, stackInuse float64 // bytes per session, both sides
	server, client                   sideUsage
	serverG, clientG                 float64 // goroutines per session
	serverB, clientB                 float64 // heap bytes per session
}

func (c idleCost) String() string {
	return fmt.Sprintf("per session: HeapInuse %.0f B, HeapAlloc %.0f B, StackInuse %.0f B; server heap %.0f B, %.2f goroutines; client heap %.0f B, %.2f goroutines",
		c.heapInuse, c.heapAlloc, c.stackInuse, c.serverB, c.serverG, c.clientB, c.clientG)
}

// measureIdle opens n idle sessions in mode and returns what they cost.
func measureIdle(t *testing.T, mode string, n int) idleCost {
	t.Helper()
	old := runtime.MemProfileRate
	runtime.MemProfileRate = 1
	defer func() { runtime.MemProfileRate = old }()

	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hub := NewHub(ctx, HubConfig{Handle: idleHandle, ResumeTimeout: 30 * time.Second})
	serveDone := make(chan struct{})
	go func() {
		defer close(serveDone)
		serveListener(ctx, hub, ln)
	}()
	d, err := NewDialer(DialerConfig{Dial: (&connLog{}).dial(ln.Addr().String()), Host: "example.com", Path: "/x", Mode: mode})
	if err != nil {
		t.Fatal(err)
	}

	// One session first, so connections and lazily built state exist
	// before the baseline.
	conns := make([]net.Conn, 0, n+1)
	readers := make(chan error, n+1)
	open := func() {
		c, err := d.Dial(ctx)
		if err != nil {
			t.Fatalf("Dial: %v", err)
		}
		conns = append(conns, c)
		if _, err := c.Write([]byte{'x'}); err != nil {
			t.Fatalf("Write: %v", err)
		}
		var b [1]byte
		c.SetReadDeadline(time.Now().Add(30 * time.Second))
		if _, err := io.ReadFull(c, b[:]); err != nil || b[0] != 'x' {
			t.Fatalf("echo = %q, %v; want \"x\"", b[:], err)
		}
		c.SetReadDeadline(time.Time{})
		go func() { readers <- readIdle(c, b[:]) }()
	}
	open()
	waitIdle(t, 1)
	before := settle()
	ubefore := usageBySide()
	for range n {
		open()
	}
	waitIdle(t, n+1) // uploads finished, every session idle
	after := settle()
	uafter := usageBySide()
	if got := hub.Sessions(); got != n+1 {
		t.Errorf("Sessions() = %d, want %d", got, n+1)
	}

	if testing.Verbose() {
		pprof.Lookup("heap").WriteTo(heapProfileFile(t, mode), 0)
	}

	per := func(a, b uint64) float64 { return (float64(a) - float64(b)) / float64(n) }
	c := idleCost{
		heapInuse:  per(after.HeapInuse, before.HeapInuse),
		heapAlloc:  per(after.HeapAlloc, before.HeapAlloc),
		stackInuse: per(after.StackInuse, before.StackInuse),
		server:     uafter["server"],
		client:     uafter["client"],
	}
	c.serverB = float64(uafter["server"].heap-ubefore["server"].heap) / float64(n)
	c.clientB = float64(uafter["client"].heap-ubefore["client"].heap) / float64(n)
	c.serverG = float64(uafter["server"].goroutines-ubefore["server"].goroutines) / float64(n)
	c.clientG = float64(uafter["client"].goroutines-ubefore["client"].goroutines) / float64(n)

	for _, c := range conns {
		c.Close()
	}
	for range conns {
		if err := <-readers; err == nil {
			t.Errorf("idle Read returned without error after Close")
		}
	}
	d.Close()
	stop()
	ln.Close()
	<-serveDone
	hub.Close()
	return c
}

// serveListener serves XHTTP on every connection ln accepts until ctx
// ends, and waits for the connections.
func serveListener(ctx context.Context, hub *Hub, ln net.Listener) {
	done := make(chan struct{})
	var open []net.Conn
	var finished []chan struct{}
	go func() {
		<-ctx.Done()
		ln.Close()
		close(done)
	}()
	for {
		c, err := ln.Accept()
		if err != nil {
			break
		}
		open = append(open, c)
		fin := make(chan struct{})
		finished = append(finished, fin)
		go func() {
			defer close(fin)
			defer c.Close()
			hub.ServeConn(ctx, c, ConnOptions{})
		}()
	}
	<-done
	for _, c := range open {
		c.Close()
	}
	for _, fin := range finished {
		<-fin
	}
}

// heapProfileFile opens where -v runs leave the heap profile, for
// go tool pprof -top -sample_index=inuse_space.
func heapProfileFile(t *testing.T, mode string) io.Writer {
	dir := os.Getenv("XHTTP_HEAP_DIR")
	if dir == "" {
		return io.Discard
	}
	f, err := os.Create(dir + "/idle-" + mode + ".pprof")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

// TestIdleSessionMemory bounds what an idle session costs. Measured with
// 300 sessions (per session, both sides, the test's handler and reader
// included): packet-up HeapAlloc ~55 KB and 4 client goroutines before the
// idle buffers were made small and the upload goroutine on demand, ~19 KB
// and 3 after; stream-up server heap ~55 KB before, ~20 KB after (its client
// still holds Go's HTTP/2 512 KiB frame scratch buffer per stream-up POST).
func TestIdleSessionMemory(t *testing.T) {
	if testing.Short() {
		t.Skip("opens hundreds of sessions")
	}
	const n = 300
	for _, tc := range []struct {
		mode          string
		maxHeap       float64 // HeapAlloc per session, both sides
		maxServerHeap float64
		maxClientG    float64 // goroutines per session, the test's reader included
		maxServerG    float64 // the Handle goroutine included
	}{
		{ModePacketUp, 32 << 10, 16 << 10, 3.5, 2.5},
		{ModeStreamUp, 1 << 20, 32 << 10, 5.5, 3.5},
	} {
		t.Run(tc.mode, func(t *testing.T) {
			c := measureIdle(t, tc.mode, n)
			t.Logf("%s, %d idle sessions: %v", tc.mode, n, c)
			if c.heapAlloc > tc.maxHeap {
				t.Errorf("HeapAlloc per idle session = %.0f B, want at most %.0f", c.heapAlloc, tc.maxHeap)
			}
			if c.serverB > tc.maxServerHeap {
				t.Errorf("server heap per idle session = %.0f B, want at most %.0f", c.serverB, tc.maxServerHeap)
			}
			if c.clientG > tc.maxClientG {
				t.Errorf("client goroutines per idle session = %.2f, want at most %.1f", c.clientG, tc.maxClientG)
			}
			if c.serverG > tc.maxServerG {
				t.Errorf("server goroutines per idle session = %.2f, want at most %.1f", c.serverG, tc.maxServerG)
			}
		})
	}
}

// TestAckReleasesArray checks that acknowledging most of a large download
// buffer lets its blocks go: only those holding the unacknowledged tail stay.
func TestAckReleasesArray(t *testing.T) {
	s := &session{changed: make(chan struct{})}
	s.down.Write(make([]byte, RetainMax))
	tail := int64(1000)
	if err := s.ack(RetainMax - tail); err != nil {
		t.Fatal(err)
	}
	if s.down.Len() != int(tail) || held(&s.down) > 1024 {
		t.Errorf("after ack: len %d, blocks of %d bytes, want len %d and at most 1024", s.down.Len(), held(&s.down), tail)
	}
	if s.base != RetainMax-tail {
		t.Errorf("base = %d, want %d", s.base, RetainMax-tail)
	}
}
