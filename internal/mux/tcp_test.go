package mux

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"runtime"
	"slices"
	"sync"
	"testing"
	"testing/synctest"
	"time"
)

// checkGoroutines fails the test if, shortly after it ends, more goroutines run than
// before it started.
func checkGoroutines(t *testing.T) {
	t.Helper()
	before := runtime.NumGoroutine()
	t.Cleanup(func() {
		deadline := time.Now().Add(5 * time.Second)
		for {
			n := runtime.NumGoroutine()
			if n <= before {
				return
			}
			if time.Now().After(deadline) {
				buf := make([]byte, 1<<20)
				t.Errorf("goroutines after the test = %d, want <= %d\n%s", n, before, buf[:runtime.Stack(buf, true)])
				return
			}
			time.Sleep(20 * time.Millisecond)
		}
	})
}

// tcpTarget runs a loopback TCP server; serve handles each conn (and closes it after).
// The listener and every conn are closed, and the handlers waited for, when the test ends.
func tcpTarget(t *testing.T, serve func(c net.Conn)) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var conns []net.Conn
	wg.Go(func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			wg.Go(func() {
				defer c.Close()
				serve(c)
			})
		}
	})
	t.Cleanup(func() {
		l.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	return l.Addr().String()
}

func echoTCP(c net.Conn) { io.Copy(c, c) }

// blobTCP serves n deterministic bytes (seeded by the first byte the client sends) and
// closes.
func blobTCP(n int) func(c net.Conn) {
	return func(c net.Conn) {
		var seed [1]byte
		if _, err := io.ReadFull(c, seed[:]); err != nil {
			return
		}
		c.Write(blob(seed[0], n))
	}
}

func blob(seed byte, n int) []byte {
	b := make([]byte, n)
	rand.NewChaCha8([32]byte{seed}).Read(b)
	return b
}

// serve runs ServerMux on one end of a pipe and returns the other; the test ends by closing
// it and checks ServerMux returned nil.
func serve(t *testing.T, dial Dial) net.Conn { return serveWith(t, dial, ServerOptions{}) }

func serveWith(t *testing.T, dial Dial, opts ServerOptions) net.Conn {
	t.Helper()
	client, server := net.Pipe()
	done := make(chan error, 1)
	go func() { done <- ServeMux(context.Background(), server, dial, opts) }()
	t.Cleanup(func() {
		client.Close()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("ServerMux after the client closed = %v, want nil", err)
			}
		case <-time.After(5 * time.Second):
			t.Error("ServerMux did not return after the client closed")
		}
		server.Close()
	})
	return client
}

// frameConn reads frames from a raw client end with a deadline.
type frameConn struct {
	t       *testing.T
	c       net.Conn
	fr      *frameReader
	senders sync.WaitGroup
}

func newFrameConn(t *testing.T, c net.Conn) *frameConn {
	fc := &frameConn{t: t, c: c, fr: &frameReader{r: c}}
	t.Cleanup(fc.senders.Wait)
	return fc
}

// sendAsync writes b from a goroutine of its own (over net.Pipe a write returns only
// once the server has read it, and the server answers before reading on). A failed
// write is reported with t.Errorf, as a goroutine may not end the test; the test's
// next read then fails on its deadline. Cleanup waits for every sender.
func (fc *frameConn) sendAsync(b []byte) {
	fc.senders.Go(func() {
		fc.c.SetWriteDeadline(time.Now().Add(5 * time.Second))
		if _, err := fc.c.Write(b); err != nil {
			fc.t.Errorf("client write: %v", err)
		}
	})
}

func (fc *frameConn) next() *frame {
	fc.t.Helper()
	fc.c.SetReadDeadline(time.Now().Add(5 * time.Second))
	f, err := fc.fr.read()
	if err != nil {
		fc.t.Fatalf("client read frame: %v", err)
	}
	f.data = append([]byte(nil), f.data...)
	return f
}

