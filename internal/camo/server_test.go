package camo

import (
	"bytes"
	"context"
	"crypto/ecdh"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/burrow-vpn/burrow/internal/tlshello"
	"github.com/xtls/reality"
)

func TestServerAuthenticated(t *testing.T) {
	srvCheckNoLeaks(t)
	cover := srvStartCover(t, false)
	h := srvStart(t, cover)
	big := bytes.Repeat([]byte("0123456789abcdef"), 64<<10/16)
	for _, tt := range []struct {
		fp      string
		shortID []byte
	}{
		{"chrome", h.shortID},
		{"firefox", []byte{1, 2, 3, 4, 5, 6, 7, 8}},
		{"chrome", h.shortID},
	} {
		t.Run(tt.fp, func(t *testing.T) {
			start := time.Now()
			tc, _, err := srvDialReality(t, h, ClientConfig{ServerName: srvCoverName, PublicKey: h.pub, ShortID: tt.shortID, Fingerprint: tt.fp})
			if err != nil {
				t.Fatalf("Client = %v, want nil", err)
			}
			if err := h.result(t, tc.LocalAddr().String()); err != nil {
				t.Fatalf("Handshake = %v, want nil", err)
			}
			if err := srvEcho(tc, []byte("ping")); err != nil {
				t.Fatalf("echo(ping) = %v, want nil", err)
			}
			if err := srvEcho(tc, big); err != nil {
				t.Fatalf("echo(64 KiB) = %v, want nil", err)
			}
			// reality.Server sleeps in 5 s steps after the handshake while
			// the cover's record sizes are unknown; the server must have
			// waited for them (waitRecordSizes) before handing over.
			key := cover + " " + srvCoverName + " 2"
			if v, ok := reality.GlobalPostHandshakeRecordsLens.Load(key); !ok {
				t.Errorf("record sizes for %q unknown after the handshake", key)
			} else if _, done := v.([]int); !done {
				t.Errorf("record sizes for %q = %v after the handshake, want measured ([]int)", key, v)
			}
			t.Logf("authenticated round trip took %v", time.Since(start))
		})
	}
}

func TestServerRejectsWrongCredentials(t *testing.T) {
	cover := srvStartCover(t, false)
	h := srvStart(t, cover)
	_, otherPub, _ := GenerateKey()
	for _, tt := range []struct {
		name string
		cfg  ClientConfig
	}{
		{"wrong short id", ClientConfig{ServerName: srvCoverName, PublicKey: h.pub, ShortID: []byte{0xab}}},
		{"wrong key", ClientConfig{ServerName: srvCoverName, PublicKey: otherPub, ShortID: h.shortID}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, flight, err := srvDialReality(t, h, tt.cfg)
			if !errors.Is(err, ErrNotReality) {
				t.Errorf("Client = %v, want ErrNotReality (served by the cover)", err)
			}
			if len(flight) == 0 {
				t.Fatal("no first flight captured")
			}
		})
	}
}

// srvCatchHello returns the ClientHello that client sends.
func srvCatchHello(t testing.TB, client func(net.Conn)) *tlshello.ClientHello {
	t.Helper()
	a, b := net.Pipe()
	go func() {
		client(a)
		a.Close()
	}()
	defer b.Close()
	b.SetDeadline(time.Now().Add(5 * time.Second))
	hello, _, err := tlshello.ReadRecords(b)
	if err != nil {
		t.Fatalf("ReadRecords = %v", err)
	}
	return hello
}

