package trunk

import (
	"bytes"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"runtime"
	"sync"
	"testing"
	"time"

	"golang.org/x/net/nettest"
)

// pair returns an opening and an accepting trunk over a loopback TCP
// connection, and the accepted streams.
func pair(t *testing.T) (*Trunk, *Trunk, chan *Stream) {
	t.Helper()
	a, b := tcpPair(t)
	accepted := make(chan *Stream, MaxStreams)
	opener := New(a, nil)
	acceptor := New(b, func(s *Stream) { accepted <- s })
	t.Cleanup(func() { opener.Close(); acceptor.Close() })
	return opener, acceptor, accepted
}

func tcpPair(t *testing.T) (net.Conn, net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	got := make(chan net.Conn, 1)
	go func() {
		c, _ := ln.Accept()
		got <- c
	}()
	a, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	b := <-got
	if b == nil {
		t.Fatal("accept failed")
	}
	return a, b
}

func openPair(t *testing.T, opener *Trunk, accepted chan *Stream) (*Stream, *Stream) {
	t.Helper()
	s, err := opener.Open()
	if err != nil {
		t.Fatal(err)
	}
	select {
	case p := <-accepted:
		return s, p
	case <-time.After(10 * time.Second):
		t.Fatal("the other side never saw the stream")
	}
	return nil, nil
}

// TestStreamConn runs the net.Conn conformance suite on a pair of streams.
func TestStreamConn(t *testing.T) {
	nettest.TestConn(t, func() (c1, c2 net.Conn, stop func(), err error) {
		a, b := net.Pipe()
		accepted := make(chan *Stream, 1)
		opener := New(a, nil)
		acceptor := New(b, func(s *Stream) { accepted <- s })
		s, err := opener.Open()
		if err != nil {
			return nil, nil, nil, err
		}
		p := <-accepted
		return s, p, func() { s.Close(); p.Close(); opener.Close(); acceptor.Close() }, nil
	})
}

