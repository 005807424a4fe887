package censorlab

import (
	"context"
	"errors"
	"io"
	"net"
	"net/netip"
	"sync"
	"syscall"
	"testing"
	"time"
)

func TestByteBudget(t *testing.T) {
	m := &ByteBudget{Networks: []netip.Prefix{ServerNet}}
	f := tcpFlow(1, "127.0.2.1:443")
	if v, _ := feed(f, m, Down, make([]byte, 10000), 0); v.Action != Pass {
		t.Fatalf("first 10000 bytes: %v, want pass", v)
	}
	if v, _ := feed(f, m, Up, make([]byte, 100000), 0); v.Action != Pass {
		t.Fatalf("100000 bytes up: %v, want pass (the budget is downstream)", v)
	}
	v, _ := feed(f, m, Down, make([]byte, 10000), 0)
	if v.Action != Freeze || v.Keep != 16384-10000 {
		t.Fatalf("next 10000 bytes: %v keep %d, want freeze keeping %d", v.Action, v.Keep, 16384-10000)
	}
	g := tcpFlow(2, "127.0.1.1:443")
	if v, _ := feed(g, m, Down, make([]byte, 100000), 0); v.Action != Pass {
		t.Fatalf("100000 bytes from a network not on the list: %v, want pass", v)
	}
}

func TestConnCount(t *testing.T) {
	c := NewCensor()
	m := &ConnCount{Max: 2, BlockFor: time.Minute}
	m.attach(c)
	flows := []*Flow{tcpFlow(1, "127.0.2.1:443"), tcpFlow(2, "127.0.2.1:443")}
	for _, f := range flows {
		if v := m.Open(f); v.Action != Pass {
			t.Fatalf("connection %d: %v, want pass", f.ID, v)
		}
	}
	m.Close(flows[0])
	if v := m.Open(tcpFlow(3, "127.0.2.1:443")); v.Action != Pass {
		t.Fatalf("second concurrent connection after one closed: %v, want pass", v)
	}
	if v := m.Open(tcpFlow(4, "127.0.2.2:443")); v.Action != Pass {
		t.Fatalf("connection to another server: %v, want pass", v)
	}
	if v := m.Open(tcpFlow(5, "127.0.2.1:443")); v.Action != Reset {
		t.Fatalf("third concurrent connection: %v, want reset", v)
	}
	if v := c.open(tcpFlow(6, "127.0.2.1:443"), func(Action) {}); v.Action != Reset || v.Rule != "conn-count" {
		t.Fatalf("censor after the pair was blocked: %v by %q, want reset by conn-count", v.Action, v.Rule)
	}
}

func TestIPBlocklist(t *testing.T) {
	c := NewCensor(&IPBlocklist{Known: []netip.Addr{netip.MustParseAddr("127.0.2.9")}})
	if v := c.open(tcpFlow(1, "127.0.2.9:443"), func(Action) {}); v.Action != Reset || v.Rule != "ip-blocklist" {
		t.Fatalf("flow to a known endpoint: %v by %q, want reset by ip-blocklist", v.Action, v.Rule)
	}
	if v := c.open(tcpFlow(2, "127.0.2.8:443"), func(Action) {}); v.Action != Pass {
		t.Fatalf("flow to another address: %v, want pass", v)
	}
	cut := Pass
	c.open(tcpFlow(3, "127.0.2.7:443"), func(a Action) { cut = a })
	c.BlockIP(netip.MustParseAddr("127.0.2.7"), 0, "prober", "test")
	if cut != Reset || !c.IPBlocked(netip.MustParseAddr("127.0.2.7")) {
		t.Fatalf("live flow after its server was blocked: %v, want reset", cut)
	}
}

