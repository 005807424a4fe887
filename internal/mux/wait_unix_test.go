//go:build unix

package mux

import (
	"io"
	"net"
	"testing"
	"time"
)

// TestReadyWaiter: the wait returns when data arrives, when the peer closes, and when the
// conn is closed under it, and never for a conn it cannot watch.
func TestReadyWaiter(t *testing.T) {
	if a, _ := net.Pipe(); readyWaiter(a) != nil {
		t.Error("readyWaiter(net.Pipe) != nil, want nil")
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	pair := func() (net.Conn, net.Conn) {
		c, err := net.Dial("tcp", l.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		p, err := l.Accept()
		if err != nil {
			t.Fatal(err)
		}
		return c, p
	}
	waits := func(w func()) <-chan struct{} {
		done := make(chan struct{})
		go func() { w(); close(done) }()
		return done
	}
	expect := func(what string, done <-chan struct{}, returned bool) {
		t.Helper()
		select {
		case <-done:
			if !returned {
				t.Fatalf("%s: the wait returned", what)
			}
		case <-time.After(map[bool]time.Duration{true: 5 * time.Second, false: 100 * time.Millisecond}[returned]):
			if returned {
				t.Fatalf("%s: the wait did not return", what)
			}
		}
	}

	c, p := pair()
	defer c.Close()
	defer p.Close()
	w := readyWaiter(c)
	if w == nil {
		t.Fatal("readyWaiter(*net.TCPConn) = nil")
	}
	done := waits(w)
	expect("nothing sent", done, false)
	p.Write([]byte("ab"))
	expect("data sent", done, true)
	expect("data not read yet", waits(w), true)
	buf := make([]byte, 10)
	if n, err := c.Read(buf); err != nil || string(buf[:n]) != "ab" {
		t.Fatalf("Read after the wait = %q, %v, want %q: the wait took data", buf[:n], err, "ab")
	}
	done = waits(w)
	expect("data read", done, false)
	p.Close()
	expect("peer closed", done, true)
	if _, err := c.Read(buf); err != io.EOF {
		t.Errorf("Read after the peer closed = %v, want EOF", err)
	}

	c2, p2 := pair()
	defer p2.Close()
	done = waits(readyWaiter(c2))
	expect("idle", done, false)
	c2.Close()
	expect("conn closed", done, true)
}

// captureFrom records the reader io.Copy hands its ReadFrom.
type captureFrom struct{ got io.Reader }

func (c *captureFrom) Write(p []byte) (int, error) { return len(p), nil }
func (c *captureFrom) ReadFrom(r io.Reader) (int64, error) {
	c.got = r
	return io.Copy(io.Discard, r)
}

func TestStdlibTCPWrapper(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err == nil {
			c.Write([]byte("x"))
			c.Close()
		}
	}()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var cf captureFrom
	if _, err := io.Copy(&cf, c); err != nil {
		t.Fatal(err)
	}
	if got := stdlibTCP(cf.got); got != c.(*net.TCPConn) {
		t.Errorf("stdlibTCP(%T) = %v, want the *net.TCPConn io.Copy wrapped", cf.got, got)
	}
	if readyWaiter(cf.got) == nil {
		t.Errorf("readyWaiter(%T) = nil, want a waiter", cf.got)
	}
	if got := stdlibTCP(struct{ io.Reader }{c}); got != nil {
		t.Errorf("stdlibTCP(a wrapper outside package net) = %v, want nil", got)
	}
}
