package censorlab

import (
	"io"
	"net"
	"net/netip"
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

// A connection whose FINs have passed both ways is no longer counted when
// its client sees the last FIN: a client that opens its next connection at
// that moment stays within a cap of one. The censor used to forget a flow
// only after both of its relays had wound down, after the last FIN was
// passed on, and reset the next connection on a busy machine.
func TestConnCountForgetsFlowBeforeLastFIN(t *testing.T) {
	server := serveTCP(t, "127.0.2.41", func(c net.Conn) { io.Copy(io.Discard, c) })
	c := NewCensor(&ConnCount{Max: 1, BlockFor: time.Minute})
	via := exposed(t, c, server)
	for i := range 300 {
		conn, err := net.Dial("tcp", via)
		if err != nil {
			t.Fatal(err)
		}
		conn.SetDeadline(time.Now().Add(10 * time.Second))
		conn.Write([]byte("ping"))
		conn.(*net.TCPConn).CloseWrite()
		_, err = io.Copy(io.Discard, conn)
		conn.Close()
		if err != nil {
			t.Fatalf("connection %d, opened when the last one had ended: %v (events: %v)", i, err, c.Events())
		}
	}
	if ev := c.Events(); len(ev) > 0 {
		t.Fatalf("censor acted on one connection at a time: %v", ev)
	}
}
