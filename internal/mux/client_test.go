package mux

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"sync"
	"testing"
	"testing/iotest"
	"testing/synctest"
	"time"
)

// TestDialDataWire checks the frames Dial and DialData send: the first data in the New
// frame (chunkSize at most for TCP), the rest in Keep frames.
func TestDialDataWire(t *testing.T) {
	cl, peer := net.Pipe()
	c := NewClient(cl)
	defer c.Close()
	defer peer.Close()
	fc := newFrameConn(t, peer)
	big := blob(1, 20<<10)
	tests := []struct {
		name    string
		network string
		data    []byte
		newData []byte   // data of the New frame; nil: no data option
		keeps   []string // data of the Keep frames that follow
	}{
		{"dial", "tcp", nil, nil, nil},
		{"empty data is none", "tcp", []byte{}, nil, nil},
		{"small", "tcp", []byte("GET / HTTP/1.1\r\n"), []byte("GET / HTTP/1.1\r\n"), nil},
		{"20 KiB", "tcp", big, big[:chunkSize], []string{string(big[chunkSize : 2*chunkSize]), string(big[2*chunkSize:])}},
		{"udp datagram", "udp", []byte("dns?"), []byte("dns?"), nil},
	}
	for _, tt := range tests {
		st, err := c.DialData(context.Background(), tt.network, "example.com:443", tt.data)
		if err != nil {
			t.Fatalf("%s: DialData = %v", tt.name, err)
		}
		id := st.(*stream).id
		f := fc.next()
		wantNet := byte(netTCP)
		if tt.network == "udp" {
			wantNet = netUDP
		}
		if f.id != id || f.status != statusNew || f.network != wantNet || f.dest != "example.com:443" ||
			(f.option&optData != 0) != (tt.newData != nil) || !bytes.Equal(f.data, tt.newData) {
			t.Fatalf("%s: New frame = %+v, want id %d, network %d, data %q", tt.name, *f, id, wantNet, tt.newData)
		}
		for _, want := range tt.keeps {
			if f := fc.next(); f.id != id || f.status != statusKeep || string(f.data) != want {
				t.Fatalf("%s: frame after New = %+v, want Keep with %d bytes", tt.name, *f, len(want))
			}
		}
		if got := c.Len(); got != 1 {
			t.Errorf("%s: Len with one stream = %d, want 1", tt.name, got)
		}
		st.Close()
		if f := fc.next(); f.id != id || f.status != statusEnd {
			t.Fatalf("%s: frame after Close = %+v, want End", tt.name, *f)
		}
	}
	if _, err := c.DialData(context.Background(), "udp", "example.com:53", make([]byte, maxPacketData+1)); err == nil {
		t.Error("DialData(udp) with a datagram over 8 KiB = nil error, want one")
	}
}

