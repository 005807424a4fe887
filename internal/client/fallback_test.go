package client

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/burrow-vpn/burrow/internal/camo"
	"github.com/burrow-vpn/burrow/internal/links"
	"github.com/burrow-vpn/burrow/internal/transport/xhttp"
)

// hold opens a proxied connection through tun asking the target for n
// bytes and reads until it has them all or wait has passed without them
// (a frozen connection); it leaves the connection open.
func hold(t *testing.T, tun *Tunnel, target string, n int, wait time.Duration) (net.Conn, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := tun.DialContext(ctx, "tcp", target)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	var nb [8]byte
	binary.BigEndian.PutUint64(nb[:], uint64(n))
	if _, err := c.Write(nb[:]); err != nil {
		t.Fatal(err)
	}
	c.SetReadDeadline(time.Now().Add(wait))
	got, err := io.ReadFull(c, make([]byte, n))
	var ne net.Error
	if err != nil && !(errors.As(err, &ne) && ne.Timeout()) {
		t.Fatalf("read after %d bytes: %v", got, err)
	}
	c.SetReadDeadline(time.Time{})
	return c, got
}

// judge makes the tunnel's watcher judge every connection it follows as if
// they had all been quiet for the stall window.
func judge(tun *Tunnel) { tun.scan(time.Now().Add(stallTimeout + time.Second)) }

// TestPlainHealthyLearnsNothing: healthy plain connections of 40 and 44 KiB
// that finished (closed) or idle after their whole response (open, no
// request outstanding) are no freeze: the tunnel stays on plain
// connections and learns no budget.
func TestPlainHealthyLearnsNothing(t *testing.T) {
	bed := startBed(t)
	for _, keepOpen := range []bool{false, true} {
		t.Run(fmt.Sprintf("open=%v", keepOpen), func(t *testing.T) {
			l := bed.link
			tun, err := NewTunnel(&l, TunnelOptions{})
			if err != nil {
				t.Fatal(err)
			}
			defer tun.Close()
			for _, n := range []int{40 << 10, 44 << 10} {
				if keepOpen {
					if _, got := hold(t, tun, bed.target, n, 30*time.Second); got != n {
						t.Fatalf("read %d of %d bytes", got, n)
					}
					continue
				}
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				err := fetch(ctx, tun, bed.target, n)
				cancel()
				if err != nil {
					t.Fatal(err)
				}
			}
			judge(tun)
			if got := tun.Transport(); got != TransportTCP {
				t.Errorf("Transport() after two healthy connections = %q, want %q", got, TransportTCP)
			}
			if k := tun.learned.Get(tun.netKey()); k != (xhttp.Known{}) {
				t.Errorf("learned %+v from two healthy connections, want nothing", k)
			}
		})
	}
}

// TestPlainFreezeLearned: two plain connections frozen at the same amount
// teach a budget and switch the tunnel to XHTTP, whether they stay open or
// the application gives up on them before the stall window, unless the
// amount is below what any connection needs (xhttp.MinBudget): a budget
// there could carry nothing.
func TestPlainFreezeLearned(t *testing.T) {
	old := stallTimeout
	stallTimeout = 2 * time.Second // the application below gives up after 1.5 s
	defer func() { stallTimeout = old }()
	bed := startBed(t)
	for _, tc := range []struct {
		limit  int64
		closed bool // the application closes the frozen connections
		learn  bool
	}{
		{3584, false, false},
		{16 << 10, false, true},
		{16 << 10, true, true},
	} {
		t.Run(fmt.Sprintf("freeze at %d closed=%v", tc.limit, tc.closed), func(t *testing.T) {
			fr := startFreezer(t, bed.server, tc.limit)
			l := bed.link
			l.Port = uint16(fr.ln.Addr().(*net.TCPAddr).Port)
			tun, err := NewTunnel(&l, TunnelOptions{})
			if err != nil {
				t.Fatal(err)
			}
			defer tun.Close()
			for range 2 {
				c, got := hold(t, tun, bed.target, 64<<10, 1500*time.Millisecond)
				if got == 64<<10 {
					t.Fatal("the whole response came through the freeze")
				}
				if tc.closed {
					c.Close()
				}
			}
			judge(tun)
			budget := tun.learned.Get(tun.netKey()).Budget
			switch {
			case tc.learn && (budget <= 0 || budget >= tc.limit):
				t.Errorf("budget after two freezes at %d = %d, want one below it", tc.limit, budget)
			case tc.learn && tun.Transport() != TransportXHTTP:
				t.Errorf("Transport() after two freezes = %q, want %q", tun.Transport(), TransportXHTTP)
			case !tc.learn && (budget != 0 || tun.Transport() != TransportTCP):
				t.Errorf("after two freezes at %d: budget %d, Transport() %q; want none below %d, %q",
					tc.limit, budget, tun.Transport(), xhttp.MinBudget, TransportTCP)
			}
		})
	}
}

