package client

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"io"
	"log/slog"
	mrand "math/rand/v2"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/burrow-vpn/burrow/internal/access"
	"github.com/burrow-vpn/burrow/internal/camo"
	"github.com/burrow-vpn/burrow/internal/coversite"
	"github.com/burrow-vpn/burrow/internal/links"
	"github.com/burrow-vpn/burrow/internal/server"

	"github.com/burrow-vpn/burrow/internal/transport/xhttp"
)

// memUsers is a one-user store.
type memUsers struct {
	mu   sync.Mutex
	user access.User
}

func (m *memUsers) ListUsers(context.Context) ([]*access.User, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	u := m.user
	return []*access.User{&u}, nil
}

func (m *memUsers) AddTraffic(context.Context, map[int64]access.Traffic, string) error { return nil }
func (*memUsers) ResetTraffic(context.Context, int64, time.Time) error                 { return nil }

// testBed is a Burrow server (REALITY to a local cover site) and a target
// that sends n pattern bytes after reading an 8-byte n.
type testBed struct {
	srv    *server.Server
	link   links.VLESS // tcp link
	priv   []byte      // the server's REALITY key
	cover  string      // the cover site's address
	server netip.AddrPort
	target string
}

func pattern(n int) []byte {
	r := mrand.New(mrand.NewPCG(uint64(n), 9))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

func startBed(t testing.TB) *testBed { return startBedWith(t, server.Options{}) }

// startBedWith is startBed with the server's opts (Listener and
// ShutdownGrace are set here).
func startBedWith(t testing.TB, opts server.Options) *testBed {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	cover, err := coversite.Start("127.0.0.1:0", "cover.test")
	if err != nil {
		t.Fatal(err)
	}
	target := serveLoopback(t, func(c net.Conn) {
		var nb [8]byte
		if _, err := io.ReadFull(c, nb[:]); err != nil {
			return
		}
		c.Write(pattern(int(binary.BigEndian.Uint64(nb[:]))))
	})
	priv, pub, err := camo.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	var uuid [16]byte
	rand.Read(uuid[:])
	log := slog.New(slog.DiscardHandler)
	reg := server.NewRegistry(&memUsers{user: access.User{ID: 1, Name: "t", UUID: uuid, Reset: "never", CreatedAt: time.Now()}}, log)
	if err := reg.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().(*net.TCPAddr).AddrPort()
	cfg := &server.Config{
		Listen: addr.String(), Cover: cover.Addr, ServerNames: []string{"cover.test"},
		PublicAddr: "127.0.0.1", PrivateKey: server.EncodeKey(priv), PublicKey: server.EncodeKey(pub),
		ShortIDs: []string{"abcd"}, AllowPrivateEgress: true,
	}
	cfg.Defaults()
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	opts.Listener, opts.ShutdownGrace = ln, 100*time.Millisecond
	srv, err := server.New(cfg, reg, log, opts)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		srv.Serve(ctx, ln)
	}()
	t.Cleanup(func() {
		cancel()
		<-done
		cover.Close()
	})
	return &testBed{
		priv:   priv,
		cover:  cover.Addr,
		srv:    srv,
		server: addr,
		target: target,
		link: links.VLESS{UUID: uuid, Host: "127.0.0.1", Port: addr.Port(), SNI: "cover.test", Fingerprint: "chrome",
			PublicKey: pub, ShortID: []byte{0xab, 0xcd}, Flow: links.FlowVision, Type: links.TypeTCP,
			Security: links.SecurityReality, Encryption: links.EncryptionNone},
	}
}

// serveLoopback serves each connection to a new loopback listener with
// handle (which need not close it) until the test ends, and returns the
// listener's address.
func serveLoopback(t testing.TB, handle func(net.Conn)) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Go(func() {
				defer c.Close()
				handle(c)
			})
		}
	})
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	return ln.Addr().String()
}

// freezer is a TCP relay to the server that stops forwarding towards the
// client after limit bytes on each connection, without a reset (the 2025
// Russian "16 KB freeze"). It records the most bytes any connection carried.
type freezer struct {
	ln     net.Listener
	limit  int64
	mu     sync.Mutex
	most   int64
	conns  int
	frozen int // connections that reached limit
	open   []net.Conn
}