// TestDialDataServer: ServerMux takes the data of New frames, for TCP and UDP.
func TestDialDataServer(t *testing.T) {
	checkGoroutines(t)
	echo := tcpTarget(t, echoTCP)
	uecho := udpEcho(t, "u:")
	c := NewClient(serve(t, dialLoopback))
	defer c.Close()
	for _, n := range []int{5, 8 << 10, 100 << 10} {
		want := blob(byte(n), n)
		st, err := c.DialData(context.Background(), "tcp", echo, want)
		if err != nil {
			t.Fatal(err)
		}
		st.SetReadDeadline(time.Now().Add(5 * time.Second))
		got := make([]byte, n)
		if _, err := io.ReadFull(st, got); err != nil || !bytes.Equal(got, want) {
			t.Errorf("echo of %d bytes of DialData: %v, equal %v", n, err, bytes.Equal(got, want))
		}
		st.Close()
	}
	st, err := c.DialData(context.Background(), "udp", uecho.String(), []byte("first"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	st.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 100)
	if n, err := st.Read(buf); err != nil || string(buf[:n]) != "u:first" {
		t.Errorf("answer to the datagram of DialData = %q, %v, want %q", buf[:n], err, "u:first")
	}
}

// TestClientLenIdleDone follows Len, Idle and Done through a client's life. It runs in a
// synctest bubble: Idle is measured on the bubble's fake clock, so it is exact, and
// synctest.Wait, not a sleep, says when the client has handled what the peer sent.
func TestClientLenIdleDone(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cl, peer := net.Pipe()
		c := NewClient(cl)
		defer c.Close()
		go io.Copy(io.Discard, peer)
		time.Sleep(20 * time.Millisecond)
		if n, idle := c.Len(), c.Idle(); n != 0 || idle != 20*time.Millisecond {
			t.Errorf("new client after 20ms: Len, Idle = %d, %v, want 0, 20ms", n, idle)
		}
		st1, err := c.Dial(context.Background(), "tcp", "a.test:1")
		if err != nil {
			t.Fatal(err)
		}
		st2, err := c.Dial(context.Background(), "tcp", "b.test:1")
		if err != nil {
			t.Fatal(err)
		}
		if n, idle := c.Len(), c.Idle(); n != 2 || idle != 0 {
			t.Errorf("two streams: Len, Idle = %d, %v, want 2, 0", n, idle)
		}
		st1.Close()
		if n, idle := c.Len(), c.Idle(); n != 1 || idle != 0 {
			t.Errorf("one stream closed: Len, Idle = %d, %v, want 1, 0", n, idle)
		}
		// The server's End ends the other.
		peer.Write(end(st2.(*stream).id))
		synctest.Wait()
		if n := c.Len(); n != 0 {
			t.Fatalf("Len after the server's End = %d, want 0", n)
		}
		time.Sleep(20 * time.Millisecond)
		if idle := c.Idle(); idle != 20*time.Millisecond {
			t.Errorf("Idle 20ms after the last stream ended = %v, want 20ms", idle)
		}
		select {
		case <-c.Done():
			t.Fatal("Done closed on a live connection")
		default:
		}
		peer.Close()
		synctest.Wait()
		select {
		case <-c.Done():
		default:
			t.Fatal("Done not closed after the connection ended")
		}
		if _, err := c.Dial(context.Background(), "tcp", "a.test:1"); err == nil {
			t.Error("Dial after Done = nil error, want one")
		}
	})
}

// TestReadChunk: Keep frames of one stream that the reader holds come out as one chunk, up
// to a large buffer; frames of other streams, and frames not read yet, end it.
func TestReadChunk(t *testing.T) {
	var wire []byte
	add := func(id uint16, n int) []byte {
		d := blob(byte(len(wire)), n)
		wire = append(wire, keep(id, d)...)
		return d
	}
	a, b := add(1, 3000), add(1, 5000)
	c := add(2, 10)
	var many []byte
	for range 10 {
		many = append(many, add(1, chunkSize)...)
	}
	tests := []struct {
		name string
		r    io.Reader
		want [][]byte // chunks, in order, with their stream ids in ids
		ids  []uint16
	}{
		{"buffered", bytes.NewReader(wire), [][]byte{append(a, b...), c, many[:8*chunkSize], many[8*chunkSize:]}, []uint16{1, 2, 1, 1}},
		{"a byte at a time", iotest.OneByteReader(bytes.NewReader(wire)), nil, nil},
	}
	for _, tt := range tests {
		br := bufio.NewReaderSize(tt.r, 256<<10) // holds all of wire
		fr := &frameReader{r: br}
		var got [][]byte
		var ids []uint16
		var all []byte
		for {
			f := new(frame)
			if err := fr.next(f); err != nil {
				if err != io.EOF {
					t.Fatalf("%s: next = %v", tt.name, err)
				}
				break
			}
			p, err := readChunk(br, f, false)
			if err != nil {
				t.Fatalf("%s: readChunk = %v", tt.name, err)
			}
			if len(*p) > 8*chunkSize {
				t.Errorf("%s: chunk of %d bytes, want <= %d", tt.name, len(*p), 8*chunkSize)
			}
			got, ids = append(got, bytes.Clone(*p)), append(ids, f.id)
			all = append(all, *p...)
			putBuf(p)
		}
		if want := bytes.Join([][]byte{a, b, c, many}, nil); !bytes.Equal(all, want) {
			t.Errorf("%s: data of all chunks differs from the frames'", tt.name)
		}
		if tt.want == nil {
			continue
		}
		if len(got) != len(tt.want) || fmt.Sprint(ids) != fmt.Sprint(tt.ids) {
			t.Fatalf("%s: %d chunks for streams %v, want %d for %v", tt.name, len(got), ids, len(tt.want), tt.ids)
		}
		for i := range got {
			if !bytes.Equal(got[i], tt.want[i]) {
				t.Errorf("%s: chunk %d has %d bytes, want %d", tt.name, i, len(got[i]), len(tt.want[i]))
			}
		}
	}
}

