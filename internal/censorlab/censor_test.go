package censorlab

import (
	"context"
	"errors"
	"io"
	"net"
	"net/netip"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"
)

// serveTCP runs handle for each connection to a listener on ip.
func serveTCP(t *testing.T, ip string, handle func(net.Conn)) netip.AddrPort {
	t.Helper()
	ln, err := net.Listen("tcp", ip+":0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				handle(c)
			}()
		}
	}()
	return ln.Addr().(*net.TCPAddr).AddrPort()
}

func exposed(t *testing.T, c *Censor, server netip.AddrPort) string {
	t.Helper()
	t.Cleanup(func() { c.Close() })
	via, err := c.ExposeTCP(context.Background(), server)
	if err != nil {
		t.Fatal(err)
	}
	return via.String()
}

// A ClientHello written in small TCP segments through the relay is still
// read whole and judged: Go's fingerprint is reset, Chrome's passes.
func TestCensorReassemblesSplitHello(t *testing.T) {
	got := make(chan []byte, 2)
	server := serveTCP(t, "127.0.2.40", func(c net.Conn) {
		c.SetReadDeadline(time.Now().Add(30 * time.Second)) // reads until the client closes
		b, _ := io.ReadAll(c)
		got <- b
	})
	for _, tt := range []struct {
		name  string
		hello []byte
		reset bool
	}{
		{"go", goHello(t, "cover.test"), true},
		{"chrome", chromeHello(t), false},
	} {
		c := NewCensor(&ClientHelloBox{AllowJA4: BrowserJA4})
		conn, err := net.Dial("tcp", exposed(t, c, server))
		if err != nil {
			t.Fatal(err)
		}
		conn.(*net.TCPConn).SetNoDelay(true)
		for off := 0; off < len(tt.hello); off += 40 {
			conn.Write(tt.hello[off:min(off+40, len(tt.hello))])
			time.Sleep(time.Millisecond) // spacing the segments
		}
		wait := Budget(time.Second) // no reset: watched for a scaled window
		if tt.reset {
			wait = 30 * time.Second // a reset: awaited, with time for a busy machine
		}
		conn.SetReadDeadline(time.Now().Add(wait))
		_, rerr := conn.Read(make([]byte, 1))
		conn.Close()
		events := c.Events()
		if tt.reset {
			if !errors.Is(rerr, syscall.ECONNRESET) || len(events) != 1 || events[0].Rule != "clienthello" {
				t.Errorf("%s hello in 40-byte segments: read %v, events %v; want a reset by clienthello", tt.name, rerr, events)
			}
			<-got
			continue
		}
		if len(events) != 0 {
			t.Errorf("%s hello in 40-byte segments: events %v, want none", tt.name, events)
		}
		if b := <-got; string(b) != string(tt.hello) {
			t.Errorf("%s hello: server got %d bytes, want the %d sent", tt.name, len(b), len(tt.hello))
		}
	}
}

// The byte budget freezes: exactly the budget arrives, then nothing — no
// FIN, no reset.
func TestCensorFreeze(t *testing.T) {
	server := serveTCP(t, "127.0.2.41", func(c net.Conn) {
		c.Write(make([]byte, 100<<10))
		io.Copy(io.Discard, c)
	})
	c := NewCensor(&ByteBudget{Networks: []netip.Prefix{ServerNet}})
	conn, err := net.Dial("tcp", exposed(t, c, server))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	// The budget is awaited as bytes, with time for a busy machine; the
	// silence after it is watched for a window scaled to the machine.
	conn.SetReadDeadline(time.Now().Add(30 * time.Second))
	if n, err := io.ReadFull(conn, make([]byte, 16384)); err != nil {
		t.Fatalf("read %d bytes, then %v; want the 16384 of the budget", n, err)
	}
	conn.SetReadDeadline(time.Now().Add(Budget(500 * time.Millisecond)))
	n, err := io.Copy(io.Discard, conn)
	if n != 0 || !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("after the budget: read %d bytes, then %v; want nothing, then a timeout", n, err)
	}
}

// A reset from the server reaches the client as a reset; a FIN as a FIN.
func TestCensorMirrorsEnds(t *testing.T) {
	rst := serveTCP(t, "127.0.2.42", func(c net.Conn) {
		io.ReadFull(c, make([]byte, 1))
		c.(*net.TCPConn).SetLinger(0)
	})
	fin := serveTCP(t, "127.0.2.42", func(c net.Conn) {
		io.ReadFull(c, make([]byte, 1))
		c.Write([]byte("bye"))
	})
	c := NewCensor()
	for _, tt := range []struct {
		server netip.AddrPort
		want   string
	}{{rst, "RST"}, {fin, "FIN"}} {
		conn, err := net.Dial("tcp", exposed(t, c, tt.server))
		if err != nil {
			t.Fatal(err)
		}
		conn.Write([]byte("x"))
		conn.SetReadDeadline(time.Now().Add(2 * time.Second))
		_, err = io.ReadAll(conn)
		conn.Close()
		if got := endKind(err); got != tt.want {
			t.Errorf("server ending with %s: client saw %s (%v)", tt.want, got, err)
		}
	}
}

func TestCensorUDP(t *testing.T) {
	pc, err := net.ListenPacket("udp", "127.0.2.43:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	go func() {
		buf := make([]byte, 2048)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			pc.WriteTo(buf[:n], from)
		}
	}()
	c := NewCensor(&Signatures{})
	defer c.Close()
	via, err := c.ExposeUDP(context.Background(), pc.LocalAddr().(*net.UDPAddr).AddrPort())
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		first []byte
		echo  bool
	}{{[]byte("ping"), true}, {wgInit(), false}} {
		u, err := net.Dial("udp", via.String())
		if err != nil {
			t.Fatal(err)
		}
		u.Write(tt.first)
		wait := Budget(300 * time.Millisecond) // silence: watched for a scaled window
		if tt.echo {
			wait = 30 * time.Second // an echo: awaited, with time for a busy machine
		}
		u.SetReadDeadline(time.Now().Add(wait))
		_, err = u.Read(make([]byte, 2048))
		u.Close()
		if (err == nil) != tt.echo {
			t.Errorf("first datagram %q: echo error %v, want echo %v", tt.first[:4], err, tt.echo)
		}
	}
	if ev := c.Events(); len(ev) != 1 || !strings.Contains(ev[0].Reason, "WireGuard") {
		t.Errorf("events %v, want one WireGuard detection", ev)
	}
}
