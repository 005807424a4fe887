package camo

import (
	"bytes"
	"io"
	"net"
	"sync"
	"testing"
	"time"
)

// writeCounter counts the writes of the TCP conn under a REALITY conn.
type writeCounter struct {
	net.Conn
	mu     sync.Mutex
	writes []int // sizes
}

func (c *writeCounter) Write(p []byte) (int, error) {
	c.mu.Lock()
	c.writes = append(c.writes, len(p))
	c.mu.Unlock()
	return c.Conn.Write(p)
}

func (c *writeCounter) sizes() []int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]int(nil), c.writes...)
}

// callCounter counts the Writes made to the conn the echo writes to. Its
// Reads fill what they are given, so the echo's Writes are its copy
// buffer's size (32 KiB: three records), not a record each.
type callCounter struct {
	net.Conn
	mu    sync.Mutex
	calls int
}

func (c *callCounter) Read(p []byte) (int, error) { return io.ReadFull(c.Conn, p) }

func (c *callCounter) Write(p []byte) (int, error) {
	c.mu.Lock()
	c.calls++
	c.mu.Unlock()
	return c.Conn.Write(p)
}

// TestCoalesced: each Write of a Coalesced conn reaches the TCP conn as one
// write holding all its records, and the peer reads every byte. Without
// Coalesced the same echo makes several TCP writes per Write (which is what
// it is for, and shows the counting sees them).
func TestCoalesced(t *testing.T) {
	cover := srvStartCover(t, false)
	for _, coalesce := range []bool{false, true} {
		name := map[bool]string{false: "plain", true: "coalesced"}[coalesce]
		t.Run(name, func(t *testing.T) {
			var mu sync.Mutex
			var tcp *writeCounter
			var calls *callCounter
			h := srvStartWrapped(t, cover, func(tc net.Conn) net.Conn {
				raw := tc.(interface{ NetConn() net.Conn }).NetConn().(*replayConn)
				if coalesce {
					tc = Coalesced(tc)
				}
				mu.Lock()
				defer mu.Unlock()
				tcp = &writeCounter{Conn: raw.Conn}
				raw.Conn = tcp
				calls = &callCounter{Conn: tc}
				return calls
			})
			tc, _, err := srvDialReality(t, h, ClientConfig{ServerName: srvCoverName, PublicKey: h.pub, ShortID: h.shortID, Fingerprint: "chrome"})
			if err != nil {
				t.Fatal(err)
			}
			// 256 KiB echoed in 32 KiB Writes: three records each.
			big := bytes.Repeat([]byte("0123456789abcdef"), 256<<10/16)
			if err := srvEcho(tc, big); err != nil {
				t.Fatalf("echo(256 KiB) = %v", err)
			}
			mu.Lock()
			sizes, n := tcp.sizes(), calls.calls
			mu.Unlock()
			t.Logf("%d Writes, %d TCP writes", n, len(sizes))
			if n == 0 {
				t.Fatal("the echo made no Write")
			}
			if coalesce {
				if len(sizes) != n {
					t.Errorf("%d TCP writes for %d Writes, want one each (sizes %v)", len(sizes), n, sizes)
				}
			} else if len(sizes) < 2*n {
				t.Errorf("%d TCP writes for %d Writes without Coalesced: the test does not see records go out one by one", len(sizes), n)
			}
		})
	}
}

// TestGathererOrder: a record the TLS conn writes outside a Write (an
// alert) while another Write gathers goes out after the gathered bytes, and
// one after the flush goes straight through.
func TestGathererOrder(t *testing.T) {
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	got := make(chan []byte, 1)
	go func() {
		var all []byte
		buf := make([]byte, 64)
		for {
			n, err := b.Read(buf)
			all = append(all, buf[:n]...)
			if err != nil || len(all) >= 9 {
				got <- all
				return
			}
		}
	}()
	g := &gatherer{}
	g.begin()
	g.write(a, []byte("one"))
	g.write(a, []byte("two")) // another writer while gathering: after "one"
	if err := g.end(a); err != nil {
		t.Fatal(err)
	}
	if _, err := g.write(a, []byte("six")); err != nil {
		t.Fatal(err)
	}
	if s := string(<-got); s != "onetwosix" {
		t.Errorf("peer read %q, want %q", s, "onetwosix")
	}
	if g.buf != nil {
		t.Errorf("gatherer holds a buffer (%d bytes) after its flush", len(*g.buf))
	}
}