// TestPlainStallsPairWithinWindow: two stalls at the same amount make a
// freeze only within stallWindow of each other.
func TestPlainStallsPairWithinWindow(t *testing.T) {
	link := &links.VLESS{Host: "192.0.2.1", Port: 443, SNI: "cover.test", Type: links.TypeTCP, Flow: links.FlowVision}
	tun, err := NewTunnel(link, TunnelOptions{NoTelemetry: true})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	stalled := func(at time.Time, rx int64) {
		tun.watcher.mu.Lock()
		tun.stalledLocked(at, rx)
		tun.watcher.mu.Unlock()
	}
	stalled(now, 16<<10)
	stalled(now.Add(stallWindow+time.Second), 16<<10)
	if k := tun.learned.Get(tun.netKey()); k.Budget != 0 {
		t.Fatalf("budget %d from stalls %v apart, want none", k.Budget, stallWindow+time.Second)
	}
	stalled(now.Add(stallWindow+2*time.Second), 30<<10) // not near: no pair
	if k := tun.learned.Get(tun.netKey()); k.Budget != 0 {
		t.Fatalf("budget %d from stalls at 16 and 30 KiB, want none", k.Budget)
	}
	stalled(now.Add(stallWindow+3*time.Second), 17<<10)
	if k := tun.learned.Get(tun.netKey()); k.Budget <= 0 || k.Budget >= 16<<10 {
		t.Fatalf("budget %d from stalls at 16 and 17 KiB a few seconds apart, want one below 16 KiB", k.Budget)
	}

	// Tunnels sharing a Learned pair their stalls (the lab opens a tunnel
	// per connection).
	var shared Learned
	var tuns [2]*Tunnel
	for i := range tuns {
		if tuns[i], err = NewTunnel(link, TunnelOptions{NoTelemetry: true, Learned: &shared}); err != nil {
			t.Fatal(err)
		}
		tuns[i].watcher.mu.Lock()
		tuns[i].stalledLocked(now, 20<<10)
		tuns[i].watcher.mu.Unlock()
	}
	if got := tuns[1].Transport(); got != TransportXHTTP {
		t.Errorf("Transport() after one stall in each of two tunnels sharing a Learned = %q, want %q", got, TransportXHTTP)
	}
}

// TestResetSwitchPerNetwork: one handshake reset does not switch a tcp link
// to XHTTP, two within resetWindow do, on that network only.
func TestResetSwitchPerNetwork(t *testing.T) {
	var l Learned
	a, b := "10.0.0.0/24>s:443", "10.9.0.0/24>s:443"
	if l.reset(a) || l.usesXHTTP(a) {
		t.Fatal("one reset switched the network to XHTTP")
	}
	if !l.reset(a) || !l.usesXHTTP(a) {
		t.Fatal("two resets did not switch the network to XHTTP")
	}
	if l.usesXHTTP(b) {
		t.Error("another network switched too")
	}
	if l.reset(a) {
		t.Error("a reset on a switched network reported a new switch")
	}
	if !l.revert(a) || l.usesXHTTP(a) {
		t.Error("revert did not bring the network back to plain connections")
	}
	l.reset(a)
	if l.reset(a) || l.usesXHTTP(a) {
		t.Error("resets switched the network again while the revert holds")
	}
}

