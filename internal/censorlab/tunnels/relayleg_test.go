package tunnels

import (
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/burrow-vpn/burrow/internal/access"
	"github.com/burrow-vpn/burrow/internal/censorlab"
	"github.com/burrow-vpn/burrow/internal/client"
	"github.com/burrow-vpn/burrow/internal/coversite"
	"github.com/burrow-vpn/burrow/internal/links"
	"github.com/burrow-vpn/burrow/internal/relay"
	"github.com/burrow-vpn/burrow/internal/relaylink"
	"github.com/burrow-vpn/burrow/internal/server"
)

// passive runs a middlebox without letting it act: it records the reasons
// the box would have reset a flow for, and passes everything.
type passive struct {
	box censorlab.Middlebox

	mu    sync.Mutex
	flows map[uint64]string // guarded by mu: flow → first reason
}

func (p *passive) Name() string { return "passive " + p.box.Name() }
func (p *passive) Open(f *censorlab.Flow) censorlab.Verdict {
	p.box.Open(f)
	return censorlab.Verdict{}
}
func (p *passive) Close(f *censorlab.Flow) { p.box.Close(f) }
func (p *passive) Data(f *censorlab.Flow, d censorlab.Dir, b []byte) censorlab.Verdict {
	if v := p.box.Data(f, d, b); v.Action != censorlab.Pass {
		p.mu.Lock()
		if p.flows == nil {
			p.flows = map[uint64]string{}
		}
		if _, seen := p.flows[f.ID]; !seen {
			p.flows[f.ID] = v.Reason
		}
		p.mu.Unlock()
	}
	return censorlab.Verdict{}
}

func (p *passive) flagged() map[uint64]string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.flows
}

// wholeTLSInTLS is a stricter TLS-in-TLS detector than the lab's: it
// follows every record of a connection, not its first flights, and flags
// any client flight of ClientHello size answered by a server flight of
// handshake size and followed by a client flight whose first record is
// Finished-sized (the lab's bounds) — wherever in the connection it is.
type wholeTLSInTLS struct {
	mu    sync.Mutex
	flows map[uint64]*wholeTrack // guarded by mu
}

type wholeTrack struct {
	buf        [2][]byte
	started    bool
	lastClient bool
	flights    []int // client flight sizes
	firstRec   []int // first record of each client flight
	server     []int // server bytes after each client flight
}

func (*wholeTLSInTLS) Name() string                           { return "tls-in-tls (whole connection)" }
func (*wholeTLSInTLS) Open(*censorlab.Flow) censorlab.Verdict { return censorlab.Verdict{} }
func (w *wholeTLSInTLS) Close(f *censorlab.Flow) {
	w.mu.Lock()
	delete(w.flows, f.ID)
	w.mu.Unlock()
}

func (w *wholeTLSInTLS) Data(f *censorlab.Flow, d censorlab.Dir, p []byte) censorlab.Verdict {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.flows == nil {
		w.flows = map[uint64]*wholeTrack{}
	}
	t := w.flows[f.ID]
	if t == nil {
		t = &wholeTrack{}
		w.flows[f.ID] = t
	}
	i := 0
	if d != censorlab.Up {
		i = 1
	}
	t.buf[i] = append(t.buf[i], p...)
	for len(t.buf[i]) >= 5 {
		n := int(t.buf[i][3])<<8 | int(t.buf[i][4])
		if len(t.buf[i]) < 5+n {
			break
		}
		typ := t.buf[i][0]
		t.buf[i] = t.buf[i][5+n:]
		if typ != 23 {
			continue
		}
		if i == 0 {
			if !t.started {
				t.started = true // the outer Finished
				continue
			}
			if !t.lastClient || len(t.flights) == 0 {
				t.flights, t.firstRec, t.server = append(t.flights, 0), append(t.firstRec, n), append(t.server, 0)
			}
			t.flights[len(t.flights)-1] += n
			t.lastClient = true
			k := len(t.flights) - 2
			if k >= 0 && len(t.flights[k:]) == 2 && t.flights[len(t.flights)-1] == n {
				if c1, s1, c2 := t.flights[k], t.server[k], t.firstRec[k+1]; c1 >= 200 && c1 <= 3000 && s1 >= 400 && c2 >= 20 && c2 <= 170 {
					return censorlab.Verdict{Action: censorlab.Reset, Reason: fmt.Sprintf("flight %d: client %d B, server %d B, client %d B", k, c1, s1, c2)}
				}
			}
		} else if len(t.flights) > 0 {
			t.server[len(t.server)-1] += n
			t.lastClient = false
		}
	}
	return censorlab.Verdict{}
}