func TestAuthenticate(t *testing.T) {
	priv, pub, _ := GenerateKey()
	s, err := NewServer(ServerConfig{PrivateKey: priv, ShortIDs: [][]byte{{0x11, 0x22}}, ServerNames: []string{"a.example"}, Cover: "127.0.0.1:1"})
	if err != nil {
		t.Fatal(err)
	}
	reality := func(cfg ClientConfig) func(net.Conn) {
		return func(c net.Conn) { Client(t.Context(), c, cfg) }
	}
	good := ClientConfig{ServerName: "a.example", PublicKey: pub, ShortID: []byte{0x11, 0x22}}
	now := time.Now()
	tests := []struct {
		name   string
		client func(net.Conn)
		now    time.Time
		reason string // "" = accepted; else a substring of the reason
	}{
		{"good", reality(good), now, ""},
		{"good firefox", reality(ClientConfig{ServerName: "a.example", PublicKey: pub, ShortID: []byte{0x11, 0x22}, Fingerprint: "firefox"}), now, ""},
		{"clock ahead", reality(good), now.Add(-2 * time.Minute), "clock"},
		{"clock behind", reality(good), now.Add(2 * time.Minute), "clock"},
		{"short id", reality(ClientConfig{ServerName: "a.example", PublicKey: pub, ShortID: []byte{0x11}}), now, "short ID"},
		{"other sni", reality(ClientConfig{ServerName: "b.example", PublicKey: pub, ShortID: []byte{0x11, 0x22}}), now, "server name"},
		{"plain go tls", func(c net.Conn) { tls.Client(c, &tls.Config{ServerName: "a.example"}).Handshake() }, now, "does not open"},
		{"tls 1.2 only", func(c net.Conn) {
			tls.Client(c, &tls.Config{ServerName: "a.example", MaxVersion: tls.VersionTLS12}).Handshake()
		}, now, "TLS 1.3"},
		{"no x25519", func(c net.Conn) {
			tls.Client(c, &tls.Config{ServerName: "a.example", CurvePreferences: []tls.CurveID{tls.CurveP256}}).Handshake()
		}, now, "X25519"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := srvCatchHello(t, tt.client)
			_, reason := s.authenticate(h, tt.now)
			if tt.reason == "" && reason != "" || tt.reason != "" && !strings.Contains(reason, tt.reason) {
				t.Errorf("authenticate(%s) = %q, want %q", tt.name, reason, tt.reason)
			}
		})
	}
}

func TestNewServerValidates(t *testing.T) {
	priv, _, _ := GenerateKey()
	good := ServerConfig{PrivateKey: priv, ShortIDs: [][]byte{{1}}, ServerNames: []string{"a.example"}, Cover: "127.0.0.1:443"}
	tests := []struct {
		name string
		edit func(*ServerConfig)
		want string
	}{
		{"short key", func(c *ServerConfig) { c.PrivateKey = priv[:31] }, "private key"},
		{"no short ids", func(c *ServerConfig) { c.ShortIDs = nil }, "short IDs"},
		{"long short id", func(c *ServerConfig) { c.ShortIDs = [][]byte{make([]byte, 9)} }, "short ID"},
		{"no names", func(c *ServerConfig) { c.ServerNames = nil }, "server names"},
		{"bad cover", func(c *ServerConfig) { c.Cover = "example.com" }, "host:port"},
		{"negative diff", func(c *ServerConfig) { c.MaxTimeDiff = -time.Second }, "MaxTimeDiff"},
	}
	for _, tt := range tests {
		cfg := good
		tt.edit(&cfg)
		if _, err := NewServer(cfg); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("NewServer(%s) = %v, want error about %q", tt.name, err, tt.want)
		}
	}
}

func TestGenerateKey(t *testing.T) {
	priv, pub, err := GenerateKey()
	if err != nil || len(priv) != 32 || len(pub) != 32 {
		t.Fatalf("GenerateKey() = %d, %d bytes, %v; want 32, 32, nil", len(priv), len(pub), err)
	}
	priv2, _, _ := GenerateKey()
	if bytes.Equal(priv, priv2) {
		t.Error("GenerateKey returned the same key twice")
	}
}

// srvGoClient returns a crypto/tls client handshake for srvCatchHello.
func srvGoClient(sni string) func(net.Conn) {
	return func(c net.Conn) { tls.Client(c, &tls.Config{ServerName: sni}).Handshake() }
}

// fuzzAuthKey is FuzzAuthenticate's server key. It is fixed, not generated:
// the fuzzer's coordinator process builds the seed hellos and its worker
// processes run them, each calling FuzzAuthenticate afresh. With a key of
// their own the workers rejected every seed at the authenticator, so the
// clock and short ID checks were never reached.
var fuzzAuthKey = bytes.Repeat([]byte{0x42}, 32)