// TestConnCountClosesAtSecondFIN reproduces the lab's flake at its root: a
// client half-closes, reads the server's FIN and at once opens the next
// connection. A conntrack has forgotten the first flow when FINs have passed
// both ways, so the next connection must never find it still counted. The
// censor closes the flow before it forwards the second FIN, so the client
// cannot outrun it.
func TestConnCountClosesAtSecondFIN(t *testing.T) {
	srv := serveEach(t, "127.0.2.40:0", func(c net.Conn) {
		io.Copy(c, c) // echo until the client's FIN, then FIN back
	})
	c := NewCensor(&ConnCount{Max: 1})
	defer c.Close()
	via, err := c.ExposeTCP(context.Background(), srv)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 200 {
		conn, err := net.Dial("tcp", via.String())
		if err != nil {
			t.Fatal(err)
		}
		conn.SetDeadline(time.Now().Add(Budget(10 * time.Second)))
		_, werr := conn.Write([]byte("ping"))
		conn.(*net.TCPConn).CloseWrite()
		got, rerr := io.ReadAll(conn)
		conn.Close()
		if werr != nil || rerr != nil || string(got) != "ping" {
			t.Fatalf("connection %d: echo %q (write %v, read %v), want \"ping\"; censor events %v", i, got, werr, rerr, c.Events())
		}
	}
	if ev := c.Events(); len(ev) > 0 {
		t.Fatalf("sequential connections, each closed both ways before the next: events %v, want none", ev)
	}
}

// TestConnCountCatchesMakeBeforeBreak: a client that opens its next
// connection and only then closes the one before holds two at once,
// whatever it does a moment later; a box on the wire sees the SYN before
// the FIN and counts both. The lab sees the order in which it accepts the
// next connection and reads the FIN (on a busy machine the FIN can be read
// first, and the overlap is missed by that delay); the test closes the
// first connection once the lab has judged the next, so it pins that the
// lab counts a connection until its FIN is read and asks nothing of the
// kernel that would excuse the overlap.
func TestConnCountCatchesMakeBeforeBreak(t *testing.T) {
	srv := serveEach(t, "127.0.2.42:0", func(c net.Conn) {
		c.Write([]byte("bye")) // then the server's FIN first
	})
	c := NewCensor(&ConnCount{Max: 1})
	defer c.Close()
	via, err := c.ExposeTCP(context.Background(), srv)
	if err != nil {
		t.Fatal(err)
	}
	first, err := net.Dial("tcp", via.String())
	if err != nil {
		t.Fatal(err)
	}
	first.SetDeadline(time.Now().Add(Budget(10 * time.Second)))
	if got, _ := io.ReadAll(first); string(got) != "bye" {
		t.Fatalf("first connection: got %q", got)
	}
	// A reset may come before the dial returns.
	next, err := net.Dial("tcp", via.String())
	if err != nil && !errors.Is(err, syscall.ECONNRESET) {
		t.Fatal(err)
	}
	// The lab judges the next connection when it accepts it: a conn-count
	// event while the first is still open (none comes from a lab that lets
	// it through, and the read below then gets the server's "bye").
	for deadline := time.Now().Add(Budget(5 * time.Second)); len(c.Events()) == 0 && time.Now().Before(deadline); {
		time.Sleep(time.Millisecond)
	}
	first.Close() // the FIN after the next SYN
	if next != nil {
		defer next.Close()
		next.SetDeadline(time.Now().Add(Budget(10 * time.Second)))
		if got, _ := io.ReadAll(next); string(got) != "" {
			t.Fatalf("a connection opened before the one before was closed: got %q, want a reset", got)
		}
	}
	if ev := c.Events(); len(ev) == 0 || ev[0].Rule != "conn-count" {
		t.Fatalf("make-before-break: events %v, want conn-count", ev)
	}
}

// serveEach serves TCP on addr until the test ends: handle runs for each
// connection, which is closed after it.
func serveEach(t *testing.T, addr string, handle func(net.Conn)) netip.AddrPort {
	t.Helper()
	srv, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() { srv.Close(); wg.Wait() })
	wg.Go(func() {
		for {
			c, err := srv.Accept()
			if err != nil {
				return
			}
			wg.Go(func() {
				defer c.Close()
				handle(c)
			})
		}
	})
	return srv.Addr().(*net.TCPAddr).AddrPort()
}
