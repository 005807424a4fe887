package xhttp

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"io"
	"math/rand/v2"
	"net"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// pattern returns n deterministic bytes.
func pattern(seed uint64, n int) []byte {
	r := rand.New(rand.NewPCG(seed, 7))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

// testHandle serves three commands: 'S' + 8-byte n → n pattern bytes then
// CloseWrite; 'E' → echo until EOF, then CloseWrite; 'R' → "reset" then a
// close after SetLinger(0).
func testHandle(ctx context.Context, c net.Conn) {
	defer c.Close()
	var cmd [1]byte
	if _, err := io.ReadFull(c, cmd[:]); err != nil {
		return
	}
	switch cmd[0] {
	case 'S':
		var nb [8]byte
		if _, err := io.ReadFull(c, nb[:]); err != nil {
			return
		}
		n := int(binary.BigEndian.Uint64(nb[:]))
		data := pattern(uint64(n), n)
		for len(data) > 0 {
			k := min(len(data), 1+rand.IntN(40000))
			if _, err := c.Write(data[:k]); err != nil {
				return
			}
			data = data[k:]
		}
	case 'E':
		if _, err := io.Copy(c, c); err != nil {
			return
		}
	case 'R':
		c.Write([]byte("reset"))
		c.(interface{ SetLinger(int) error }).SetLinger(0)
		return
	}
	c.(interface{ CloseWrite() error }).CloseWrite()
	io.Copy(io.Discard, c)
}

type testServer struct {
	hub  *Hub
	ln   net.Listener
	wg   sync.WaitGroup
	stop context.CancelFunc
}

func startServer(t *testing.T) *testServer {
	t.Helper()
	ctx, stop := context.WithCancel(context.Background())
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &testServer{ln: ln, stop: stop}
	// The production default: a busy machine can hold a resume a few
	// seconds while the dialer waits for a connection slot.
	s.hub = NewHub(ctx, HubConfig{Handle: testHandle, ResumeTimeout: 30 * time.Second})
	s.wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s.wg.Go(func() {
				defer c.Close()
				stopc := context.AfterFunc(ctx, func() { c.Close() })
				defer stopc()
				pre := make([]byte, len(Preface))
				if _, err := io.ReadFull(c, pre); err != nil || string(pre) != Preface {
					return
				}
				s.hub.ServeConn(ctx, c, ConnOptions{SawPreface: true})
			})
		}
	})
	t.Cleanup(func() {
		stop()
		ln.Close()
		bounded(t, "the test server's cleanup", func() {
			s.wg.Wait()
			s.hub.Close()
		})
	})
	return s
}

// connLog records every connection a dialer opened and can cut them.
type connLog struct {
	mu    sync.Mutex
	conns []*cutConn
	// killAt, if set, gives each new connection the received-byte offset
	// at which it is cut (0 = never).
	killAt func() int64
}

type cutConn struct {
	net.Conn
	rx   atomic.Int64
	kill int64
}

func (c *cutConn) Read(p []byte) (int, error) {
	if c.kill > 0 {
		left := c.kill - c.rx.Load()
		if left <= 0 {
			c.Conn.Close()
			return 0, net.ErrClosed
		}
		p = p[:min(int64(len(p)), left)]
	}
	n, err := c.Conn.Read(p)
	c.rx.Add(int64(n))
	return n, err
}

func (l *connLog) dial(addr string) DialFunc {
	return func(ctx context.Context) (net.Conn, func() int64, error) {
		var d net.Dialer
		c, err := d.DialContext(ctx, "tcp", addr)
		if err != nil {
			return nil, nil, err
		}
		cc := &cutConn{Conn: c}
		if l.killAt != nil {
			cc.kill = l.killAt()
		}
		l.mu.Lock()
		l.conns = append(l.conns, cc)
		l.mu.Unlock()
		return cc, cc.rx.Load, nil
	}
}

func newDialer(t *testing.T, cfg DialerConfig) *Dialer {
	t.Helper()
	d, err := NewDialer(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { bounded(t, "the dialer's Close", func() { d.Close() }) })
	return d
}

// download asks the server for n bytes over a new session and checks them.
func download(t *testing.T, d *Dialer, n int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	c, err := d.Dial(ctx)
	if err != nil {
		t.Fatalf("Dial: %v", err)
	}
	defer c.Close()
	var req [9]byte
	req[0] = 'S'
	binary.BigEndian.PutUint64(req[1:], uint64(n))
	if _, err := c.Write(req[:]); err != nil {
		t.Fatalf("Write: %v", err)
	}
	c.SetReadDeadline(time.Now().Add(60 * time.Second))
	h := sha256.New()
	got, err := io.Copy(h, c)
	if err != nil {
		t.Fatalf("download(%d): read %d bytes, then %v", n, got, err)
	}
	if got != int64(n) || !bytes.Equal(h.Sum(nil), sha(pattern(uint64(n), n))) {
		t.Fatalf("download(%d) = %d bytes, want %d matching bytes", n, got, n)
	}
}

