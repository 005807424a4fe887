package camo

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// srvServeRaw runs handle for every connection to a loopback listener
// (a plain-TCP "cover" to exercise the splice).
func srvServeRaw(t *testing.T, handle func(*net.TCPConn)) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var conns []net.Conn
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			wg.Go(func() { handle(c.(*net.TCPConn)) })
		}
	})
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		srvWait(t, &wg, "cover handlers after closing their conns")
	})
	return ln.Addr().String()
}

func TestSpliceHalfClose(t *testing.T) {
	srvCheckNoLeaks(t)
	// The cover reads until the client's FIN, then answers and closes:
	// both FINs must pass through, and data after a half-close too.
	cover := srvServeRaw(t, func(c *net.TCPConn) {
		defer c.Close()
		b, _ := io.ReadAll(c)
		c.Write([]byte("got " + string(b)))
	})
	h := srvStart(t, cover)
	c, err := net.Dial("tcp", h.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.Write([]byte("HELO junk"))
	c.(*net.TCPConn).CloseWrite()
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	got, err := io.ReadAll(c)
	if err != nil || string(got) != "got HELO junk" {
		t.Errorf("after half-close read %q, %v; want %q, nil (FIN)", got, err, "got HELO junk")
	}
	if err := h.result(t, c.LocalAddr().String()); !errors.Is(err, ErrFallback) {
		t.Errorf("Handshake = %v, want ErrFallback", err)
	}
}

// TestCoverSpeaksFirst: a cover that speaks or ends before it has a whole
// hello decides the connection at once (fallback), and the prober sees what
// the cover does.
func TestCoverSpeaksFirst(t *testing.T) {
	tests := []struct {
		name   string
		handle func(*net.TCPConn)
	}{
		{"banner", func(c *net.TCPConn) {
			c.Write([]byte("220 mail ready\r\n"))
			c.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
			io.Copy(io.Discard, c)
			c.Close()
		}},
		// Ends at once with a FIN and drains what the client sends. (A cover
		// that close()s unread data answers FIN or RST by a race of its own,
		// which no one-sample comparison can judge.)
		{"immediate close", func(c *net.TCPConn) {
			c.CloseWrite()
			c.SetReadDeadline(time.Now().Add(5 * time.Second))
			io.Copy(io.Discard, c)
			c.Close()
		}},
		{"immediate reset", func(c *net.TCPConn) { c.SetLinger(0); c.Close() }},
	}
	partial := []byte{0x16, 3, 1, 0, 100, 1} // without the cover's word we would wait
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cover := srvServeRaw(t, tt.handle)
			h := srvStart(t, cover)
			p := srvProbe{tt.name, func(t *testing.T, addr string) srvOutcome { return srvProbeRaw(t, addr, partial) }}
			srvSame(t, p, cover, h.addr)
			c, err := net.Dial("tcp", h.addr)
			if err != nil && tt.name == "immediate reset" && isReset(err) {
				// Our reset (mirroring the cover's) can land before connect()
				// returns: the same outcome a client of the cover may see.
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			c.Write(partial)
			c.SetReadDeadline(time.Now().Add(2 * time.Second))
			io.Copy(io.Discard, c)
			c.Close()
			// A cover that resets at once may fail our dial already; then
			// Handshake reports the dial error and resets the client.
			err = h.result(t, c.LocalAddr().String())
			if !errors.Is(err, ErrFallback) && !(tt.name == "immediate reset" && isReset(err)) {
				t.Errorf("Handshake = %v, want ErrFallback", err)
			}
		})
	}
}

// TestSpliceIdleTimeout: activity postpones the fallback idle timeout, and an idle splice
// ends. The splice notices activity up to a quarter idle period late, so a stall of the
// machine longer than about half the period ends a healthy splice as idle: an attempt in
// which the test itself saw such a stall between two writes proves nothing either way and
// is made again, on a fresh connection.
func TestSpliceIdleTimeout(t *testing.T) {
	srvCheckNoLeaks(t)
	cover := srvServeRaw(t, func(c *net.TCPConn) { io.Copy(io.Discard, c) }) // never answers, never closes
	const attempts = 3
	for i := 1; ; i++ {
		stall := spliceIdleAttempt(t, cover)
		if stall == 0 {
			return
		}
		if i == attempts {
			t.Fatalf("%d attempts, each with a stall of the machine (the last %v) that could end a busy splice as idle", attempts, stall)
		}
		t.Logf("attempt %d: the machine stalled %v between two writes; trying again", i, stall)
	}
}