func startFreezer(t *testing.T, to netip.AddrPort, limit int64) *freezer {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f := &freezer{ln: ln, limit: limit}
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			f.mu.Lock()
			f.conns++
			f.mu.Unlock()
			wg.Go(func() {
				defer c.Close()
				s, err := net.Dial("tcp", to.String())
				if err != nil {
					return
				}
				defer s.Close()
				f.mu.Lock()
				f.open = append(f.open, c, s)
				f.mu.Unlock()
				go io.Copy(s, c)
				var n int64
				buf := make([]byte, 4096)
				for {
					k, err := s.Read(buf)
					if k > 0 {
						k = int(min(int64(k), f.limit-n))
						c.Write(buf[:k])
						n += int64(k)
						f.mu.Lock()
						f.most = max(f.most, n)
						f.mu.Unlock()
					}
					if err != nil || n >= f.limit {
						break
					}
				}
				// Frozen: hold the connection open, forward nothing more.
				if n >= f.limit {
					f.mu.Lock()
					f.frozen++
					f.mu.Unlock()
				}
				io.Copy(io.Discard, s)
			})
		}
	})
	t.Cleanup(func() {
		ln.Close()
		f.mu.Lock()
		for _, c := range f.open {
			c.Close()
		}
		f.mu.Unlock()
		wg.Wait()
	})
	return f
}

func fetch(ctx context.Context, tun *Tunnel, target string, n int) error {
	c, err := tun.DialContext(ctx, "tcp", target)
	if err != nil {
		return fmt.Errorf("dial: %w", err)
	}
	defer c.Close()
	if d, ok := ctx.Deadline(); ok {
		c.SetDeadline(d)
	}
	var nb [8]byte
	binary.BigEndian.PutUint64(nb[:], uint64(n))
	if _, err := c.Write(nb[:]); err != nil {
		return fmt.Errorf("write: %w", err)
	}
	h := sha256.New()
	got, err := io.Copy(h, c)
	if err != nil {
		return fmt.Errorf("read after %d bytes: %w", got, err)
	}
	want := sha256.Sum256(pattern(n))
	if got != int64(n) || !bytes.Equal(h.Sum(nil), want[:]) {
		return fmt.Errorf("got %d bytes, want %d matching", got, n)
	}
	return nil
}

func TestXHTTPEndToEnd(t *testing.T) {
	bed := startBed(t)
	for _, tc := range []struct {
		name   string
		x      links.XHTTP
		budget int64 // TunnelOptions.Budget
	}{
		{"packet-up", links.XHTTP{Mode: links.ModePacketUp, Path: "/assets/"}, 0},
		{"stream-up", links.XHTTP{Mode: links.ModeStreamUp, Path: "/s"}, 0},
		{"rotating 12k", links.XHTTP{}, 12 << 10},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l := bed.link
			l.Type, l.Flow, l.XHTTP = links.TypeXHTTP, "", &tc.x
			tun, err := NewTunnel(&l, TunnelOptions{Pace: noPace, Budget: tc.budget})
			if err != nil {
				t.Fatal(err)
			}
			defer tun.Close()
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			if err := fetch(ctx, tun, bed.target, 1<<20+3); err != nil {
				t.Fatalf("fetch 1 MiB over %s: %v", tc.name, err)
			}
			if st := tun.XHTTPStats(); st.MaxLive > defaultPoolConns || tc.budget > 0 && st.Dialed < 20 || tc.budget == 0 && st.Dialed > 2 {
				t.Errorf("XHTTPStats() = %+v, want at most %d live, and many dialed only when rotating", st, defaultPoolConns)
			}
		})
	}
	// The same port still serves plain REALITY + Vision.
	l := bed.link
	tun, err := NewTunnel(&l, TunnelOptions{Pace: noPace})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := fetch(ctx, tun, bed.target, 1<<20); err != nil {
		t.Fatalf("fetch over tcp: %v", err)
	}
}