// fuzzAuthSetup returns FuzzAuthenticate's server and its seeds: a Chrome
// and a Firefox REALITY hello, record framing included.
func fuzzAuthSetup(tb testing.TB) (*Server, [][]byte) {
	tb.Helper()
	k, err := ecdh.X25519().NewPrivateKey(fuzzAuthKey)
	if err != nil {
		tb.Fatal(err)
	}
	s, err := NewServer(ServerConfig{PrivateKey: fuzzAuthKey, ShortIDs: [][]byte{{7}}, ServerNames: []string{"a.example"}, Cover: "127.0.0.1:1"})
	if err != nil {
		tb.Fatal(err)
	}
	var seeds [][]byte
	for _, fp := range []string{"chrome", "firefox"} {
		h := srvCatchHello(tb, func(c net.Conn) {
			Client(context.Background(), c, ClientConfig{ServerName: "a.example", PublicKey: k.PublicKey().Bytes(), ShortID: []byte{7}, Fingerprint: fp})
		})
		seeds = append(seeds, append([]byte{0x16, 3, 1, byte(len(h.Raw) >> 8), byte(len(h.Raw))}, h.Raw...))
	}
	return s, seeds
}

// TestFuzzAuthenticateSeeds: seeds built by one fuzzing process authenticate
// in another, which set up its own server.
func TestFuzzAuthenticateSeeds(t *testing.T) {
	_, seeds := fuzzAuthSetup(t) // the coordinator's
	s, _ := fuzzAuthSetup(t)     // a worker's
	for i, in := range seeds {
		h, _, err := tlshello.ReadRecords(bytes.NewReader(in))
		if err != nil {
			t.Fatal(err)
		}
		if _, reason := s.authenticate(h, time.Now()); reason != "" {
			t.Errorf("seed %d, made in another process, not accepted: %s", i, reason)
		}
	}
}

// FuzzAuthenticate feeds mutated REALITY ClientHellos (record framing
// included) through the server's reading and decision code.
func FuzzAuthenticate(f *testing.F) {
	s, seeds := fuzzAuthSetup(f)
	for _, in := range seeds {
		f.Add(in)
	}
	// One clock reading per process: an input takes the same path every
	// time it runs (seeds from this run are within MaxTimeDiff of it,
	// inputs cached from older runs deterministically are not).
	now := time.Now()
	f.Fuzz(func(t *testing.T, in []byte) {
		h, _, err := tlshello.ReadRecords(bytes.NewReader(in))
		if err != nil {
			return
		}
		s.authenticate(h, now)
	})
}

// srvTCPPair returns the two ends of a loopback TCP connection.
func srvTCPPair(t *testing.T) (*net.TCPConn, *net.TCPConn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	a, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	b, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close(); b.Close() })
	return a.(*net.TCPConn), b.(*net.TCPConn)
}

func TestReplayConn(t *testing.T) {
	a, b := srvTCPPair(t)
	rc := &replayConn{Conn: b, tcp: b, pending: []byte("hello ")}
	a.Write([]byte("world"))
	a.CloseWrite()
	var got bytes.Buffer
	if _, err := rc.WriteTo(&got); err != nil || got.String() != "hello world" {
		t.Errorf("WriteTo = %q, %v; want %q, nil", got.String(), err, "hello world")
	}
	if err := rc.CloseWrite(); err != nil {
		t.Errorf("CloseWrite = %v", err)
	}
	if n, err := a.Read(make([]byte, 1)); n != 0 || err == nil {
		t.Errorf("peer read after CloseWrite = %d, %v; want EOF", n, err)
	}
}

func TestCoverConn(t *testing.T) {
	a, b := srvTCPPair(t)
	cc := newCoverConn(b, []byte("early"), 10, 8, time.Now().Add(300*time.Millisecond))
	// Nothing is read before the hello (first 8 bytes) was written.
	start := time.Now()
	if _, err := cc.Read(make([]byte, 10)); !errors.Is(err, os.ErrDeadlineExceeded) || time.Since(start) < 250*time.Millisecond {
		t.Fatalf("Read before the hello was mirrored = %v after %v, want a deadline error after 300ms", err, time.Since(start))
	}
	cc.deadline = time.Now().Add(5 * time.Second)
	cc.Write([]byte("hell"))
	cc.Write([]byte("o!xy"))    // hello done: 8 bytes; and 2 more swallowed
	cc.Write([]byte("ab-real")) // the first 2 bytes still swallowed (10 in all)
	b.CloseWrite()
	got, _ := io.ReadAll(a)
	if string(got) != "-real" {
		t.Errorf("cover received %q, want %q", got, "-real")
	}
	a.Write([]byte(" late"))
	a.Close()
	all, _ := io.ReadAll(cc)
	if string(all) != "early late" {
		t.Errorf("read from cover %q, want %q", all, "early late")
	}
}