// spliceIdleAttempt keeps a splice busy for a while, then idle, and checks when it ends.
// It returns the longest gap between two writes if that was too long for a verdict, else 0.
func spliceIdleAttempt(t *testing.T, cover string) time.Duration {
	const idle = time.Second
	const gap = 150 * time.Millisecond // far below idle
	s, sc, client := srvSpliceServer(t, cover, idle)
	done := make(chan error, 1)
	go func() {
		_, err := s.Handshake(context.Background(), sc)
		done <- err
	}()
	client.Write([]byte("junk"))
	lastWrite := time.Now()
	for range 5 {
		time.Sleep(gap) // spacing the writes, not waiting for anything
		if stall := time.Since(lastWrite); stall > idle/2 {
			return stall
		}
		if _, err := client.Write([]byte("more")); err != nil {
			t.Fatalf("write during activity: %v (the splice ended early)", err)
		}
		lastWrite = time.Now()
	}
	select {
	case err := <-done:
		if !errors.Is(err, ErrFallback) {
			t.Errorf("Handshake = %v, want ErrFallback", err)
		}
		// The end comes at least idle after the last byte relayed, which
		// is after our last write; the upper bound only has to catch a
		// splice that activity kept alive for good.
		if d := time.Since(lastWrite); d < idle || d > idle+8*time.Second {
			t.Errorf("idle splice ended %v after the last write, want %v to %v", d, idle, idle+8*time.Second)
		}
	case <-time.After(idle + 10*time.Second):
		t.Fatal("idle splice did not end")
	}
	return 0
}

// srvSpliceServer returns a Server for cover with the given fallback idle
// period, and both ends of a loopback TCP connection (server side, client
// side), closed when the test ends.
func srvSpliceServer(t *testing.T, cover string, idle time.Duration) (*Server, *net.TCPConn, *net.TCPConn) {
	t.Helper()
	priv, _, _ := GenerateKey()
	s, err := NewServer(ServerConfig{PrivateKey: priv, ShortIDs: [][]byte{{1}}, ServerNames: []string{"a.example"},
		Cover: cover, fallbackIdle: idle})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	client, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Close() })
	ln.(*net.TCPListener).SetDeadline(time.Now().Add(10 * time.Second))
	sc, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	return s, sc.(*net.TCPConn), client.(*net.TCPConn)
}

// TestSpliceIdleStuckReader: after the client half-closed, a client that
// stops reading leaves the last relay blocked in a write to it, where no
// read deadline can help. The idle period must still end the splice.
func TestSpliceIdleStuckReader(t *testing.T) {
	srvCheckNoLeaks(t)
	// The cover answers endlessly, like a large download.
	cover := srvServeRaw(t, func(c *net.TCPConn) {
		c.SetWriteDeadline(time.Now().Add(30 * time.Second))
		buf := make([]byte, 64<<10)
		for {
			if _, err := c.Write(buf); err != nil {
				return
			}
		}
	})
	const idle = 500 * time.Millisecond
	s, sc, client := srvSpliceServer(t, cover, idle)
	client.SetReadBuffer(4 << 10)
	done := make(chan error, 1)
	go func() {
		_, err := s.Handshake(context.Background(), sc)
		done <- err
	}()
	client.Write([]byte("GET / junk"))
	client.CloseWrite() // the client to cover relay ends with this FIN
	select {
	case err := <-done:
		if !errors.Is(err, ErrFallback) {
			t.Errorf("Handshake = %v, want ErrFallback", err)
		}
	case <-time.After(idle + 10*time.Second):
		t.Errorf("a splice to a client that stopped reading did not end within %v", idle+10*time.Second)
	}
}

