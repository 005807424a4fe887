package camo

import (
	"bytes"
	"io"
	"net"
	"sync"
	"testing"
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
	if len(g.buf) != 0 {
		t.Errorf("gatherer holds %d bytes after its flush", len(g.buf))
	}
}
