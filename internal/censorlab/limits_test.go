package censorlab

import (
	"context"
	"io"
	"net"
	"net/netip"
	"sync"
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
	srv, err := net.Listen("tcp", "127.0.2.40:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	defer wg.Wait()
	defer srv.Close()
	wg.Go(func() {
		for {
			c, err := srv.Accept()
			if err != nil {
				return
			}
			wg.Go(func() {
				defer c.Close()
				io.Copy(c, c) // echo until the client's FIN, then FIN back
			})
		}
	})
	c := NewCensor(&ConnCount{Max: 1})
	defer c.Close()
	via, err := c.ExposeTCP(context.Background(), srv.Addr().(*net.TCPAddr).AddrPort())
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

// TestConnCountSeesTheWireOrder: a box on the wire sees a client's FIN
// before the SYN the client sends after it. Here the server ends each
// connection first and the client's FIN is the last; the censor's pumps
// are held (pumpEndDelay, a busy machine) so that the next connection is
// accepted before the pump has read that FIN. It must not be counted
// beside the one that ended; a connection opened while another is really
// open still is.
func TestConnCountSeesTheWireOrder(t *testing.T) {
	pumpEndDelay = time.Second
	t.Cleanup(func() { pumpEndDelay = 0 })
	srv, err := net.Listen("tcp", "127.0.2.41:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	defer wg.Wait()
	defer srv.Close()
	wg.Go(func() {
		for {
			c, err := srv.Accept()
			if err != nil {
				return
			}
			c.Write([]byte("bye"))
			c.Close() // the server's FIN first
		}
	})
	c := NewCensor(&ConnCount{Max: 1})
	defer c.Close()
	via, err := c.ExposeTCP(context.Background(), srv.Addr().(*net.TCPAddr).AddrPort())
	if err != nil {
		t.Fatal(err)
	}
	dial := func() (net.Conn, string) {
		t.Helper()
		conn, err := net.Dial("tcp", via.String())
		if err != nil {
			t.Fatal(err)
		}
		conn.SetDeadline(time.Now().Add(Budget(10 * time.Second)))
		got, _ := io.ReadAll(conn)
		return conn, string(got)
	}
	for i := range 3 {
		conn, got := dial()
		conn.Close() // the last FIN; the pump reads it 1 s from now
		if got != "bye" {
			t.Fatalf("connection %d, opened after the one before ended both ways: got %q, want \"bye\"; events %v", i, got, c.Events())
		}
		// The client's FIN is on its way: wait until this host's
		// kernel has it, as the next SYN would follow it on the wire.
		// (Without Flow.ended this waits half the pump's delay, and the
		// next connection finds the old one counted.)
		deadline := time.Now().Add(pumpEndDelay / 2)
		for !c.flowEnded() && time.Now().Before(deadline) {
			time.Sleep(time.Millisecond)
		}
	}
	if ev := c.Events(); len(ev) > 0 {
		t.Fatalf("each connection ended before the next: events %v, want none", ev)
	}

	open, got := dial() // read to its end, not closed: still open
	defer open.Close()
	if got != "bye" {
		t.Fatalf("connection opened after the others ended: got %q", got)
	}
	if _, got := dial(); got != "" {
		t.Fatalf("a second connection beside one still open: got %q, want a reset", got)
	}
	// The block cuts the new connection before the event is recorded.
	for deadline := time.Now().Add(5 * time.Second); len(c.Events()) == 0 && time.Now().Before(deadline); {
		time.Sleep(time.Millisecond)
	}
	if ev := c.Events(); len(ev) == 0 || ev[0].Rule != "conn-count" {
		t.Fatalf("a second connection beside one still open: events %v, want conn-count", ev)
	}
}

// flowEnded reports whether some live flow's end has reached the kernel.
func (c *Censor) flowEnded() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, lf := range c.live {
		if lf.flow.ended != nil && lf.flow.ended() {
			return true
		}
	}
	return false
}
