package relay

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/burrow-vpn/burrow/internal/bidi"
	"github.com/burrow-vpn/burrow/internal/meter"
	"github.com/burrow-vpn/burrow/internal/relaylink"
	"github.com/burrow-vpn/burrow/internal/transport/xhttp"
	"github.com/burrow-vpn/burrow/internal/trunk"
)

// readSizes is a client connection that reports the size of the buffer
// each Read is given.
type readSizes struct {
	net.Conn
	sizes chan int
}

func (c readSizes) Read(p []byte) (int, error) {
	c.sizes <- len(p)
	return c.Conn.Read(p)
}

// Stream headers for tests: the exit tells them apart by their bytes.
var (
	testClientHdr = []byte("relay client header")
	testTrunkHdr  = []byte("relay trunk  header")
	testProbeHdr  = []byte("relay probe  header")
)

// echoExit serves XHTTP on a loopback listener: every session reads a
// stream header (testClientHdr or testTrunkHdr), then echoes; a trunk is
// answered with TrunkOK and each of its streams echoed. With trunks false
// it is an exit from before trunks: a trunk session is closed at once. It
// returns the listener's address.
func echoExit(t *testing.T, trunks bool) string {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	echo := func(c net.Conn) {
		io.Copy(c, c)
		c.(interface{ CloseWrite() error }).CloseWrite()
	}
	hub := xhttp.NewHub(ctx, xhttp.HubConfig{Handle: func(ctx context.Context, c net.Conn) {
		defer c.Close()
		hdr := make([]byte, len(testClientHdr))
		if _, err := io.ReadFull(c, hdr); err != nil {
			return
		}
		switch {
		case bytes.Equal(hdr, testProbeHdr):
			c.Write([]byte{relaylink.ProbeOK})
		case bytes.Equal(hdr, testClientHdr):
			echo(c)
		case bytes.Equal(hdr, testTrunkHdr) && trunks:
			c.Write([]byte{relaylink.TrunkOK})
			tr := trunk.New(c, func(s *trunk.Stream) {
				go func() { defer s.Close(); echo(s) }()
			})
			stop := context.AfterFunc(ctx, func() { tr.Close() })
			defer stop()
			tr.Wait()
		}
	}})
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Go(func() {
				defer c.Close()
				stop := context.AfterFunc(ctx, func() { c.Close() })
				defer stop()
				hub.ServeConn(ctx, c, xhttp.ConnOptions{})
			})
		}
	})
	t.Cleanup(func() {
		cancel()
		ln.Close()
		hub.Close()
		wg.Wait()
	})
	return ln.Addr().String()
}

// echoExitFor is the relay's exit for an echoExit at addr.
func echoExitFor(t *testing.T, addr string) *exit {
	t.Helper()
	e := testExit()
	e.client, e.trunks.hdr, e.probe = testClientHdr, testTrunkHdr, testProbeHdr
	var err error
	e.pool, err = xhttp.NewDialer(xhttp.DialerConfig{Host: "exit.test", Path: "/", Dial: func(ctx context.Context) (net.Conn, func() int64, error) {
		var d net.Dialer
		c, err := d.DialContext(ctx, "tcp", addr)
		if err != nil {
			return nil, nil, err
		}
		var rx atomic.Int64
		return meter.NewConn(c, meter.Unlimited{AddFunc: func(n int64) { rx.Add(n) }}, meter.Unlimited{}), rx.Load, nil
	}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.trunks.closeAll(); e.pool.Close() })
	return e
}

// TestIdleConnectionSmallBuffer: a relayed client connection that is idle
// is read into a small buffer; a burst takes a large one, which is given
// back once the burst ends. (The relay once copied with io.Copy, which
// holds 32 KiB per direction for the life of every connection: with 2,000
// idle clients that was most of the relay's memory; bench/relay_mem_test.go.)
func TestIdleConnectionSmallBuffer(t *testing.T) {
	r := &Relay{log: slog.New(slog.DiscardHandler)}
	r.exits.exits = []*exit{echoExitFor(t, echoExit(t, true))}

	client, relaySide := net.Pipe()
	sizes := make(chan int, 64)
	done := make(chan struct{})
	go func() {
		defer close(done)
		r.handle(context.Background(), readSizes{relaySide, sizes})
	}()
	defer func() { client.Close(); <-done }()

	exchange := func(msg []byte) {
		t.Helper()
		errc := make(chan error, 1)
		go func() { _, err := client.Write(msg); errc <- err }()
		got := make([]byte, len(msg))
		if _, err := io.ReadFull(client, got); err != nil || !bytes.Equal(got, msg) {
			t.Fatalf("echo through the relay of %d bytes: %v (equal %v)", len(msg), err, bytes.Equal(got, msg))
		}
		if err := <-errc; err != nil {
			t.Fatal(err)
		}
	}
	// next returns the size of the next Read the relay makes.
	next := func() int { return <-sizes }

	exchange([]byte("x"))
	if n := next(); n > bidi.IdleRead {
		t.Fatalf("the first read of a client connection got a %d-byte buffer, want at most %d", n, bidi.IdleRead)
	}
	if n := next(); n > bidi.IdleRead {
		t.Fatalf("an idle connection waits with a %d-byte buffer, want at most %d", n, bidi.IdleRead)
	}
	burst := bytes.Repeat([]byte("0123456789abcdef"), 4<<10) // 64 KiB
	exchange(burst)
	large := 0
	for n := next(); ; n = next() {
		if n > bidi.IdleRead {
			large++
			continue
		}
		break // the read the connection idles in
	}
	if large == 0 {
		t.Error("a 64 KiB burst was read in small pieces only, want a large buffer while data flows")
	}
	exchange([]byte("y"))
	if n := next(); n > bidi.IdleRead {
		t.Errorf("after the burst the connection waits with a %d-byte buffer, want at most %d", n, bidi.IdleRead)
	}
}