// coalescedPair returns a Coalesced server conn and its client, whose
// socket buffers are small so that a large Write blocks while the client
// does not read.
// bigWrite reports when a write of 1 MiB or more reaches the TCP conn
// (the gathered records of a large Write).
type bigWrite struct {
	net.Conn
	once    sync.Once
	started chan struct{}
}

func (c *bigWrite) Write(p []byte) (int, error) {
	if len(p) >= 1<<20 {
		c.once.Do(func() { close(c.started) })
	}
	return c.Conn.Write(p)
}

func coalescedPair(t *testing.T) (srv *coalescedConn, flushing <-chan struct{}) {
	t.Helper()
	cover := srvStartCover(t, false)
	got := make(chan *coalescedConn, 1)
	started := make(chan struct{})
	h := srvStartWrapped(t, cover, func(tc net.Conn) net.Conn {
		raw := tc.(interface{ NetConn() net.Conn }).NetConn().(*replayConn)
		raw.Conn.(*net.TCPConn).SetWriteBuffer(16 << 10)
		raw.Conn = &bigWrite{Conn: raw.Conn, started: started}
		cc := Coalesced(tc).(*coalescedConn)
		got <- cc
		return cc
	})
	if _, _, err := srvDialReality(t, h, ClientConfig{ServerName: srvCoverName, PublicKey: h.pub, ShortID: h.shortID, Fingerprint: "chrome"}); err != nil {
		t.Fatal(err)
	}
	select {
	case srv = <-got:
	case <-time.After(srvWaitTimeout):
		t.Fatal("no server conn")
	}
	return srv, started
}

// TestCoalescedCloseWhileBlocked: Close of a conn whose Write is blocked
// sending its gathered records to a peer that does not read returns at
// once (it waited 5 s, the close_notify's deadline, behind them).
func TestCoalescedCloseWhileBlocked(t *testing.T) {
	srv, flushing := coalescedPair(t)
	wrote := make(chan error, 1)
	go func() {
		_, err := srv.Write(make([]byte, 32<<20)) // far past both sockets' buffers
		wrote <- err
	}()
	select {
	case <-flushing:
	case <-time.After(srvWaitTimeout):
		t.Fatal("the Write's records never reached the TCP conn")
	}
	start := time.Now()
	closed := make(chan error, 1)
	go func() { closed <- srv.Close() }()
	select {
	case <-closed:
	case <-time.After(3 * time.Second):
		t.Fatal("Close still blocked after 3 s behind a Write to a peer that does not read")
	}
	t.Logf("Close took %v", time.Since(start))
	if err := <-wrote; err == nil {
		t.Error("the blocked Write returned no error after Close")
	}
}

// TestCoalescedErrorSticks: once the gathered records could not all be
// sent, every later Write fails (part of a record may be out; the peer
// would read the next records as garbage).
func TestCoalescedErrorSticks(t *testing.T) {
	srv, _ := coalescedPair(t)
	srv.SetWriteDeadline(time.Now().Add(200 * time.Millisecond))
	if _, err := srv.Write(make([]byte, 32<<20)); err == nil {
		t.Fatal("a 32 MiB Write to a peer that does not read met no deadline")
	}
	srv.SetWriteDeadline(time.Time{})
	if _, err := srv.Write([]byte("after")); err == nil {
		t.Error("a Write after a failed one succeeded, want the first error again")
	}
}