func TestSpliceContextCancel(t *testing.T) {
	spliced := make(chan struct{}) // closed when the cover has the client's bytes
	var once sync.Once
	cover := srvServeRaw(t, func(c *net.TCPConn) {
		// The server's record-size detection dials the cover too (with
		// ClientHellos): only the spliced client's own bytes count.
		var b [len("junk")]byte
		if _, err := io.ReadFull(c, b[:]); err == nil && string(b[:]) == "junk" {
			once.Do(func() { close(spliced) })
		}
		io.Copy(io.Discard, c)
	})
	priv, _, _ := GenerateKey()
	s, err := NewServer(ServerConfig{PrivateKey: priv, ShortIDs: [][]byte{{1}}, ServerNames: []string{"a.example"}, Cover: cover})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	client, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	sc, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		_, err := s.Handshake(ctx, sc.(*net.TCPConn))
		done <- err
	}()
	client.Write([]byte("junk"))
	select {
	case <-spliced:
	case <-time.After(10 * time.Second):
		t.Fatal("the cover never got the client's bytes")
	}
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, ErrFallback) {
			t.Errorf("Handshake = %v, want ErrFallback", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("cancelling ctx did not end the splice")
	}
}

func TestHandshakeCoverDown(t *testing.T) {
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	dead := ln.Addr().String()
	ln.Close()
	priv, _, _ := GenerateKey()
	s, err := NewServer(ServerConfig{PrivateKey: priv, ShortIDs: [][]byte{{1}}, ServerNames: []string{"a.example"}, Cover: dead})
	if err != nil {
		t.Fatal(err)
	}
	l2, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l2.Close()
	client, err := net.Dial("tcp", l2.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	sc, _ := l2.Accept()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	if _, err := s.Handshake(ctx, sc.(*net.TCPConn)); err == nil || errors.Is(err, ErrFallback) {
		t.Errorf("Handshake with the cover down = %v, want a dial error", err)
	}
	client.SetReadDeadline(time.Now().Add(2 * time.Second))
	if _, err := client.Read(make([]byte, 1)); !isReset(err) {
		t.Errorf("client read = %v, want a reset (as a closed port would look)", err)
	}
}

func TestCheckCover(t *testing.T) {
	good := srvStartCover(t, false)
	tls12 := srvTLS12Cover(t)
	plain := srvServeRaw(t, func(c *net.TCPConn) {
		c.Write([]byte("SSH-2.0-OpenSSH_9.6\r\n"))
		c.Close()
	})
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	dead := ln.Addr().String()
	ln.Close()
	tests := []struct {
		name, cover, sni string
		want             string // "" = no error; else a substring
	}{
		{"good", good, srvCoverName, ""},
		{"wrong name", good, "other.example", "has no certificate for"},
		{"tls 1.2 only", tls12, srvCoverName, "does not speak TLS 1.3 with X25519"},
		{"not tls", plain, srvCoverName, "does not speak TLS 1.3 with X25519"},
		{"unreachable", dead, srvCoverName, "cannot be reached"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := CheckCover(t.Context(), nil, tt.cover, tt.sni)
			switch {
			case tt.want == "" && err != nil:
				t.Errorf("CheckCover(%s) = %v, want nil", tt.name, err)
			case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
				t.Errorf("CheckCover(%s) = %v, want error containing %q", tt.name, err, tt.want)
			case tt.want != "" && !strings.Contains(err.Error(), tt.cover):
				t.Errorf("CheckCover(%s) = %v, want the cover address in it", tt.name, err)
			}
		})
	}
}

// srvTLS12Cover is a TLS server that stops at TLS 1.2.
func srvTLS12Cover(t *testing.T) string {
	cert, err := srvCert()
	if err != nil {
		t.Fatal(err)
	}
	cfg := &tls.Config{Certificates: []tls.Certificate{cert}, MaxVersion: tls.VersionTLS12}
	return srvServeRaw(t, func(c *net.TCPConn) {
		tc := tls.Server(c, cfg)
		tc.SetDeadline(time.Now().Add(5 * time.Second))
		tc.Handshake()
		tc.Close()
	})
}