// TestRotationLearnsFreeze runs the transports through a relay that
// freezes every connection after a given amount towards the client, with a
// link as `burrow user add` writes it (budget=12288): the client learns the
// freeze from its first frozen connections, whose transfers resume
// elsewhere, and rotates below it from then on, whatever the amount (6 KiB
// is below the budget links carry; with no freeze it never rotates, see
// TestXHTTPEndToEnd).
func TestRotationLearnsFreeze(t *testing.T) {
	for _, limit := range []int64{6 << 10, 16 << 10, 40 << 10} {
		t.Run(fmt.Sprintf("freeze at %d", limit), func(t *testing.T) { testRotationLearnsFreeze(t, limit) })
	}
}

func testRotationLearnsFreeze(t *testing.T, limit int64) {
	bed := startBed(t)
	fr := startFreezer(t, bed.server, limit)
	via := fr.ln.Addr().(*net.TCPAddr)

	plain := bed.link
	plain.Port = uint16(via.Port)
	tun, err := NewTunnel(&plain, TunnelOptions{NoFallback: true})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	err = fetch(ctx, tun, bed.target, 256<<10)
	cancel()
	if err == nil {
		t.Fatalf("plain REALITY through the freeze: fetch succeeded, want it frozen (is the freezer broken?)")
	}

	l := plain
	l.Type, l.Flow, l.XHTTP = links.TypeXHTTP, "", &links.XHTTP{Budget: 12 << 10}
	rot, err := NewTunnel(&l, TunnelOptions{Pace: noPace})
	if err != nil {
		t.Fatal(err)
	}
	defer rot.Close()
	ctx, cancel = context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	if err := fetch(ctx, rot, bed.target, 1<<20); err != nil {
		t.Fatalf("through the freeze, learning: %v", err)
	}
	learned := rot.learned.Get(rot.netKey())
	if learned.Budget <= 0 || learned.Budget >= limit {
		t.Fatalf("learned %+v after a freeze at %d, want a budget below it", learned, limit)
	}
	// Connections opened from now on rotate below the freeze.
	rot.xhMu.Lock()
	dialer := rot.xh
	rot.xh = nil
	rot.xhMu.Unlock()
	dialer.Close()
	fr.mu.Lock()
	fr.frozen, fr.conns = 0, 0
	fr.mu.Unlock()
	if err := fetch(ctx, rot, bed.target, 1<<20); err != nil {
		t.Fatalf("through the freeze, learned: %v", err)
	}
	// Every open session keeps a download request on a connection; below
	// ~8 KiB a connection has room for few besides the handshake, so fewer
	// sessions run at once there (see docs/adaptive.md).
	sessions := 50
	if limit < 8<<10 {
		sessions = 8
	}
	var wg sync.WaitGroup
	errs := make(chan error, sessions)
	for range sessions {
		wg.Go(func() { errs <- fetch(ctx, rot, bed.target, 500+mrand.IntN(3000)) })
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatalf("short request through the freeze: %v", err)
		}
	}
	fr.mu.Lock()
	defer fr.mu.Unlock()
	// A connection rotating at the budget that still freezes widens the
	// margin; a few may, not one in ten.
	if fr.frozen > 3 && fr.frozen*10 > fr.conns {
		t.Errorf("%d of %d connections froze after learning %+v, want few (the margin widens)", fr.frozen, fr.conns, learned)
	}
	if st := rot.XHTTPStats(); st.MaxLive > defaultPoolConns {
		t.Errorf("MaxLive = %d, want at most %d concurrent connections", st.MaxLive, defaultPoolConns)
	}
	t.Logf("freeze at %d: learned budget %d, then %d; 1 MiB + %d requests then took %d connections, %d froze",
		limit, learned.Budget, rot.learned.Get(rot.netKey()).Budget, sessions, fr.conns, fr.frozen)
}

