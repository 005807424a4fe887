package server

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net"
	"path/filepath"
	"testing"
	"time"

	"github.com/burrow-vpn/burrow/internal/access"
	"github.com/burrow-vpn/burrow/internal/camo"
	"github.com/burrow-vpn/burrow/internal/coversite"
	"github.com/burrow-vpn/burrow/internal/relaylink"
	"github.com/burrow-vpn/burrow/internal/tlshello"
	"github.com/burrow-vpn/burrow/internal/transport/xhttp"
	"github.com/burrow-vpn/burrow/internal/trunk"
)

// relayExit is a running server with one relay in its table.
type relayExit struct {
	addr  string
	pub   []byte
	relay *access.Relay
	cover *coversite.Site
	srv   *Server
	st    *access.SQLiteStore
}

func startRelayExit(t *testing.T) *relayExit {
	t.Helper()
	cover, err := coversite.Start("127.0.0.1:0", "cover.test")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cover.Close() })
	priv, pub, err := camo.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	st, err := access.OpenSQLite(filepath.Join(t.TempDir(), "users.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	rl, err := st.CreateRelay(t.Context(), "r1", [][8]byte{{1}})
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.DiscardHandler)
	relays := NewRelays(st, log)
	if err := relays.Refresh(t.Context()); err != nil {
		t.Fatal(err)
	}
	cfg := &Config{Cover: cover.Addr, ServerNames: []string{"cover.test"}, PrivateKey: EncodeKey(priv), ShortIDs: []string{"01"}}
	srv, err := New(cfg, NewRegistry(st, log), log, Options{ShutdownGrace: time.Second, Relays: relays})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ctx, ln) }()
	t.Cleanup(func() { cancel(); <-served })
	return &relayExit{addr: ln.Addr().String(), pub: pub, relay: rl, cover: cover, srv: srv, st: st}
}