// TestSpliceClientResetMirrored: a client that resets makes us reset the
// cover, and a client FIN reaches the cover as a FIN.
func TestSpliceClientResetMirrored(t *testing.T) {
	srvCheckNoLeaks(t)
	tests := []struct {
		name  string
		end   func(*net.TCPConn)
		reset bool
	}{
		{"reset", func(c *net.TCPConn) { c.SetLinger(0); c.Close() }, true},
		{"fin", func(c *net.TCPConn) { c.CloseWrite() }, false},
	}
	// Each probe starts with 'j' and its case's index, so the cover tells
	// the probes apart from each other and from other dialers (reality's
	// record-size detection). Both channels have room for every send, so no
	// handler ever blocks on them.
	started := make([]chan struct{}, len(tests))
	ends := make([]chan error, len(tests))
	for i := range tests {
		started[i] = make(chan struct{}, 1)
		ends[i] = make(chan error, 1)
	}
	cover := srvServeRaw(t, func(c *net.TCPConn) {
		defer c.Close()
		c.SetReadDeadline(time.Now().Add(srvWaitTimeout))
		var id [2]byte
		if _, err := io.ReadFull(c, id[:]); err != nil || id[0] != 'j' || int(id[1]-'0') >= len(tests) {
			return // not one of our probes
		}
		i := int(id[1] - '0')
		started[i] <- struct{}{}
		_, err := io.Copy(io.Discard, c)
		ends[i] <- err
	})
	h := srvStart(t, cover)
	for i, tt := range tests {
		c, err := net.Dial("tcp", h.addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.Write([]byte{'j', '0' + byte(i), ' ', 'j', 'u', 'n', 'k'})
		// End only once the splice carries the probe: the cover has it.
		select {
		case <-started[i]:
		case <-time.After(srvWaitTimeout):
			t.Fatalf("client %s: the cover never got the probe", tt.name)
		}
		tt.end(c.(*net.TCPConn))
		select {
		case err := <-ends[i]:
			if isReset(err) != tt.reset || !tt.reset && err != nil {
				t.Errorf("client %s: the cover's read ended with %v, want reset %v", tt.name, err, tt.reset)
			}
		case <-time.After(srvWaitTimeout):
			t.Errorf("client %s: the cover saw no end", tt.name)
		}
		c.Close()
		if err := h.result(t, c.LocalAddr().String()); !errors.Is(err, ErrFallback) {
			t.Errorf("client %s: Handshake = %v, want ErrFallback", tt.name, err)
		}
	}
}

// resetOnWriteCover is a cover whose reset reaches the forward's write
// first: the write fails with ECONNRESET, and the read after it sees only
// the end of the stream, as a socket reports a reset once.
type resetOnWriteCover struct {
	net.Conn // nil: only Read, Write and the deadlines are used
	wrote    chan struct{}
	once     sync.Once
}

func (c *resetOnWriteCover) Write([]byte) (int, error) {
	c.once.Do(func() { close(c.wrote) })
	return 0, &net.OpError{Op: "write", Net: "tcp", Err: os.NewSyscallError("write", syscall.ECONNRESET)}
}

func (c *resetOnWriteCover) Read([]byte) (int, error) {
	<-c.wrote
	return 0, io.EOF
}

func (c *resetOnWriteCover) SetReadDeadline(time.Time) error { return nil }

// TestFlightKeepsCoverReset: a cover reset met by the forward's write is how
// the cover ended, though the next read sees EOF; so the client gets the
// cover's reset, not a FIN (a busy machine made that race and a prober saw
// FIN where the cover resets).
func TestFlightKeepsCoverReset(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	s, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	c.Write([]byte{0x16, 3, 1, 0, 100, 1})
	f := startFlight(s.(*net.TCPConn), &resetOnWriteCover{wrote: make(chan struct{})}, 10*time.Second)
	if _, _, _, err := f.readHello(); !isReset(err) {
		t.Fatalf("readHello = %v, want the forward's reset", err)
	}
	if _, coverErr, _ := f.stop(0); !isReset(coverErr) {
		t.Fatalf("the cover ended with %v, want its reset", coverErr)
	}
}
