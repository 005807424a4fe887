package mux

import (
	"context"
	"io"
	"net"
	"runtime"
	"sync"
	"testing"
	"time"
)

// liveHeap is the heap in use after two collections (the second empties sync.Pool's victim
// cache) and the number of goroutines.
func liveHeap() (heap uint64, goroutines int) {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc, runtime.NumGoroutine()
}

// loopbackServer runs ServerMux for every conn accepted on a loopback TCP listener and
// returns its address; the listener closes and the ServerMux calls are waited for when
// the test ends (after the clients closed their conns).
func loopbackServer(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		var wg sync.WaitGroup
		defer wg.Wait()
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			wg.Go(func() {
				defer c.Close()
				if err := ServerMux(context.Background(), c, dialLoopback); err != nil {
					t.Errorf("ServerMux = %v, want nil", err)
				}
			})
		}
	}()
	t.Cleanup(func() { l.Close(); <-done })
	return l.Addr().String()
}

// idleSessionBound is the most live heap an idle TCP session may cost.
const idleSessionBound = 8 << 10

// TestIdleSessionMemory opens 500 TCP sessions, over four Clients on loopback TCP conns to
// ServerMux, to a loopback echo target; each echoes one byte, then all sit idle. The live
// heap they cost (client, server, and the target's side of each conn) stays small: no
// session holds a read buffer while idle.
func TestIdleSessionMemory(t *testing.T) {
	if testing.Short() {
		t.Skip("opens 1000 loopback TCP conns")
	}
	checkGoroutines(t)
	const clients, perClient = 4, 125
	const sessions = clients * perClient
	echo := tcpTarget(t, func(c net.Conn) {
		var b [64]byte
		for {
			n, err := c.Read(b[:])
			if err != nil {
				return
			}
			if _, err := c.Write(b[:n]); err != nil {
				return
			}
		}
	})
	srv := loopbackServer(t)
	heap0, g0 := liveHeap()

	var all []*Client
	defer func() {
		for _, c := range all {
			c.Close()
		}
	}()
	var streams []net.Conn
	for range clients {
		conn, err := net.Dial("tcp", srv)
		if err != nil {
			t.Fatal(err)
		}
		c := NewClient(conn)
		all = append(all, c)
		for range perClient {
			st, err := c.Dial(context.Background(), "tcp", echo)
			if err != nil {
				t.Fatal(err)
			}
			streams = append(streams, st)
			if _, err := st.Write([]byte{'x'}); err != nil {
				t.Fatal(err)
			}
		}
	}
	for i, st := range streams {
		st.SetReadDeadline(time.Now().Add(10 * time.Second))
		var b [1]byte
		if _, err := io.ReadFull(st, b[:]); err != nil || b[0] != 'x' {
			t.Fatalf("stream %d echo = %q, %v, want %q", i, b[:], err, "x")
		}
	}
	heap1, g1 := liveHeap()
	perSession := (int64(heap1) - int64(heap0)) / sessions
	t.Logf("%d idle TCP sessions: %d B of live heap and %.2f goroutines per session (client, server and target)",
		sessions, perSession, float64(g1-g0)/sessions)
	// Measured about 4 KiB (5.5 KiB on a cold run) with 64 KiB read buffers per client
	// connection included; before buffers were pooled a session held 12 to 13.5 KiB, 8 KiB
	// of it the server's read buffer.
	if perSession > idleSessionBound {
		t.Errorf("live heap per idle session = %d B, want <= %d", perSession, idleSessionBound)
	}
	// Per session: ServerMux's download loop (the upload side runs only while data is
	// queued), and the target's handler; per connection: the client's reader and writer,
	// ServerMux's reader and idle loop.
	if want := 2*sessions + 4*clients; g1-g0 > want {
		t.Errorf("goroutines for %d sessions on %d connections = %d, want <= %d", sessions, clients, g1-g0, want)
	}
	runtime.KeepAlive(streams)
}