// TestStreamBufferStall: a stream nobody reads holds about streamBuffer bytes, then the
// reader waits for it and the connection's other streams stall, until it is read.
func TestStreamBufferStall(t *testing.T) {
	old := streamBuffer
	streamBuffer = 128 << 10
	defer func() { streamBuffer = old }()
	cl, peer := net.Pipe()
	c := NewClient(cl)
	defer c.Close()
	defer peer.Close()
	go io.Copy(io.Discard, peer)
	slow, err := c.Dial(context.Background(), "tcp", "slow.test:1")
	if err != nil {
		t.Fatal(err)
	}
	other, err := c.Dial(context.Background(), "tcp", "other.test:1")
	if err != nil {
		t.Fatal(err)
	}
	want := blob(3, 1<<20)
	go func() {
		for b := want; len(b) > 0; b = b[min(len(b), chunkSize):] {
			if _, err := peer.Write(keep(slow.(*stream).id, b[:min(len(b), chunkSize)])); err != nil {
				return
			}
		}
		peer.Write(keep(other.(*stream).id, []byte("hi")))
	}()
	st := slow.(*stream)
	held := func() int {
		st.mu.Lock()
		defer st.mu.Unlock()
		return st.held
	}
	for deadline := time.Now().Add(5 * time.Second); held() < streamBuffer; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("unread stream holds %d bytes, want it to fill %d", held(), streamBuffer)
		}
	}
	other.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
	if n, err := other.Read(make([]byte, 10)); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Errorf("Read of another stream while one is full = %d, %v, want a timeout", n, err)
	}
	if h := held(); h > streamBuffer+largeBuf {
		t.Errorf("unread stream holds %d bytes of buffers, want <= %d", h, streamBuffer+largeBuf)
	}
	got := make([]byte, len(want))
	slow.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.ReadFull(slow, got); err != nil || !bytes.Equal(got, want) {
		t.Fatalf("reading the full stream: %v, equal %v", err, bytes.Equal(got, want))
	}
	other.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 10)
	if n, err := other.Read(buf); err != nil || string(buf[:n]) != "hi" {
		t.Errorf("other stream after the full one was read = %q, %v, want %q", buf[:n], err, "hi")
	}
}