func sha(b []byte) []byte { s := sha256.Sum256(b); return s[:] }

// echo sends data through an echo session and checks what comes back.
func echo(t *testing.T, d *Dialer, data []byte) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	c, err := d.Dial(ctx)
	if err != nil {
		t.Fatalf("Dial: %v", err)
	}
	defer c.Close()
	errc := make(chan error, 1)
	go func() {
		_, err := c.Write(append([]byte{'E'}, data...))
		if err == nil {
			err = c.(interface{ CloseWrite() error }).CloseWrite()
		}
		errc <- err
	}()
	c.SetReadDeadline(time.Now().Add(60 * time.Second))
	got, err := io.ReadAll(c)
	if err != nil {
		t.Fatalf("echo: read %d bytes, then %v", len(got), err)
	}
	if err := <-errc; err != nil {
		t.Fatalf("echo: write: %v", err)
	}
	if !bytes.Equal(got, data) {
		t.Fatalf("echo(%d bytes) = %d bytes, want the same %d", len(data), len(got), len(data))
	}
}

func TestTransfer(t *testing.T) {
	for _, tc := range []struct {
		name   string
		mode   string
		budget int64
	}{
		{"packet-up", ModePacketUp, 0},
		{"stream-up", ModeStreamUp, 0},
		{"budget 8k", ModePacketUp, 8 << 10},
		{"budget 64k", ModePacketUp, 64 << 10},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := startServer(t)
			var log connLog
			d := newDialer(t, DialerConfig{Dial: log.dial(s.ln.Addr().String()), Host: "example.com", Path: "/x", Mode: tc.mode, Budget: tc.budget, Pace: noPace})
			download(t, d, 1<<20+17)
			echo(t, d, pattern(3, 300<<10))
			if tc.budget > 0 {
				log.mu.Lock()
				defer log.mu.Unlock()
				for i, c := range log.conns {
					if rx := c.rx.Load(); rx > tc.budget {
						t.Errorf("connection %d received %d bytes, want at most the budget %d", i, rx, tc.budget)
					}
				}
				if len(log.conns) < (1<<20)/int(tc.budget) {
					t.Errorf("%d connections for 1 MiB, want rotation (at least %d)", len(log.conns), (1<<20)/int(tc.budget))
				}
			}
			if st := d.Stats(); st.MaxLive > defaultMaxConns {
				t.Errorf("MaxLive = %d, want at most %d", st.MaxLive, defaultMaxConns)
			}
		})
	}
}

// TestKillAtRandomOffsets cuts every connection at a random received-byte
// offset; the sessions must still deliver every byte once, in order.
func TestKillAtRandomOffsets(t *testing.T) {
	for _, budget := range []int64{0, 16 << 10} {
		s := startServer(t)
		log := connLog{killAt: func() int64 { return 1 + rand.Int64N(48<<10) }}
		d := newDialer(t, DialerConfig{Dial: log.dial(s.ln.Addr().String()), Host: "example.com", Budget: budget, Pace: noPace})
		download(t, d, 2<<20)
		echo(t, d, pattern(5, 200<<10))
		log.mu.Lock()
		n := len(log.conns)
		log.mu.Unlock()
		if n < 10 {
			t.Errorf("budget %d: %d connections, want many cut ones", budget, n)
		}
	}
}

func TestManySessionsFewConns(t *testing.T) {
	s := startServer(t)
	var log connLog
	d := newDialer(t, DialerConfig{Dial: log.dial(s.ln.Addr().String()), Host: "example.com", Budget: 12 << 10, MaxConns: 2, Pace: noPace})
	var wg sync.WaitGroup
	for i := range 40 {
		wg.Go(func() { download(t, d, 1000+i*997) })
	}
	wg.Wait()
	if st := d.Stats(); st.MaxLive > 2 {
		t.Errorf("MaxLive = %d, want at most 2", st.MaxLive)
	}
	if got := s.hub.Sessions(); got > 40 {
		t.Errorf("Sessions() = %d", got)
	}
}

// cleanupWait bounds a wait in a test's cleanup. A wait that never ends
// would hold the package until go test's timeout, whose goroutine dump (all
// the tail of a CI log shows) does not name the test; past cleanupWait the
// test fails with every goroutine's stack instead, and the rest go on.
const cleanupWait = 2 * time.Minute

// bounded runs wait, failing t with all stacks if it has not returned
// after cleanupWait (it is then left running).
func bounded(t *testing.T, what string, wait func()) {
	t.Helper()
	done := make(chan struct{})
	go func() {
		defer close(done)
		wait()
	}()
	select {
	case <-done:
	case <-time.After(cleanupWait):
		buf := make([]byte, 8<<20)
		t.Errorf("%s still waiting after %v:\n%s", what, cleanupWait, buf[:runtime.Stack(buf, true)])
	}
}