// leg is a relay's pooled link to e, authenticated with short ID sid.
func (e *relayExit) leg(t *testing.T, sid [8]byte) *xhttp.Dialer {
	t.Helper()
	d, err := xhttp.NewDialer(xhttp.DialerConfig{
		Dial: func(ctx context.Context) (net.Conn, func() int64, error) {
			raw, err := net.Dial("tcp", e.addr)
			if err != nil {
				return nil, nil, err
			}
			c, err := camo.Client(ctx, raw, camo.ClientConfig{ServerName: "cover.test", PublicKey: e.pub, ShortID: sid[:]})
			return c, nil, err
		},
		Host: "cover.test",
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	return d
}

// exchange opens a stream on d, writes out, half-closes and returns
// everything the exit answered.
func exchange(t *testing.T, d *xhttp.Dialer, out []byte) []byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := d.Dial(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(30 * time.Second))
	if _, err := c.Write(out); err != nil {
		t.Fatal(err)
	}
	c.(interface{ CloseWrite() error }).CloseWrite()
	in, _ := io.ReadAll(c)
	return in
}

// TestRelayStreamGarbage: on a relay's link, a stream with a wrong
// credential or a malformed header gets nothing and reaches nobody; a
// stream with a valid header and junk instead of a ClientHello gets what
// the cover answers that junk with, as a direct connection would.
func TestRelayStreamGarbage(t *testing.T) {
	e := startRelayExit(t)
	d := e.leg(t, e.relay.ShortID)
	probe, _ := (&relaylink.Header{Kind: relaylink.KindProbe, Secret: e.relay.Secret}).Append(nil)
	if got := exchange(t, d, probe); !bytes.Equal(got, []byte{relaylink.ProbeOK}) {
		t.Fatalf("probe with the relay's credential: answer %x, want %x", got, relaylink.ProbeOK)
	}
	wrong := e.relay.Secret
	wrong[0] ^= 1
	for name, out := range map[string][]byte{
		"wrong credential": header(t, relaylink.Header{Kind: relaylink.KindClient, Secret: wrong}),
		"malformed header": []byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"),
	} {
		refused := e.srv.Stats().RelayRefused.Load()
		if got := exchange(t, d, out); len(got) != 0 {
			t.Errorf("%s: the exit answered %q, want nothing", name, got)
		}
		if e.srv.Stats().RelayRefused.Load() != refused+1 {
			t.Errorf("%s: RelayRefused did not count it", name)
		}
	}

	junk := bytes.Repeat([]byte("\x16\x03\x01\x00\x05junk!"), 20)
	want := coverAnswer(t, e.cover.Addr, junk)
	hdr := header(t, relaylink.Header{Kind: relaylink.KindClient, Secret: e.relay.Secret})
	authenticated := e.srv.Stats().Authenticated.Load()
	if got := exchange(t, d, append(hdr, junk...)); !bytes.Equal(got, want) {
		t.Errorf("junk through the relay link: the exit answered %q, want the cover's answer %q", got, want)
	}
	if e.srv.Stats().Authenticated.Load() != authenticated {
		t.Error("junk through the relay link was authenticated")
	}
}

// TestRelayTrunkGarbage: a trunk (relaylink.KindTrunk) with a wrong
// credential gets nothing; a trunk whose frames break the rules is ended,
// counted, and reaches nobody; a stream of a good trunk that carries junk
// instead of a ClientHello gets the cover's answer, as a direct
// connection would, and the trunk carries on.
func TestRelayTrunkGarbage(t *testing.T) {
	e := startRelayExit(t)
	d := e.leg(t, e.relay.ShortID)
	wrong := e.relay.Secret
	wrong[0] ^= 1
	if got := exchange(t, d, header(t, relaylink.Header{Kind: relaylink.KindTrunk, Secret: wrong})); len(got) != 0 {
		t.Errorf("a trunk with a wrong credential: the exit answered %q, want nothing", got)
	}

	good := header(t, relaylink.Header{Kind: relaylink.KindTrunk, Secret: e.relay.Secret})
	refused := e.srv.Stats().RelayRefused.Load()
	authenticated := e.srv.Stats().Authenticated.Load()
	broken := append(append([]byte{}, good...), 9, 0, 0, 0, 1, 0, 0) // frame type 9
	if got := exchange(t, d, broken); !bytes.Equal(got, []byte{relaylink.TrunkOK}) {
		t.Errorf("a trunk with a broken frame: the exit answered %q, want TrunkOK and the end", got)
	}
	waitUntil(t, func() bool { return e.srv.Stats().RelayRefused.Load() == refused+1 }, "the broken trunk is counted as refused")

	junk := bytes.Repeat([]byte("\x16\x03\x01\x00\x05junk!"), 20)
	want := coverAnswer(t, e.cover.Addr, junk)

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := d.Dial(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.Write(good)
	var ok [1]byte
	if _, err := io.ReadFull(c, ok[:]); err != nil || ok[0] != relaylink.TrunkOK {
		t.Fatalf("a trunk with the relay's credential: %x, %v; want TrunkOK", ok, err)
	}
	tr := trunk.New(c, nil)
	defer tr.Close()
	for i := range 2 { // the second shows the trunk outlives a stream the cover answered
		st, err := tr.Open()
		if err != nil {
			t.Fatal(err)
		}
		st.SetDeadline(time.Now().Add(30 * time.Second))
		st.Write(junk)
		st.CloseWrite()
		got, _ := io.ReadAll(st)
		st.Close()
		if !bytes.Equal(got, want) {
			t.Errorf("stream %d: junk on a trunk got %q, want the cover's answer %q", i, got, want)
		}
	}
	if e.srv.Stats().Authenticated.Load() != authenticated {
		t.Error("junk on a trunk was authenticated")
	}
}

func waitUntil(t *testing.T, cond func() bool, what string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("never: %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func header(t *testing.T, h relaylink.Header) []byte {
	t.Helper()
	b, err := h.Append(nil)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestRelayUnknownShortID: a REALITY client with a short ID that is not a
// relay's (nor a user's) is spliced to the cover, and Known follows the
// store: a revoked relay is no longer known after Refresh.
func TestRelayUnknownShortID(t *testing.T) {
	e := startRelayExit(t)
	raw, err := net.Dial("tcp", e.addr)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := camo.Client(ctx, raw, camo.ClientConfig{ServerName: "cover.test", PublicKey: e.pub, ShortID: []byte{9, 9}}); err == nil {
		t.Error("REALITY handshake with an unknown short ID succeeded; want the cover's certificate")
	}
	relays := e.srv.opts.Relays
	if !relays.Known(e.relay.ShortID) {
		t.Fatal("Known(relay's short ID) = false, want true")
	}
	if err := e.st.RevokeRelay(t.Context(), e.relay.ID); err != nil {
		t.Fatal(err)
	}
	if err := relays.Refresh(t.Context()); err != nil {
		t.Fatal(err)
	}
	if relays.Known(e.relay.ShortID) {
		t.Error("Known(revoked relay's short ID) = true after Refresh, want false")
	}
}

// helloFor returns the ClientHello a REALITY client sends for key and sid.
func helloFor(t *testing.T, key []byte, sid []byte) []byte {
	t.Helper()
	a, b := net.Pipe()
	defer a.Close()
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		camo.Client(ctx, b, camo.ClientConfig{ServerName: "cover.test", PublicKey: key, ShortID: sid})
		b.Close()
	}()
	a.SetDeadline(time.Now().Add(30 * time.Second))
	_, raw, err := tlshello.ReadRecords(a)
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

// TestRelayAsk: asked with a client's ClientHello (relaylink.KindAsk), the
// exit answers AskYes for its own client and goes on with the handshake,
// and AskNo, with nothing else, for another key's client or junk.
func TestRelayAsk(t *testing.T) {
	e := startRelayExit(t)
	d := e.leg(t, e.relay.ShortID)
	ask := header(t, relaylink.Header{Kind: relaylink.KindAsk, Secret: e.relay.Secret})
	_, other, err := camo.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	for name, hello := range map[string][]byte{
		"another key's client": helloFor(t, other, []byte{1}),
		"an unknown short ID":  helloFor(t, e.pub, []byte{2}),
		"junk":                 bytes.Repeat([]byte("\x16\x03\x01\x00\x05junk!"), 20),
	} {
		if got := exchange(t, d, append(ask, hello...)); !bytes.Equal(got, []byte{relaylink.AskNo}) {
			t.Errorf("%s: the exit answered %x, want only AskNo (%x)", name, got, relaylink.AskNo)
		}
	}
	got := exchange(t, d, append(ask, helloFor(t, e.pub, []byte{1})...))
	if len(got) < 2 || got[0] != relaylink.AskYes || got[1] != 0x16 {
		t.Errorf("its own client: the exit answered %.8x..., want AskYes (%x) then a TLS handshake record", got, relaylink.AskYes)
	}
}

// coverAnswer is what the cover at addr answers junk with, sent straight
// to it and followed by a FIN.
func coverAnswer(t *testing.T, addr string, junk []byte) []byte {
	t.Helper()
	direct, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer direct.Close()
	direct.Write(junk)
	direct.(*net.TCPConn).CloseWrite()
	direct.SetDeadline(time.Now().Add(30 * time.Second))
	want, _ := io.ReadAll(direct)
	return want
}