// TestWriteThenClose: streams that write and close at once, in parallel, get all their data
// to the target before their End.
func TestWriteThenClose(t *testing.T) {
	checkGoroutines(t)
	var mu sync.Mutex
	got := map[[32]byte]bool{}
	var wg sync.WaitGroup
	sink := tcpTarget(t, func(c net.Conn) {
		b, _ := io.ReadAll(c)
		mu.Lock()
		got[sha256.Sum256(b)] = true
		mu.Unlock()
		wg.Done()
	})
	c := NewClient(serve(t, dialLoopback))
	defer c.Close()
	var want [][32]byte
	var writers sync.WaitGroup
	for i := range 16 {
		data := blob(byte(i), 1000+i*13000)
		want = append(want, sha256.Sum256(data))
		wg.Add(1)
		writers.Go(func() {
			st, err := c.Dial(context.Background(), "tcp", sink)
			if err != nil {
				t.Error(err)
				return
			}
			// Small writes, then a large one: queued frames get gathered.
			st.Write(data[:10])
			st.Write(data[10:100])
			if _, err := st.Write(data[100:]); err != nil {
				t.Error(err)
			}
			st.Close()
		})
	}
	writers.Wait()
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("targets saw no EOF after the streams closed")
	}
	for i, h := range want {
		if !got[h] {
			t.Errorf("stream %d: target did not get its data whole", i)
		}
	}
}

// TestLayoutKeeps: data read behind one header's room comes out as Keep frames of at most
// 8 KiB, all full but the last.
func TestLayoutKeeps(t *testing.T) {
	for _, n := range []int{1, 100, chunkSize - 1, chunkSize, chunkSize + 1, 30000, downRead} {
		data := blob(byte(n), n)
		b := make([]byte, largeBuf)
		copy(b[keepHeader:], data)
		out := layoutKeeps(b, 9, n)
		fr := &frameReader{r: bytes.NewReader(out)}
		var got []byte
		for {
			f, err := fr.read()
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatalf("layoutKeeps(%d): read = %v", n, err)
			}
			if f.id != 9 || f.status != statusKeep || f.option != optData {
				t.Fatalf("layoutKeeps(%d): frame %+v, want Keep with data for 9", n, *f)
			}
			if len(got)+len(f.data) < n && len(f.data) != chunkSize {
				t.Errorf("layoutKeeps(%d): frame of %d bytes before the last, want %d", n, len(f.data), chunkSize)
			}
			got = append(got, f.data...)
		}
		if !bytes.Equal(got, data) {
			t.Errorf("layoutKeeps(%d): frames carry %d bytes, not the data", n, len(got))
		}
	}
}

// FuzzClient feeds arbitrary server bytes to a Client with a TCP and a UDP stream being
// read: it must neither panic nor hang, and the streams must end when the connection does.
func FuzzClient(f *testing.F) {
	f.Add(append(append(keep(1, []byte("hello")), keep(1, []byte(" world"))...), end(1)...))
	f.Add(append(append(keep(2, []byte("datagram")), keep(1, make([]byte, chunkSize))...), keep(3, []byte("x"))...))
	f.Add(append(append(appendFrame(nil, 1, statusEnd, optError|optData, netip.AddrPort{}, []byte("e")),
		appendFrame(nil, 0, statusKeepAlive, optData, netip.AddrPort{}, []byte("pad"))...),
		appendFrame(nil, 2, statusKeep, optData, netip.MustParseAddrPort("192.0.2.1:53"), []byte("dns"))...))
	f.Fuzz(func(t *testing.T, in []byte) {
		cl, peer := net.Pipe()
		c := NewClient(cl)
		defer c.Close()
		go io.Copy(io.Discard, peer)
		var wg sync.WaitGroup
		for _, network := range []string{"tcp", "udp"} {
			st, err := c.Dial(context.Background(), network, "example.com:1")
			if err != nil {
				t.Fatal(err)
			}
			wg.Go(func() {
				st.SetReadDeadline(time.Now().Add(5 * time.Second))
				buf := make([]byte, 1000)
				for {
					if _, err := st.Read(buf); err != nil {
						if errors.Is(err, os.ErrDeadlineExceeded) {
							t.Errorf("%s stream did not end with the connection", network)
						}
						return
					}
				}
			})
		}
		peer.SetWriteDeadline(time.Now().Add(5 * time.Second))
		peer.Write(in)
		peer.Close()
		wg.Wait()
	})
}