// legBed is a relay whose leg to the exit crosses a censor, and a client of
// the relay; sink echoes what it gets.
type legBed struct {
	tun   *client.Tunnel
	sink  string
	relay *relay.Relay
	logs  *syncBuffer
}

// startLeg starts an exit, a relay whose leg to it crosses a censor with
// boxes, an echo sink and a client of the relay (one TCP + Vision
// connection per proxied one).
func startLeg(t *testing.T, boxes ...censorlab.Middlebox) *legBed {
	ctx := t.Context()
	cover, err := coversite.Start("127.0.0.1:0", "cover.test")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cover.Close() })
	sink, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sink.Close() })
	go func() {
		for {
			c, err := sink.Accept()
			if err != nil {
				return
			}
			go func() { defer c.Close(); io.Copy(c, c) }()
		}
	}()
	logs := &syncBuffer{}
	log := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelInfo}))
	env := censorlab.Env{IP: netip.MustParseAddr("127.0.0.1"), Cover: cover.Addr, CoverSNI: "cover.test", Log: slog.New(slog.DiscardHandler),
		ClientDial: func(ctx context.Context, network, addr string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, network, addr)
		}}
	rl := access.Relay{ID: 1, Name: "leg"}
	rand.Read(rl.ShortID[:])
	rand.Read(rl.Secret[:])
	relays := server.NewRelays(&memRelays{relay: rl}, env.Log)
	if err := relays.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	shortID := []byte{0x4e, 0x67}
	ls, err := startServerWith(ctx, env, "leg", shortID, relays)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(ls.stop)
	censor := censorlab.NewCensor(boxes...)
	t.Cleanup(func() { censor.Close() })
	leg, err := censor.ExposeTCP(ctx, ls.addr)
	if err != nil {
		t.Fatal(err)
	}
	tok := relaylink.Token{Name: "leg", Addr: leg.String(), ShortID: rl.ShortID, SNI: "cover.test", Cover: cover.Addr, Secret: rl.Secret}
	copy(tok.PublicKey[:], ls.pub)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cfg := &relay.Config{Listen: ln.Addr().String(), PublicAddr: "127.0.0.1", Exits: []string{tok.String()}}
	cfg.Defaults()
	r, err := relay.New(cfg, relay.Options{Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	rctx, cancel := context.WithCancel(context.Background())
	served := make(chan struct{})
	go func() { defer close(served); r.Serve(rctx, ln) }()
	t.Cleanup(func() { cancel(); <-served; r.Close() })

	ra := ln.Addr().(*net.TCPAddr)
	tun, err := client.NewTunnel(&links.VLESS{UUID: ls.uuid, Host: "127.0.0.1", Port: uint16(ra.Port), SNI: "cover.test",
		Fingerprint: "chrome", PublicKey: ls.pub, ShortID: shortID, Flow: links.FlowVision, Type: links.TypeTCP,
		Security: links.SecurityReality, Encryption: links.EncryptionNone}, client.TunnelOptions{NoFallback: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tun.Close() })
	return &legBed{tun: tun, sink: sink.Addr().String(), relay: r, logs: logs}
}

// echo sends msg through the relay to the sink and checks it comes back.
func (b *legBed) echo(ctx context.Context, msg []byte) error {
	// What a freeze, its detection and the rotations after it take on a
	// quiet machine, stretched by this one's measured slowness.
	dctx, cancel := context.WithTimeout(ctx, censorlab.Budget(30*time.Second))
	defer cancel()
	c, err := b.tun.DialContext(dctx, "tcp", b.sink)
	if err != nil {
		return fmt.Errorf("connection through the relay: %w", err)
	}
	defer c.Close()
	stop := context.AfterFunc(dctx, func() { c.SetDeadline(time.Now()) })
	defer stop()
	werr := make(chan error, 1)
	go func() {
		_, err := c.Write(msg)
		werr <- err
	}()
	got := make([]byte, len(msg))
	if _, err := io.ReadFull(c, got); err != nil {
		return fmt.Errorf("echo of %d bytes through the relay: %w", len(msg), err)
	}
	if err := <-werr; err != nil {
		return err
	}
	if !bytes.Equal(got, msg) {
		return fmt.Errorf("echo of %d bytes came back changed", len(msg))
	}
	return nil
}

// TestRelayLegTLSInTLS measures what the relay→exit leg shows TLS-in-TLS
// detectors: clients' REALITY handshakes cross it inside the leg's own
// TLS, beside the relay's health probes and HTTP/2's control frames.
// Neither the lab's detector nor the stricter whole-connection one may
// flag a leg connection: the leg pads every short write of its client
// (xhttp's frameShaper), so no record after a server flight has the size
// of an inner Finished.
func TestRelayLegTLSInTLS(t *testing.T) {
	lab, strict := &passive{box: &censorlab.TLSInTLS{}}, &passive{box: &wholeTLSInTLS{}}
	b := startLeg(t, lab, strict)
	const handshakes = 30
	for i := range handshakes {
		// Every third connection echoes a few KiB: answers in DATA flights of
		// an inner server flight's size, and HTTP/2's window updates after them.
		msg := []byte(fmt.Sprintf("hello %d", i))
		if i%3 == 2 {
			msg = bytes.Repeat(msg, 300*(i%7+1))
		}
		if err := b.echo(t.Context(), msg); err != nil {
			t.Fatalf("connection %d: %v", i, err)
		}
	}
	legs := b.relay.Stats().ToExit.Load()
	t.Logf("%d client REALITY handshakes crossed the leg; lab detector flagged %d leg connections %v; whole-connection detector flagged %d %v",
		legs, len(lab.flagged()), lab.flagged(), len(strict.flagged()), strict.flagged())
	if n := len(lab.flagged()); n > 0 {
		t.Errorf("the lab's TLS-in-TLS detector flags %d of the relay's leg connections: %v", n, lab.flagged())
	}
	if n := len(strict.flagged()); n > 0 {
		t.Errorf("the whole-connection TLS-in-TLS detector flags %d of the relay's leg connections: %v", n, strict.flagged())
	}
}

// TestRelayLegLearnsFreeze: the relay's leg to its exit crosses a censor
// that freezes every connection after 16 KiB towards the relay (as TSPU
// does towards foreign hosting). The relay learns it from the first
// freezes and rotates below it — after that, leg connections no longer
// freeze (stall recovery alone, one freeze per connection, is too slow to
// carry this) — and every byte of the clients' connections arrives; the
// relay says what it learned.
func TestRelayLegLearnsFreeze(t *testing.T) {
	b := startLeg(t, &censorlab.ByteBudget{Networks: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}, Limit: 16 << 10})
	msg := make([]byte, 256<<10)
	rand.Read(msg)
	for i := range 4 {
		if err := b.echo(t.Context(), msg); err != nil {
			t.Fatalf("connection %d: %v\nrelay log:\n%s", i, err, b.logs.String())
		}
	}
	logs := b.logs.String()
	i := strings.Index(logs, "new ones rotate below it")
	if i < 0 {
		t.Fatalf("the relay did not say it learned the freeze; its log:\n%s", logs)
	}
	// A rotating connection that still froze near the freeze widens the
	// margin; a few may, not one per connection (1 MiB is ~65 rotations).
	if n := strings.Count(logs[i:], "connection frozen"); n > 3 {
		t.Errorf("%d leg connections froze after the relay learned the freeze; its log:\n%s", n, logs)
	}
}
