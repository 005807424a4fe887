package camo

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"runtime"
	"runtime/pprof"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/burrow-vpn/burrow/internal/vless"
)

// The memory an idle proxied connection holds, client and server together: a
// browser keeps many connections open and idle, each its own REALITY conn
// carrying VLESS with Vision. The test is in this package because it needs
// the cover and server fixtures; it uses vless as Burrow's client and server
// do.

var idleProfile = flag.String("idleprofile", "", "write the heap profile of TestIdleConnMemory to this file, suffixed with .direct and .padded")

// idleHeapBound is the most live heap (client and server together) an idle
// Vision conn may hold. Measured with Go 1.26 on amd64: before the handshake
// leftovers and read buffers were released, 21.6 KB (direct) and 53.8 KB
// (padded); after, about 10 KB in both. The bound leaves room for other
// library versions but fails if a record buffer, Vision's scratch buffer or
// the handshake state is kept again.
const idleHeapBound = 16 << 10

// TestIdleConnMemory opens idleConns REALITY+Vision conns over loopback,
// exchanges a little data each way, leaves both ends blocked in Read and
// reports (and bounds) what each conn holds. In "direct" the inner traffic
// looks like TLS 1.3 and Vision switches to the raw TCP conns, as with a
// browser's HTTPS; in "padded" it is a short non-TLS exchange and Vision is
// still padding.
func TestIdleConnMemory(t *testing.T) {
	if testing.Short() {
		t.Skip("opens hundreds of connections")
	}
	for _, mode := range []string{"direct", "padded"} {
		t.Run(mode, func(t *testing.T) { testIdleConnMemory(t, mode) })
	}
}

func testIdleConnMemory(t *testing.T, mode string) {
	direct := mode == "direct"
	n := 300
	if raceEnabled {
		n = 60
	}
	cover := srvStartCover(t, false)
	priv, pub, err := GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	srv, err := NewServer(ServerConfig{PrivateKey: priv, ShortIDs: [][]byte{{7}}, ServerNames: []string{srvCoverName},
		Cover: cover, fallbackIdle: 20 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cfg := ClientConfig{ServerName: srvCoverName, PublicKey: pub, ShortID: []byte{7}}

	var wg sync.WaitGroup
	defer func() {
		ln.Close()
		srvWait(t, &wg, "idle conns")
	}()
	serverIdle := make(chan error, 2*n+2) // nil once a server conn is idle, or why not
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Go(func() { serverIdle <- idleServe(srv, c.(*net.TCPConn), direct, serverIdle) })
		}
	})
	// Warm up (record-size detection, pools, lazily built tables), so
	// that the measurement sees only what each conn holds.
	warm, err := idleDial(ln.Addr().String(), cfg, direct)
	if err != nil {
		t.Fatalf("%v (server: %v)", err, <-serverIdle)
	}
	if err := <-serverIdle; err != nil {
		t.Fatal(err)
	}
	warmDone := make(chan error, 1)
	go func() { warmDone <- idleClientRead(warm) }()

	runtime.MemProfileRate = 1
	defer func() { runtime.MemProfileRate = 512 << 10 }()
	before := idleMemStats()
	conns := make([]net.Conn, 0, n)
	clientIdle := make(chan error, n)
	defer func() {
		for _, c := range append(conns, warm) {
			c.Close()
		}
		for range len(conns) {
			<-clientIdle
		}
		<-warmDone
	}()
	for range n {
		c, err := idleDial(ln.Addr().String(), cfg, direct)
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
		go func() { clientIdle <- idleClientRead(c) }()
	}
	for range n {
		if err := <-serverIdle; err != nil {
			t.Fatal(err)
		}
	}
	waitParked(t, "camo.idleClientRead", n+1) // the client readers are in their Read
	after := idleMemStats()

	per := func(a, b uint64) float64 { return (float64(a) - float64(b)) / float64(n) }
	heap := per(after.HeapAlloc, before.HeapAlloc)
	t.Logf("%d idle conns: per conn (client+server) heap alloc %.0f B, heap in use %.0f B, stacks %.0f B, goroutines %.1f",
		n, heap, per(after.HeapInuse, before.HeapInuse), per(after.StackInuse, before.StackInuse),
		float64(runtime.NumGoroutine()-before.goroutines)/float64(n))
	client, server := idleSides()
	t.Logf("live heap by side (allocation stacks), per conn: client %.0f B, server %.0f B",
		float64(client)/float64(n), float64(server)/float64(n))
	if *idleProfile != "" {
		f, err := os.Create(*idleProfile + "." + mode)
		if err != nil {
			t.Fatal(err)
		}
		if err := pprof.WriteHeapProfile(f); err != nil {
			t.Fatal(err)
		}
		f.Close()
	}
	if heap > idleHeapBound {
		t.Errorf("an idle conn holds %.0f B of heap (client+server), want at most %d", heap, idleHeapBound)
	}
}

// waitParked waits until count goroutines running fn (a function name as in
// a stack trace, "camo.idleClientRead") are parked: blocked, not merely
// started. It fails t after 30 s.
func waitParked(t *testing.T, fn string, count int) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n == len(buf) {
			buf = make([]byte, 2*len(buf))
			continue
		}
		parked := 0
		for g := range strings.SplitSeq(string(buf[:n]), "\n\n") {
			header, _, _ := strings.Cut(g, "\n")
			if strings.Contains(g, fn+"(") && !strings.Contains(header, "[running") && !strings.Contains(header, "[runnable") {
				parked++
			}
		}
		if parked >= count {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d goroutines parked in %s after 30s, want %d", parked, fn, count)
		}
		time.Sleep(time.Millisecond) // polling interval
	}
}

