package relay

import (
	"bytes"
	"io"
	"net"
	"sync/atomic"
	"testing"
	"time"
)

type readCounter struct {
	net.Conn
	reads atomic.Int64
}

func (c *readCounter) Read(p []byte) (int, error) {
	c.reads.Add(1)
	return c.Conn.Read(p)
}

func (c *readCounter) CloseWrite() error { return c.Conn.(*net.TCPConn).CloseWrite() }

// TestReadAhead: record-sized reads of a leg conn take in up to 64 KiB per
// read of the socket while data flows, deliver every byte in order, give
// the buffer back once the reader caught up, end with the conn's EOF after
// the last byte, and CloseWrite reaches the socket.
func TestReadAhead(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	want := make([]byte, 1<<20)
	for i := range want {
		want[i] = byte(i * 7)
	}
	tail := []byte("the last few bytes, after the reader caught up")
	peer := make(chan net.Conn, 1)
	next := make(chan struct{})
	go func() {
		c, err := ln.Accept()
		if err != nil {
			peer <- nil
			return
		}
		peer <- c
		c.Write(want)
		<-next
		c.Write(tail)
		c.(*net.TCPConn).CloseWrite()
	}()
	raw, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	p := <-peer
	if p == nil {
		t.Fatal("accept failed")
	}
	defer p.Close()
	rc := &readCounter{Conn: raw}
	c := readAhead(rc)
	ra := c.(*readAheadConn)
	c.SetDeadline(time.Now().Add(30 * time.Second))
	read := func(n int) ([]byte, int) {
		got := make([]byte, 0, n)
		buf := make([]byte, 16<<10+5) // a TLS record's read
		calls := 0
		for len(got) < n {
			k, err := c.Read(buf[:min(len(buf), n-len(got))])
			got = append(got, buf[:k]...)
			calls++
			if err != nil {
				t.Fatalf("after %d bytes: %v", len(got), err)
			}
		}
		return got, calls
	}
	got, calls := read(len(want))
	if !bytes.Equal(got, want) {
		t.Fatal("bytes read differ from the bytes sent")
	}
	// 1 MiB in 64 KiB reads of the socket is 16; the writer's pace splits
	// some, and a reader that catches up reads straight again until the
	// next burst (18–30 seen). Without read-ahead each read of the conn is
	// one of the socket.
	if r := rc.reads.Load(); r > int64(calls)*3/4 {
		t.Errorf("%d socket reads for %d reads of the conn, want far fewer", r, calls)
	}
	t.Logf("%d socket reads for %d record-sized reads", rc.reads.Load(), calls)
	close(next)
	if got, _ := read(len(tail)); !bytes.Equal(got, tail) {
		t.Fatalf("after the burst read %q, want %q", got, tail)
	}
	if ra.buf != nil {
		t.Error("the read-ahead buffer is held after the reader caught up")
	}
	if n, err := c.Read(make([]byte, 100)); n != 0 || err != io.EOF {
		t.Errorf("read after the last byte = %d, %v; want the conn's EOF", n, err)
	}
	if err := c.(interface{ CloseWrite() error }).CloseWrite(); err != nil {
		t.Fatalf("CloseWrite: %v", err)
	}
	p.SetReadDeadline(time.Now().Add(30 * time.Second))
	if n, err := io.Copy(io.Discard, p); err != nil || n != 0 {
		t.Errorf("peer read %d bytes, %v after CloseWrite; want its end", n, err)
	}
}