// plainOnly is a server that speaks REALITY + VLESS but not XHTTP, as an
// Xray server's tcp inbound: it ends a connection that opens with the
// HTTP/2 preface and carries the others to bed's server (through a REALITY
// connection of its own, so the plain text passes unchanged).
func plainOnly(t *testing.T, bed *testBed) string {
	t.Helper()
	cs, err := camo.NewServer(camo.ServerConfig{PrivateKey: bed.priv, ShortIDs: [][]byte{bed.link.ShortID},
		ServerNames: []string{bed.link.SNI}, Cover: bed.cover})
	if err != nil {
		t.Fatal(err)
	}
	browser, err := links.FingerprintBrowser(bed.link.Fingerprint)
	if err != nil {
		t.Fatal(err)
	}
	cfg := camo.ClientConfig{ServerName: bed.link.SNI, PublicKey: bed.link.PublicKey, ShortID: bed.link.ShortID, Fingerprint: browser}
	var mu sync.Mutex
	var open []net.Conn
	addr := serveLoopback(t, func(c net.Conn) {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		tc, err := cs.Handshake(ctx, c)
		if err != nil {
			return
		}
		defer tc.Close()
		first := make([]byte, 1)
		if _, err := io.ReadFull(tc, first); err != nil || first[0] == xhttp.Preface[0] {
			return
		}
		raw, err := net.Dial("tcp", bed.server.String())
		if err != nil {
			return
		}
		up, err := camo.Client(ctx, raw, cfg)
		if err != nil {
			raw.Close()
			return
		}
		defer up.Close()
		mu.Lock()
		open = append(open, tc, up)
		mu.Unlock()
		go func() { up.Write(first); io.Copy(up, tc) }()
		io.Copy(tc, up)
	})
	t.Cleanup(func() {
		mu.Lock()
		defer mu.Unlock()
		for _, c := range open {
			c.Close()
		}
	})
	return addr
}

// TestRevertWithoutXHTTP: on a network with a learned freeze a tcp link
// tries XHTTP; when the server does not serve it the tunnel goes back to
// plain connections, which work, and stays there although the budget is
// still known.
func TestRevertWithoutXHTTP(t *testing.T) {
	bed := startBed(t)
	front := plainOnly(t, bed)
	l := bed.link
	_, port, _ := net.SplitHostPort(front)
	fmt.Sscan(port, &l.Port)
	var learned Learned
	var logs syncBuf
	tun, err := NewTunnel(&l, TunnelOptions{Learned: &learned, Logger: slog.New(slog.NewTextHandler(&logs, nil)), NoTelemetry: true})
	if err != nil {
		t.Fatal(err)
	}
	defer tun.Close()
	key := networkKey(&net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)}, tun.server)
	learned.seen(tun.server, key)
	learned.Stalled(key, 16<<10, false)
	learned.Stalled(key, 16<<10, false)
	if got := tun.Transport(); got != TransportXHTTP {
		t.Fatalf("Transport() after a learned freeze = %q, want %q", got, TransportXHTTP)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := fetch(ctx, tun, bed.target, 1000); err == nil {
		t.Fatal("fetch over XHTTP from a server without XHTTP succeeded")
	}
	if got := tun.Transport(); got != TransportTCP {
		t.Fatalf("Transport() after XHTTP failed = %q, want %q", got, TransportTCP)
	}
	if !bytes.Contains([]byte(logs.String()), []byte("back to plain connections")) {
		t.Errorf("log = %q, want the revert announced", logs.String())
	}
	for i := range 2 {
		if err := fetch(ctx, tun, bed.target, 20<<10); err != nil {
			t.Fatalf("fetch %d over plain connections after the revert: %v", i, err)
		}
	}
	if got := tun.Transport(); got != TransportTCP || learned.Get(key).Budget == 0 {
		t.Errorf("Transport() = %q with budget %d, want %q while the revert holds", got, learned.Get(key).Budget, TransportTCP)
	}
}

func TestRecordCursor(t *testing.T) {
	rec := func(n int) []byte { return append([]byte{23, 3, 3, byte(n >> 8), byte(n)}, make([]byte, n)...) }
	stream := append(append(rec(300), rec(0)...), rec(16384)...)
	for _, cut := range []int{0, 3, 5, 100, 305, 310, 311, len(stream) - 1, len(stream)} {
		var r recordCursor
		mid := r.feed(stream[:cut])
		want := cut != 0 && cut != 305 && cut != 310 && cut != len(stream)
		if mid != want {
			t.Errorf("feed(stream[:%d]) = %v, want %v", cut, mid, want)
		}
	}
	var r recordCursor
	for _, b := range stream { // byte by byte
		r.feed([]byte{b})
	}
	if r.feed(nil) {
		t.Error("after the whole stream fed byte by byte: inside a record, want at a boundary")
	}
}