// TestFallbackOnFreeze: a tcp link whose connections freeze at 16 KiB
// switches new connections to the rotating transport, says so, and then
// gets its data.
func TestFallbackOnFreeze(t *testing.T) {
	old := stallTimeout
	stallTimeout = time.Second
	defer func() { stallTimeout = old }()
	bed := startBed(t)
	fr := startFreezer(t, bed.server, 16<<10)
	l := bed.link
	l.Port = uint16(fr.ln.Addr().(*net.TCPAddr).Port)
	var logs syncBuf
	tun, err := NewTunnel(&l, TunnelOptions{Pace: noPace, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer tun.Close()
	for i := range 2 {
		ctx, cancel := context.WithTimeout(context.Background(), 2500*time.Millisecond)
		err := fetch(ctx, tun, bed.target, 256<<10)
		cancel()
		if err == nil {
			t.Fatalf("fetch %d over frozen plain connections succeeded", i)
		}
	}
	if got := tun.Transport(); got != TransportXHTTP {
		t.Fatalf("Transport() after two frozen connections = %q, want %q", got, TransportXHTTP)
	}
	if !bytes.Contains([]byte(logs.String()), []byte("rotating XHTTP transport")) {
		t.Errorf("log = %q, want the switch announced", logs.String())
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := fetch(ctx, tun, bed.target, 1<<20); err != nil {
		t.Fatalf("fetch after the switch: %v", err)
	}
}

type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuf) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestXHTTPUDP carries UDP datagrams (VLESS's UDP command) over an XHTTP
// session with rotation on.
func TestXHTTPUDP(t *testing.T) {
	bed := startBed(t)
	uc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer uc.Close()
	go func() {
		buf := make([]byte, 2048)
		for {
			n, from, err := uc.ReadFrom(buf)
			if err != nil {
				return
			}
			uc.WriteTo(append([]byte("echo:"), buf[:n]...), from)
		}
	}()
	l := bed.link
	l.Type, l.Flow, l.XHTTP = links.TypeXHTTP, "", &links.XHTTP{}
	tun, err := NewTunnel(&l, TunnelOptions{Pace: noPace, Budget: 8 << 10})
	if err != nil {
		t.Fatal(err)
	}
	defer tun.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c, err := tun.DialContext(ctx, "udp", uc.LocalAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(15 * time.Second))
	buf := make([]byte, 2048)
	for i := range 50 { // 50 × ~1 KiB answers: several rotations of an 8 KiB budget
		msg := bytes.Repeat([]byte{byte('a' + i%26)}, 1000)
		if _, err := c.Write(msg); err != nil {
			t.Fatalf("datagram %d: write: %v", i, err)
		}
		n, err := c.Read(buf)
		if err != nil {
			t.Fatalf("datagram %d: read: %v", i, err)
		}
		if want := append([]byte("echo:"), msg...); !bytes.Equal(buf[:n], want) {
			t.Fatalf("datagram %d = %d bytes %.10q, want %d bytes %.10q", i, n, buf[:n], len(want), want)
		}
	}
	if st := tun.XHTTPStats(); st.Dialed < 3 {
		t.Errorf("XHTTPStats().Dialed = %d, want rotation over several connections", st.Dialed)
	}
}

// TestXHTTPDialHook: with TunnelOptions.Dial set, every TCP connection of the
// rotating transport leaves through it, the warm-up and rotation
// connections its goroutines open included (the censor lab's netns mode
// needs them all in the client's network namespace).
func TestXHTTPDialHook(t *testing.T) {
	bed := startBed(t)
	l := bed.link
	l.Type, l.Flow, l.XHTTP = links.TypeXHTTP, "", &links.XHTTP{}
	var mu sync.Mutex
	hooked := 0
	tun, err := NewTunnel(&l, TunnelOptions{Pace: noPace, Budget: 12 << 10, Dial: func(ctx context.Context, network, address string) (net.Conn, error) {
		mu.Lock()
		hooked++
		mu.Unlock()
		var d net.Dialer
		return d.DialContext(ctx, network, address)
	}})
	if err != nil {
		t.Fatal(err)
	}
	defer tun.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := fetch(ctx, tun, bed.target, 256<<10); err != nil {
		t.Fatalf("fetch 256 KiB: %v", err)
	}
	st := tun.XHTTPStats()
	tun.Close() // waits for the dialer's goroutines
	mu.Lock()
	defer mu.Unlock()
	if st.Dialed < 2 || int64(hooked) < st.Dialed {
		t.Errorf("TunnelOptions.Dial calls = %d, XHTTPStats().Dialed = %d, want every connection (at least 2) dialed with it", hooked, st.Dialed)
	}
}

// noPace turns the XHTTP pacer off in tests of rotation and learning,
// which rotate hundreds of connections; the pacer has its own tests
// (internal/transport/xhttp/pace_test.go) and the lab's cells run with it.
var noPace = xhttp.Pace{Off: true}