func newTCP(t *testing.T, id uint16, addr string, data []byte) []byte {
	b, err := appendNewFrame(nil, id, netTCP, addr, data)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func keep(id uint16, data []byte) []byte {
	return appendFrame(nil, id, statusKeep, optData, netip.AddrPort{}, data)
}

func end(id uint16) []byte { return appendFrame(nil, id, statusEnd, 0, netip.AddrPort{}, nil) }

// TestServerMuxTCPFrames drives TCP sessions with hand-made frames, as an Xray client
// sends them, and checks the frames that come back.
func TestServerMuxTCPFrames(t *testing.T) {
	checkGoroutines(t)
	echo := tcpTarget(t, echoTCP)
	src := tcpTarget(t, blobTCP(100<<10))
	gotEOF := make(chan []byte, 1)
	sink := tcpTarget(t, func(c net.Conn) {
		b, _ := io.ReadAll(c)
		gotEOF <- b
	})
	fc := newFrameConn(t, serve(t, dialLoopback))

	// New with data, then Keep: echoed back in Keep frames for session 1.
	fc.sendAsync(append(newTCP(t, 1, echo, []byte("hello ")), keep(1, []byte("world"))...))
	var got []byte
	for len(got) < len("hello world") {
		f := fc.next()
		if f.id != 1 || f.status != statusKeep || f.option != optData || f.dest != "" {
			t.Fatalf("frame = %+v, want Keep with data for session 1 and no address", *f)
		}
		got = append(got, f.data...)
	}
	if string(got) != "hello world" {
		t.Fatalf("echo = %q, want %q", got, "hello world")
	}

	// A 100 KiB answer comes in frames of at most 8 KiB; the target's EOF is an End
	// without the error option.
	fc.sendAsync(newTCP(t, 2, src, []byte{7}))
	want := blob(7, 100<<10)
	got = got[:0]
	for {
		f := fc.next()
		if f.id != 2 {
			t.Fatalf("frame for session %d, want 2", f.id)
		}
		if f.status == statusEnd {
			if f.option != 0 {
				t.Errorf("End after the target's EOF has option %#x, want 0", f.option)
			}
			break
		}
		if len(f.data) > chunkSize {
			t.Errorf("Keep frame of %d bytes, want <= %d", len(f.data), chunkSize)
		}
		got = append(got, f.data...)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("session 2 got %d bytes (sha %x), want %d (sha %x)", len(got), sha256.Sum256(got), len(want), sha256.Sum256(want))
	}

	// The client's End: data sent before it reaches the target, then the target sees EOF.
	fc.sendAsync(append(append(newTCP(t, 3, sink, nil), keep(3, []byte("last words"))...), end(3)...))
	select {
	case b := <-gotEOF:
		if string(b) != "last words" {
			t.Errorf("target read %q before EOF, want %q", b, "last words")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("target saw no EOF after the client's End")
	}

	// KeepAlive (with or without data) is ignored; the echo session still works.
	fc.sendAsync(append(append(appendFrame(nil, 0, statusKeepAlive, optData, netip.AddrPort{}, []byte("pad")),
		appendFrame(nil, 0, statusKeepAlive, 0, netip.AddrPort{}, nil)...), keep(1, []byte("again"))...))
	if f := fc.next(); f.id != 1 || string(f.data) != "again" {
		t.Fatalf("after KeepAlive: frame %+v, want Keep %q for session 1", *f, "again")
	}

	// Keep for a session that ended is answered with End, as Xray does.
	fc.sendAsync(keep(3, []byte("late")))
	if f := fc.next(); f.id != 3 || f.status != statusEnd {
		t.Fatalf("answer to Keep for an ended session = %+v, want End for 3", *f)
	}
}

func TestServerMuxTCPRefused(t *testing.T) {
	checkGoroutines(t)
	refuse := func(ctx context.Context, network, address string) (net.Conn, error) {
		return nil, fmt.Errorf("refused %s %s", network, address)
	}
	fc := newFrameConn(t, serve(t, refuse))
	fc.sendAsync(newTCP(t, 5, "example.com:443", []byte("GET")))
	f := fc.next()
	if f.id != 5 || f.status != statusEnd || f.option != optError {
		t.Fatalf("answer to a refused New = %+v, want End with error for 5", *f)
	}
	// Data the client had already sent for it is answered with End and dropped.
	fc.sendAsync(keep(5, []byte("more")))
	if f := fc.next(); f.id != 5 || f.status != statusEnd {
		t.Fatalf("answer to Keep after refusal = %+v, want End for 5", *f)
	}
}

// TestServerMuxBadDestination: a New frame naming a destination the server cannot use (an
// IPv6 zone sent as a domain, as an older client sent fe80::1%v0; a control character; an
// unknown address type) is answered with End+error for that session alone, while the other
// sessions of the connection go on, as do new ones.
func TestServerMuxBadDestination(t *testing.T) {
	checkGoroutines(t)
	echo := tcpTarget(t, echoTCP)
	fc := newFrameConn(t, serve(t, dialLoopback))
	// Writes block until the server reads them; one that fails shows as a missing answer
	// (the pipe is closed when the test ends).
	send := func(b []byte) { go fc.c.Write(b) }
	send(newTCP(t, 1, echo, []byte("before")))
	if f := fc.next(); f.id != 1 || string(f.data) != "before" {
		t.Fatalf("frame = %+v, want the echo of session 1", *f)
	}
	badNew := func(id uint16, atype byte, addr string) []byte {
		meta := []byte{byte(id >> 8), byte(id), statusNew, optData, netTCP, 0, 80, atype, byte(len(addr))}
		meta = append(meta, addr...)
		b := append([]byte{0, byte(len(meta))}, meta...)
		return append(b, 0, 3, 'G', 'E', 'T')
	}
	for i, bad := range [][]byte{badNew(2, 2, "fe80::1%v0"), badNew(3, 2, "a\x01b"), badNew(4, 9, "x")} {
		id := uint16(2 + i)
		send(append(bad, keep(1, []byte{byte('a' + i)})...))
		if f := fc.next(); f.id != id || f.status != statusEnd || f.option != optError {
			t.Fatalf("answer to a New frame with a bad destination = %+v, want End+error for %d", *f, id)
		}
		if f := fc.next(); f.id != 1 || string(f.data) != string(rune('a'+i)) {
			t.Fatalf("after the bad New frame: %+v, want the echo of session 1", *f)
		}
	}
	send(newTCP(t, 9, echo, []byte("after")))
	if f := fc.next(); f.id != 9 || string(f.data) != "after" {
		t.Fatalf("frame = %+v, want the echo of a new session 9", *f)
	}
	if _, err := appendNewFrame(nil, 1, netTCP, "[fe80::1%v0]:80", nil); err == nil {
		t.Errorf("appendNewFrame(%q) = nil error, want a refusal", "[fe80::1%v0]:80")
	}
}

// TestServerMuxRefuseTLS: with RefuseTLS a TCP session whose New frame starts with a TLS
// handshake record ends with End+error and its target is not even dialled; plain-text sessions, and a 0x16
// that is not the session's first byte, go through.
func TestServerMuxRefuseTLS(t *testing.T) {
	checkGoroutines(t)
	var mu sync.Mutex
	var dialled []string
	dial := func(ctx context.Context, network, address string) (net.Conn, error) {
		mu.Lock()
		dialled = append(dialled, address)
		mu.Unlock()
		return dialLoopback(ctx, network, address)
	}
	target := tcpTarget(t, func(c net.Conn) { io.Copy(io.Discard, c) })
	echo := tcpTarget(t, echoTCP)
	client, server := net.Pipe()
	served := make(chan error, 1)
	go func() { served <- ServeMux(context.Background(), server, dial, ServerOptions{RefuseTLS: true}) }()
	t.Cleanup(func() { client.Close(); server.Close() })
	c := NewClient(client)
	defer c.Close()

	hello := []byte{0x16, 0x03, 0x01, 0x02, 0x00, 0x01}
	st, err := c.DialData(context.Background(), "tcp", target, hello)
	if err != nil {
		t.Fatal(err)
	}
	st.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := st.Read(make([]byte, 10)); !errors.Is(err, ErrSessionFailed) {
		t.Errorf("Read of a session that started with a TLS record = %v, want %v", err, ErrSessionFailed)
	}
	st.Close()

	// A New frame without data: the first Keep frame decides (the target may be dialled by
	// then, but gets nothing).
	echoed := tcpTarget(t, echoTCP)
	st, err = c.Dial(context.Background(), "tcp", echoed)
	if err != nil {
		t.Fatal(err)
	}
	st.SetDeadline(time.Now().Add(5 * time.Second))
	st.Write(hello)
	if n, err := st.Read(make([]byte, 10)); !errors.Is(err, ErrSessionFailed) {
		t.Errorf("Read of a session whose first Keep frame is a TLS record = %d, %v, want %v", n, err, ErrSessionFailed)
	}
	st.Close()

	for _, first := range [][]byte{[]byte("GET / HTTP/1.1\r\n\r\n"), []byte("x")} {
		st, err := c.DialData(context.Background(), "tcp", echo, first)
		if err != nil {
			t.Fatal(err)
		}
		st.SetDeadline(time.Now().Add(5 * time.Second))
		if _, err := st.Write(hello); err != nil { // TLS-looking bytes later on are data
			t.Fatal(err)
		}
		want := append(append([]byte(nil), first...), hello...)
		back := make([]byte, len(want))
		if _, err := io.ReadFull(st, back); err != nil || !bytes.Equal(back, want) {
			t.Errorf("plain-text session starting %q: echo %q, %v, want %q", first, back, err, want)
		}
		st.Close()
	}
	// Once ServeMux has returned, every session goroutine has ended, so every dial
	// it would ever make has been made.
	c.Close()
	select {
	case err := <-served:
		if err != nil {
			t.Errorf("ServeMux after the client closed = %v, want nil", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("ServeMux did not return after the client closed")
	}
	mu.Lock()
	defer mu.Unlock()
	if slices.Contains(dialled, target) {
		t.Errorf("the refused session's target was dialled (dials: %q), want not at all", dialled)
	}
	if !slices.Contains(dialled, echo) {
		t.Errorf("dials %q do not include the plain-text sessions' target %s", dialled, echo)
	}
}

func TestServerMuxSessionCap(t *testing.T) {
	checkGoroutines(t)
	old := maxSessions
	maxSessions = 4
	defer func() { maxSessions = old }()
	echo := tcpTarget(t, echoTCP)
	fc := newFrameConn(t, serve(t, dialLoopback))
	for id := uint16(1); id <= 4; id++ {
		fc.sendAsync(newTCP(t, id, echo, []byte{byte(id)}))
		if f := fc.next(); f.id != id || !bytes.Equal(f.data, []byte{byte(id)}) {
			t.Fatalf("session %d: frame %+v, want its echo", id, *f)
		}
	}
	fc.sendAsync(newTCP(t, 5, echo, []byte{5}))
	if f := fc.next(); f.id != 5 || f.status != statusEnd || f.option != optError {
		t.Fatalf("fifth session: %+v, want End with error", *f)
	}
	// Ending one makes room.
	fc.sendAsync(append(end(1), newTCP(t, 6, echo, []byte{6})...))
	if f := fc.next(); f.id != 6 || !bytes.Equal(f.data, []byte{6}) {
		t.Fatalf("session 6 after one ended: %+v, want its echo", *f)
	}
}

// TestServerMuxTCPIdle: a session without data either way ends with End after IdleTimeout.
func TestServerMuxTCPIdle(t *testing.T) {
	checkGoroutines(t)
	old := IdleTimeout
	IdleTimeout = 200 * time.Millisecond
	defer func() { IdleTimeout = old }()
	echo := tcpTarget(t, echoTCP)
	fc := newFrameConn(t, serve(t, dialLoopback))
	fc.sendAsync(newTCP(t, 1, echo, []byte("x")))
	if f := fc.next(); f.status != statusKeep {
		t.Fatalf("frame %+v, want Keep", *f)
	}
	if f := fc.next(); f.id != 1 || f.status != statusEnd || f.option != 0 {
		t.Fatalf("after idle: %+v, want End for 1", *f)
	}
}

// TestServerMuxCancelTCP: cancelling ServerMux closes the targets and returns, even with a
// session whose target does not read.
func TestServerMuxCancelTCP(t *testing.T) {
	checkGoroutines(t)
	closed, started, returned := make(chan struct{}), make(chan struct{}), make(chan struct{})
	stuck := tcpTarget(t, func(c net.Conn) {
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		var b [1]byte
		c.Read(b[:]) // one byte, then nothing until ServerMux has returned: the session's writes fill the buffers
		close(started)
		<-returned
		// Drain what the kernel already holds in big reads; only the close
		// that follows ends the loop.
		buf := make([]byte, 64<<10)
		for {
			if _, err := c.Read(buf); err != nil {
				break
			}
		}
		close(closed)
	})
	t.Cleanup(func() {
		select {
		case <-returned:
		default:
			close(returned) // the test failed early; free the target
		}
	})
	client, server := net.Pipe()
	defer client.Close()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- ServerMux(ctx, server, dialLoopback) }()
	go func() {
		client.Write(newTCP(t, 1, stuck, nil))
		for range 200 {
			if _, err := client.Write(keep(1, make([]byte, 32<<10))); err != nil {
				return
			}
		}
	}()
	select {
	case <-started:
	case <-time.After(5 * time.Second):
		t.Fatal("the target got nothing")
	}
	// The target has read one byte of a 32 KiB frame and reads no more until
	// ServerMux has returned: the session holds data it cannot deliver.
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("ServerMux after cancel = %v, want nil", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("ServerMux did not return after cancel")
	}
	close(returned)
	select {
	case <-closed:
	case <-time.After(5 * time.Second):
		t.Fatal("the target was not closed")
	}
}

// TestClientServerTCP runs many Client streams over one pipe to ServerMux, in parallel,
// and checks every byte.
func TestClientServerTCP(t *testing.T) {
	checkGoroutines(t)
	echo := tcpTarget(t, echoTCP)
	src := tcpTarget(t, blobTCP(300<<10))
	c := NewClient(serve(t, dialLoopback))
	defer c.Close()

	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for i := range 24 {
		wg.Go(func() {
			ctx := context.Background()
			if i%2 == 0 {
				st, err := c.Dial(ctx, "tcp", src)
				if err != nil {
					errs <- err
					return
				}
				defer st.Close()
				st.Write([]byte{byte(i)})
				st.SetReadDeadline(time.Now().Add(10 * time.Second))
				got, err := io.ReadAll(st)
				if want := blob(byte(i), 300<<10); err != nil || !bytes.Equal(got, want) {
					errs <- fmt.Errorf("stream %d: read %d bytes, %v; want %d bytes", i, len(got), err, len(want))
				}
				return
			}
			st, err := c.Dial(ctx, "tcp", echo)
			if err != nil {
				errs <- err
				return
			}
			defer st.Close()
			want := blob(byte(i), 50<<10+i)
			go st.Write(want)
			got := make([]byte, len(want))
			st.SetReadDeadline(time.Now().Add(10 * time.Second))
			if _, err := io.ReadFull(st, got); err != nil || !bytes.Equal(got, want) {
				errs <- fmt.Errorf("echo stream %d: %v, equal %v", i, err, bytes.Equal(got, want))
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

func TestClientServerErrors(t *testing.T) {
	checkGoroutines(t)
	refuse := func(ctx context.Context, network, address string) (net.Conn, error) {
		if address == "refused.test:1" {
			return nil, errors.New("refused")
		}
		return dialLoopback(ctx, network, address)
	}
	c := NewClient(serve(t, refuse))
	defer c.Close()
	st, err := c.Dial(context.Background(), "tcp", "refused.test:1")
	if err != nil {
		t.Fatal(err)
	}
	st.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := st.Read(make([]byte, 1)); !errors.Is(err, ErrSessionFailed) {
		t.Errorf("Read of a refused stream = %v, want ErrSessionFailed", err)
	}
	st.Close()

	// A read deadline in the past times out; Close makes Read fail with ErrClosed.
	echo := tcpTarget(t, echoTCP)
	st, err = c.Dial(context.Background(), "tcp", echo)
	if err != nil {
		t.Fatal(err)
	}
	st.SetReadDeadline(time.Now().Add(-time.Second))
	if _, err := st.Read(make([]byte, 1)); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Errorf("Read past the deadline = %v, want ErrDeadlineExceeded", err)
	}
	st.Close()
	if _, err := st.Read(make([]byte, 1)); !errors.Is(err, net.ErrClosed) {
		t.Errorf("Read after Close = %v, want net.ErrClosed", err)
	}
	if _, err := c.Dial(context.Background(), "sctp", echo); err == nil {
		t.Error("Dial(sctp) = nil error, want one")
	}
}

func TestClientServerUDP(t *testing.T) {
	checkGoroutines(t)
	echo := udpEcho(t, "u:")
	c := NewClient(serve(t, dialLoopback))
	defer c.Close()
	st, err := c.Dial(context.Background(), "udp", echo.String())
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	buf := make([]byte, 9000)
	for _, msg := range []string{"one", "two", string(make([]byte, 8000))} {
		if _, err := st.Write([]byte(msg)); err != nil {
			t.Fatal(err)
		}
		st.SetReadDeadline(time.Now().Add(5 * time.Second))
		n, err := st.Read(buf)
		if err != nil || string(buf[:n]) != "u:"+msg {
			t.Fatalf("datagram = %d bytes, %v, want %d bytes", n, err, len(msg)+2)
		}
	}
	if _, err := st.Write(make([]byte, maxPacketData+1)); err == nil {
		t.Error("Write of a datagram over 8 KiB = nil error, want one")
	}
}

// FuzzServerMux feeds arbitrary frame sequences to ServerMux (with a dial that accepts
// TCP into an in-memory sink and refuses UDP): it must neither panic nor hang.
func FuzzServerMux(f *testing.F) {
	t0 := appendFrame(nil, 1, statusKeep, optData, netip.AddrPort{}, []byte("data"))
	for _, tt := range frameVectors {
		f.Add(unhex(f, tt.wire))
	}
	for _, dest := range []string{"example.com:443", "10.0.0.1:22"} {
		b, _ := appendNewFrame(nil, 1, netTCP, dest, []byte("hi"))
		f.Add(append(append(append([]byte(nil), b...), t0...), end(1)...))
		f.Add(append(append(append([]byte(nil), b...), b...), end(1)...))
	}
	f.Fuzz(serveFuzzInput)
}

func serveFuzzInput(t *testing.T, in []byte) {
	var wg sync.WaitGroup
	defer wg.Wait()
	dial := func(ctx context.Context, network, address string) (net.Conn, error) {
		if network != "tcp" {
			return nil, errors.New("refused")
		}
		a, b := net.Pipe()
		wg.Go(func() { io.Copy(io.Discard, b); b.Close() })
		return a, nil
	}
	client, server := net.Pipe()
	done := make(chan error, 1)
	go func() {
		err := ServerMux(context.Background(), server, dial)
		server.Close() // the rest of in is not read: let Write return
		done <- err
	}()
	wg.Go(func() { io.Copy(io.Discard, client) })
	client.SetWriteDeadline(time.Now().Add(5 * time.Second))
	client.Write(in)
	client.Close()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("ServerMux did not return after the client closed")
	}
}

// TestServerMuxIdleConn: a connection without sessions ends after one to two IdleConnCheck
// periods; one with a live session does not. It runs in a synctest bubble with the real
// periods: the fake clock makes the periods pass for certain (the idle check has had its
// ticks, however busy the machine), so "did not end" is a verdict, not a guess. The
// session's target is an in-memory echo, as the bubble cannot wait on real sockets.
func TestServerMuxIdleConn(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		client, server := net.Pipe()
		defer client.Close()
		done := make(chan error, 1)
		start := time.Now()
		go func() { done <- ServerMux(context.Background(), server, dialLoopback) }()
		if err := <-done; err != nil {
			t.Errorf("ServerMux on an idle connection = %v, want nil", err)
		}
		if d := time.Since(start); d < IdleConnCheck || d > 2*IdleConnCheck {
			t.Errorf("idle connection ended after %v, want %v to %v", d, IdleConnCheck, 2*IdleConnCheck)
		}

		live := 5 * IdleConnCheck / 2 // two checks that see the session
		if live >= IdleTimeout {
			t.Fatalf("%v with a live session would pass the session's IdleTimeout %v", live, IdleTimeout)
		}
		fc := newFrameConn(t, serve(t, dialPipeEcho(t)))
		fc.sendAsync(newTCP(t, 1, "echo.test:7", []byte("x")))
		fc.next()
		time.Sleep(live)
		fc.sendAsync(keep(1, []byte("still here")))
		if f := fc.next(); f.id != 1 || string(f.data) != "still here" {
			t.Fatalf("after %v with a live session: %+v, want the echo", live, *f)
		}
	})
}

// dialPipeEcho returns a Dial whose every connection is an in-memory echo; the echo
// goroutines are waited for when the test ends.
func dialPipeEcho(t *testing.T) Dial {
	var wg sync.WaitGroup
	t.Cleanup(wg.Wait)
	return func(ctx context.Context, network, address string) (net.Conn, error) {
		a, b := net.Pipe()
		wg.Go(func() { echoTCP(b); b.Close() })
		return a, nil
	}
}