// relayed returns a client connection carried by r (the relay's side of it
// runs handle).
func relayed(t *testing.T, r *Relay) net.Conn {
	t.Helper()
	client, relaySide := net.Pipe()
	done := make(chan struct{})
	go func() {
		defer close(done)
		r.handle(context.Background(), relaySide)
	}()
	t.Cleanup(func() { client.Close(); <-done })
	return client
}

// echoThrough sends msg on c and checks that it comes back intact.
func echoThrough(c net.Conn, msg []byte) error {
	errc := make(chan error, 1)
	go func() { _, err := c.Write(msg); errc <- err }()
	got := make([]byte, len(msg))
	if _, err := io.ReadFull(c, got); err != nil {
		return err
	}
	if !bytes.Equal(got, msg) {
		return errors.New("the echo came back different")
	}
	return <-errc
}

// TestClientsShareTrunks: many client connections ride a few trunks (no
// more than maxTrunks), each carried intact, and none is left open on a
// trunk once its client has gone.
func TestClientsShareTrunks(t *testing.T) {
	e := echoExitFor(t, echoExit(t, true))
	r := &Relay{log: slog.New(slog.DiscardHandler)}
	r.exits.exits = []*exit{e}
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for i := range 64 {
		c := relayed(t, r)
		wg.Go(func() {
			msg := bytes.Repeat([]byte{byte(i)}, 1+i*997)
			if err := echoThrough(c, msg); err != nil {
				errs <- err
			}
			c.Close()
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if n := e.trunks.count(); n < 1 || n > maxTrunks {
		t.Errorf("64 clients rode %d trunks, want 1 to %d", n, maxTrunks)
	}
	if got := e.opened.Load(); got != 64 {
		t.Errorf("streams counted %d, want 64", got)
	}
	deadline := time.Now().Add(10 * time.Second)
	for openStreams(e) > 0 {
		if time.Now().After(deadline) {
			t.Fatalf("%d streams still open on the trunks after every client left", openStreams(e))
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// openStreams counts the streams open on e's trunks.
func openStreams(e *exit) int {
	e.trunks.mu.Lock()
	defer e.trunks.mu.Unlock()
	n := 0
	for _, tr := range e.trunks.open {
		n += tr.Streams()
	}
	return n
}

// TestSlowClientStallsOnlyItself: a client that sends but never reads
// fills its own stream's window; the clients beside it on the same trunk
// are carried on.
func TestSlowClientStallsOnlyItself(t *testing.T) {
	e := echoExitFor(t, echoExit(t, true))
	r := &Relay{log: slog.New(slog.DiscardHandler)}
	r.exits.exits = []*exit{e}
	slow := relayed(t, r)
	go slow.Write(make([]byte, 8*trunk.Window)) // echoed back to a client that never reads
	fast := relayed(t, r)
	msg := make([]byte, 4<<20)
	for i := range msg {
		msg[i] = byte(i * 7)
	}
	if err := echoThrough(fast, msg); err != nil {
		t.Fatalf("beside a client that does not read, 4 MiB: %v", err)
	}
	// Both rode trunks (not sessions of their own, where HTTP/2 would
	// have kept them apart).
	if n := e.trunks.count(); n < 1 {
		t.Fatal("no trunk to the exit")
	}
	if s := openStreams(e); s != 2 {
		t.Fatalf("%d streams on the trunks, want the two clients'", s)
	}
}

// TestExitWithoutTrunks: an exit from before trunks closes a trunk
// session unanswered; the relay then gives each client a session of its
// own, and says so once.
func TestExitWithoutTrunks(t *testing.T) {
	e := echoExitFor(t, echoExit(t, false))
	var logs bytes.Buffer
	var mu sync.Mutex
	e.log = slog.New(slog.NewTextHandler(lockedWriter{&mu, &logs}, nil))
	r := &Relay{log: slog.New(slog.DiscardHandler)}
	r.exits.exits = []*exit{e}
	for i := range 3 {
		if err := echoThrough(relayed(t, r), []byte{'a' + byte(i)}); err != nil {
			t.Fatalf("client %d through an exit without trunks: %v", i, err)
		}
	}
	if n := e.trunks.count(); n != 0 {
		t.Errorf("%d trunks to an exit that takes none", n)
	}
	mu.Lock()
	defer mu.Unlock()
	if n := strings.Count(logs.String(), "takes no trunks"); n != 1 {
		t.Errorf("the relay said %d times that the exit takes no trunks, want once:\n%s", n, logs.String())
	}
}

type lockedWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (l lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}