// TestManyStreamsIntact: streams opened at once each carry their own bytes
// both ways, intact.
func TestManyStreamsIntact(t *testing.T) {
	opener, _, accepted := pair(t)
	go func() { // the accepting side echoes every stream
		for s := range accepted {
			go func() {
				io.Copy(s, s)
				s.CloseWrite()
			}()
		}
	}()
	var wg sync.WaitGroup
	errs := make(chan error, 32)
	for i := range 32 {
		wg.Go(func() {
			s, err := opener.Open()
			if err != nil {
				errs <- err
				return
			}
			defer s.Close()
			msg := make([]byte, 100_000+i*7_919)
			rand.Read(msg)
			go func() { s.Write(msg); s.CloseWrite() }()
			got, err := io.ReadAll(s)
			if err != nil || !bytes.Equal(got, msg) {
				errs <- fmt.Errorf("stream %d came back as %d of %d bytes: %v", i, len(got), len(msg), err)
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if n := opener.Streams(); n != 0 {
		t.Errorf("%d streams still open after every one closed both ways", n)
	}
}

// TestSlowReaderStallsOnlyItself: a stream whose reader never reads holds
// up its own writer at the window, not the other streams of the trunk.
func TestSlowReaderStallsOnlyItself(t *testing.T) {
	opener, _, accepted := pair(t)
	slow, _ := openPair(t, opener, accepted) // the accepting side never reads it
	wrote := make(chan int, 1)
	go func() {
		n, _ := slow.Write(make([]byte, 4*Window))
		wrote <- n
	}()
	fast, fastPeer := openPair(t, opener, accepted)
	msg := make([]byte, 8<<20)
	rand.Read(msg)
	go func() { fast.Write(msg); fast.CloseWrite() }()
	got, err := io.ReadAll(fastPeer)
	if err != nil || !bytes.Equal(got, msg) {
		t.Fatalf("beside a stalled stream, 8 MiB arrived as %d bytes (%v)", len(got), err)
	}
	select {
	case n := <-wrote:
		t.Fatalf("the stalled stream's Write returned (%d bytes) though nothing read it", n)
	default:
	}
	slow.SetWriteDeadline(time.Now())
	if n := <-wrote; n != Window {
		t.Errorf("the stalled stream sent %d bytes, want its window %d", n, Window)
	}
}

// TestHalfClose: after CloseWrite the other side reads io.EOF and can go
// on writing.
func TestHalfClose(t *testing.T) {
	opener, _, accepted := pair(t)
	s, p := openPair(t, opener, accepted)
	s.Write([]byte("request"))
	s.CloseWrite()
	got, err := io.ReadAll(p)
	if err != nil || string(got) != "request" {
		t.Fatalf("read %q, %v; want the request then EOF", got, err)
	}
	if _, err := p.Write([]byte("answer")); err != nil {
		t.Fatal(err)
	}
	p.Close()
	got, err = io.ReadAll(s)
	if err != nil || string(got) != "answer" {
		t.Fatalf("read %q, %v; want the answer then EOF", got, err)
	}
	s.Close()
	waitFor(t, func() bool { return opener.Streams() == 0 }, "the stream closed both ways is forgotten")
}

// TestLingerZeroResets: Close after SetLinger(0) reaches the other side
// as ErrReset, after the bytes written before.
func TestLingerZeroResets(t *testing.T) {
	opener, _, accepted := pair(t)
	s, p := openPair(t, opener, accepted)
	p.Write([]byte("last words"))
	p.SetLinger(0)
	p.Close()
	got, err := io.ReadAll(s)
	if string(got) != "last words" || !errors.Is(err, ErrReset) {
		t.Fatalf("read %q, %v; want the last words then ErrReset", got, err)
	}
	if _, err := s.Write([]byte("x")); !errors.Is(err, ErrReset) {
		t.Errorf("a write after the reset: %v, want ErrReset", err)
	}
}

// TestLateDataIsReset: a stream closed on one side while the other still
// writes: the writer gets ErrReset, and the trunk carries on.
func TestLateDataIsReset(t *testing.T) {
	opener, _, accepted := pair(t)
	s, p := openPair(t, opener, accepted)
	p.Close()
	var err error
	for range 1000 {
		if _, err = s.Write([]byte("still talking")); err != nil {
			break
		}
		time.Sleep(time.Millisecond)
	}
	if !errors.Is(err, ErrReset) {
		t.Fatalf("writing to a stream closed on the other side: %v, want ErrReset", err)
	}
	s2, p2 := openPair(t, opener, accepted)
	s2.Write([]byte("ok"))
	b := make([]byte, 2)
	if _, err := io.ReadFull(p2, b); err != nil || string(b) != "ok" {
		t.Fatalf("the next stream: %q, %v", b, err)
	}
}

// frame is one frame as it goes on the wire.
func frame(typ byte, id uint32, payload []byte) []byte {
	b := []byte{typ, 0, 0, 0, 0, 0, 0}
	binary.BigEndian.PutUint32(b[1:5], id)
	binary.BigEndian.PutUint16(b[5:7], uint16(len(payload)))
	return append(b, payload...)
}

// TestBrokenFramesEndTheTrunk: a frame that breaks the rules ends the
// trunk with ErrProtocol, and every stream on it with an error.
func TestBrokenFramesEndTheTrunk(t *testing.T) {
	cases := map[string][]byte{
		"unknown type":      frame(9, 1, nil),
		"oversize":          {frameData, 0, 0, 0, 1, 0xff, 0xff},
		"id not counting":   append(frame(frameOpen, 5, nil), frame(frameOpen, 5, nil)...),
		"open with payload": frame(frameOpen, 1, []byte("x")),
		"beyond the window": func() []byte {
			b := frame(frameOpen, 1, nil)
			for range Window/MaxPayload + 2 {
				b = append(b, frame(frameData, 1, make([]byte, MaxPayload))...)
			}
			return b
		}(),
		"data after fin": append(append(frame(frameOpen, 1, nil), frame(frameFin, 1, nil)...), frame(frameData, 1, []byte("x"))...),
		"short credit":   append(frame(frameOpen, 1, nil), frame(frameCredit, 1, []byte{1})...),
		// More credit than was ever sent: on a 32-bit build 1<<31 made
		// the sender's credit negative and its next Write panic.
		"credit beyond the window":      append(frame(frameOpen, 1, nil), frame(frameCredit, 1, []byte{0x80, 0, 0, 0})...),
		"zero credit":                   append(frame(frameOpen, 1, nil), frame(frameCredit, 1, []byte{0, 0, 0, 0})...),
		"data on a stream never opened": frame(frameData, 7, []byte("x")),
	}
	for name, garbage := range cases {
		t.Run(name, func(t *testing.T) {
			a, b := tcpPair(t)
			defer a.Close()
			var streams []*Stream
			var mu sync.Mutex
			tr := New(b, func(s *Stream) { mu.Lock(); streams = append(streams, s); mu.Unlock() })
			a.Write(garbage)
			select {
			case <-tr.Done():
			case <-time.After(10 * time.Second):
				t.Fatal("the trunk did not end")
			}
			if !errors.Is(tr.Err(), ErrProtocol) {
				t.Fatalf("ended with %v, want ErrProtocol", tr.Err())
			}
			mu.Lock()
			defer mu.Unlock()
			for _, s := range streams {
				if _, err := s.Write([]byte("x")); err == nil {
					t.Error("a stream of the broken trunk still takes writes")
				}
			}
		})
	}
	// Opens beyond MaxStreams are answered with resets; an opener that
	// goes on opening while it reads none of them ends the trunk, rather
	// than leave a goroutine per Open waiting to write its reset.
	t.Run("opens beyond MaxStreams", func(t *testing.T) {
		a, b := net.Pipe() // unbuffered: nothing written to a is taken until a reads
		defer a.Close()
		tr := New(b, func(*Stream) {})
		go func() {
			for id := uint32(1); id <= MaxStreams+maxResetting+1; id++ {
				if _, err := a.Write(frame(frameOpen, id, nil)); err != nil {
					return
				}
			}
		}()
		select {
		case <-tr.Done():
		case <-time.After(20 * time.Second):
			t.Fatalf("the trunk did not end; %d streams", tr.Streams())
		}
		if !errors.Is(tr.Err(), ErrProtocol) {
			t.Fatalf("ended with %v, want ErrProtocol", tr.Err())
		}
	})
	t.Run("open to the opening side", func(t *testing.T) {
		a, b := tcpPair(t)
		defer a.Close()
		tr := New(b, nil)
		a.Write(frame(frameOpen, 1, nil))
		<-tr.Done()
		if !errors.Is(tr.Err(), ErrProtocol) {
			t.Fatalf("ended with %v, want ErrProtocol", tr.Err())
		}
	})
}

// TestCloseWithUnreadDataResets: a stream closed with bytes it never read
// resets (as a TCP socket does), so the other side's Write, waiting for
// the credit those bytes hold, fails instead of waiting for ever, and
// neither side keeps the stream.
func TestCloseWithUnreadDataResets(t *testing.T) {
	opener, acceptor, accepted := pair(t)
	s, peer := openPair(t, opener, accepted)
	errc := make(chan error, 1)
	go func() {
		_, err := s.Write(make([]byte, Window+MaxPayload)) // one frame more than the window
		errc <- err
	}()
	waitFor(t, func() bool {
		peer.mu.Lock()
		defer peer.mu.Unlock()
		return peer.rbuf.Len() == Window
	}, "the window to fill")
	peer.Close()
	select {
	case err := <-errc:
		if !errors.Is(err, ErrReset) {
			t.Fatalf("the writer's Write ended with %v, want ErrReset", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the writer still waits for credit after the reader closed")
	}
	s.Close()
	waitFor(t, func() bool { return opener.Streams() == 0 && acceptor.Streams() == 0 }, "both sides to forget the stream")
}

// TestTrunkEndFailsStreams: when the connection under a trunk ends, its
// streams' reads and writes fail instead of waiting.
func TestTrunkEndFailsStreams(t *testing.T) {
	opener, acceptor, accepted := pair(t)
	s, _ := openPair(t, opener, accepted)
	errc := make(chan error, 1)
	go func() { _, err := s.Read(make([]byte, 1)); errc <- err }()
	acceptor.Close()
	select {
	case err := <-errc:
		if err == nil || errors.Is(err, io.EOF) {
			t.Fatalf("read on a broken trunk: %v, want an error", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("a read on a broken trunk waited on")
	}
	if _, err := opener.Open(); err == nil {
		t.Error("a broken trunk opened a stream")
	}
}

func waitFor(t *testing.T, cond func() bool, what string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("never: %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestRecvQueueMatchesBuffer: the receive queue gives back what it was
// given, in order, whatever the sizes of writes and reads, and holds no
// chunk once empty.
func TestRecvQueueMatchesBuffer(t *testing.T) {
	var q recvQueue
	var want bytes.Buffer
	var seq byte
	sizes := []int{1, 30, 7, MaxPayload, MaxPayload - 1, 5000, 2, 40000}
	for round := range 2000 {
		w := sizes[round%len(sizes)]
		p := make([]byte, w)
		for i := range p {
			p[i] = seq
			seq++
		}
		q.Write(p)
		want.Write(p)
		r := make([]byte, sizes[(round*3+1)%len(sizes)])
		n := q.Read(r)
		exp := want.Next(n)
		if !bytes.Equal(r[:n], exp) || q.Len() != want.Len() {
			t.Fatalf("round %d: read %d bytes differing from the reference (queue %d, reference %d)", round, n, q.Len(), want.Len())
		}
	}
	rest := make([]byte, q.Len())
	if n := q.Read(rest); n != len(rest) || !bytes.Equal(rest, want.Bytes()) {
		t.Fatal("the rest of the queue differs")
	}
	if len(q.chunks) != 0 {
		t.Errorf("an empty queue holds %d chunks", len(q.chunks))
	}
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

// TestSink: a sink gets every byte, then done with nil after the other
// side's Fin, or with ErrReset after its reset; idle sinks hold no
// goroutine.
func TestSink(t *testing.T) {
	opener, _, accepted := pair(t)
	s, p := openPair(t, opener, accepted)
	var got lockedBuffer
	type end struct {
		n   int64
		err error
	}
	ended := make(chan end, 1)
	s.Sink(&got, func(n int64, err error) { ended <- end{n, err} })
	msg := make([]byte, 3<<20)
	rand.Read(msg)
	p.Write(msg)
	p.CloseWrite()
	select {
	case e := <-ended:
		if e.err != nil || e.n != int64(len(msg)) || !bytes.Equal(got.b.Bytes(), msg) {
			t.Fatalf("sink ended with %d bytes, %v; want %d intact and nil", e.n, e.err, len(msg))
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the sink never ended")
	}

	s, p = openPair(t, opener, accepted)
	s.Sink(io.Discard, func(n int64, err error) { ended <- end{n, err} })
	p.Write([]byte("bye"))
	p.SetLinger(0)
	p.Close()
	if e := <-ended; !errors.Is(e.err, ErrReset) || e.n != 3 {
		t.Fatalf("sink after a reset: %d bytes, %v; want 3 and ErrReset", e.n, e.err)
	}

	before := runtime.NumGoroutine()
	var idle []*Stream
	for range 200 {
		s, p := openPair(t, opener, accepted)
		s.Sink(io.Discard, func(int64, error) {})
		p.Write([]byte("x")) // a drain runs, writes, and goes
		idle = append(idle, s)
	}
	waitFor(t, func() bool { return runtime.NumGoroutine() < before+20 }, "200 idle sinks hold no goroutine each")
	for _, s := range idle {
		s.Close()
	}
}