type idleMem struct {
	runtime.MemStats
	goroutines int
}

func idleMemStats() idleMem {
	var m idleMem
	// The heap profile lags up to two cycles behind; MemStats is exact
	// after one.
	for range 3 {
		runtime.GC()
	}
	runtime.ReadMemStats(&m.MemStats)
	m.goroutines = runtime.NumGoroutine()
	return m
}

// idleSides sums the live heap allocated on the client's and the server's
// goroutines (or by the reality module's own goroutines), as recorded by
// the heap profile.
func idleSides() (client, server int64) {
	var recs []runtime.MemProfileRecord
	for {
		n, ok := runtime.MemProfile(recs, false)
		if ok {
			recs = recs[:n]
			break
		}
		recs = make([]runtime.MemProfileRecord, n+100)
	}
	for _, r := range recs {
		var sb strings.Builder
		frames := runtime.CallersFrames(r.Stack())
		for {
			f, more := frames.Next()
			sb.WriteString(f.Function)
			sb.WriteByte('\n')
			if !more {
				break
			}
		}
		s := sb.String()
		switch {
		case strings.Contains(s, "camo.idleDial") || strings.Contains(s, "camo.idleClientRead"):
			client += r.InUseBytes()
		case strings.Contains(s, "camo.idleServe") || strings.Contains(s, "xtls/reality"):
			server += r.InUseBytes()
		}
	}
	return client, server
}

var idleUUID = [16]byte{0x1d, 0x1e}

// Fake inner TLS 1.3 (what Vision's filter looks at): a ClientHello, a
// ServerHello with supported_versions 1.3 and TLS_AES_128_GCM_SHA256, and an
// application-data record, after which both directions go direct.
var (
	idleClientHello = []byte{0x16, 0x03, 0x01, 0x00, 0x04, 0x01, 0x00, 0x00, 0x00}
	idleServerHello = func() []byte {
		b := []byte{0x16, 0x03, 0x03, 0x00, 0x52, 0x02, 0x00, 0x00, 0x4e, 0x03, 0x03}
		b = append(b, make([]byte, 32)...) // random
		b = append(b, 32)
		b = append(b, make([]byte, 32)...)                   // session ID
		b = append(b, 0x13, 0x01, 0x00, 0x00, 0x06)          // cipher, compression, extensions length
		return append(b, 0x00, 0x2b, 0x00, 0x02, 0x03, 0x04) // supported_versions
	}()
	idleAppData = []byte{0x17, 0x03, 0x03, 0x00, 0x03, 'a', 'b', 'c'}
)

// idleDial opens one conn as Burrow's client does and runs the client's half
// of the exchange.
func idleDial(addr string, cfg ClientConfig, direct bool) (net.Conn, error) {
	raw, err := net.Dial("tcp", addr)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	tc, err := Client(ctx, raw, cfg)
	if err != nil {
		return nil, err
	}
	c := vless.ClientConn(tc, &vless.Request{UUID: idleUUID, Flow: vless.FlowVision, Command: vless.CommandTCP,
		Dest: vless.Addr{Host: "example.com", Port: 443}})
	c.SetDeadline(time.Now().Add(10 * time.Second))
	steps := [][2][]byte{{[]byte("ping"), []byte("pong")}}
	if direct {
		steps = [][2][]byte{{idleClientHello, idleServerHello}, {idleAppData, idleAppData}}
	}
	for _, s := range steps {
		if err := idleExchange(c, s[0], s[1]); err != nil {
			c.Close()
			return nil, fmt.Errorf("client: %w", err)
		}
	}
	c.SetDeadline(time.Time{})
	return c, nil
}

// idleServe is the server's half: handshake, request, exchange, then an
// idle Read until the client closes. It reports on idle when it is idle.
func idleServe(srv *Server, conn *net.TCPConn, direct bool, idle chan<- error) error {
	tc, err := srv.Handshake(context.Background(), conn)
	if err != nil {
		return err
	}
	defer tc.Close()
	tc.SetDeadline(time.Now().Add(10 * time.Second))
	req, err := vless.ReadRequest(tc)
	if err != nil {
		return err
	}
	c := vless.ServerConn(tc, req)
	steps := [][2][]byte{{[]byte("ping"), []byte("pong")}} // what the client sends, our answer
	if direct {
		steps = [][2][]byte{{idleClientHello, idleServerHello}, {idleAppData, idleAppData}}
	}
	for _, s := range steps {
		if err := idleReply(c, s[1], s[0]); err != nil {
			return fmt.Errorf("server: %w", err)
		}
	}
	c.SetDeadline(time.Time{})
	idle <- nil
	return idleRead(c)
}

func idleClientRead(c net.Conn) error { return idleRead(c) }

// idleRead blocks in Read as a relay does, until the conn ends. It reads into
// a shared buffer (nothing arrives while the test measures) so that the
// test's own buffers are not counted.
func idleRead(c net.Conn) error {
	_, err := c.Read(idleBuf[:])
	if err == nil {
		return errors.New("unexpected data on an idle conn")
	}
	return nil
}

var idleBuf [2 << 10]byte

func idleExchange(c net.Conn, send, want []byte) error {
	if _, err := c.Write(send); err != nil {
		return err
	}
	return idleExpect(c, want)
}

func idleReply(c net.Conn, send, want []byte) error {
	if err := idleExpect(c, want); err != nil {
		return err
	}
	_, err := c.Write(send)
	return err
}

func idleExpect(c net.Conn, want []byte) error {
	got := make([]byte, len(want))
	if _, err := io.ReadFull(c, got); err != nil {
		return err
	}
	if !bytes.Equal(got, want) {
		return fmt.Errorf("read %x, want %x", got, want)
	}
	return nil
}
