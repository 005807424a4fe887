package camo

import (
	"crypto/sha256"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"regexp"
	"syscall"
	"testing"
	"time"
)

// What an active prober sees: every probe gets the same answer from our
// server as from the cover site directly.

// srvOutcome is what a prober observes on one connection.
type srvOutcome struct {
	Data   string // the answer, normalized (see srvNormalize)
	End    string // "FIN", "RST" or "open" (nothing within the probe's patience)
	Timing string // "fast" (< 500 ms after the probe was sent), "slow" (2 s or more) or "middle"
}

// sameAs reports whether o and p look like the same server. A "middle"
// timing matches either: an answer near a boundary lands on either side of
// it by the machine's load of the moment, for the cover as for the server;
// fast against slow (an answer at once against one that waited for a
// timeout) is a difference.
func (o srvOutcome) sameAs(p srvOutcome) bool {
	if o.Timing != p.Timing && o.Timing != "middle" && p.Timing != "middle" {
		return false
	}
	o.Timing, p.Timing = "", ""
	return o == p
}

func (o srvOutcome) String() string {
	return fmt.Sprintf("{%s after %s data %.80q}", o.End, o.Timing, o.Data)
}

// srvProbePatience is how long a probe waits for the connection to end.
const srvProbePatience = 3 * time.Second

func srvClassify(err error, elapsed time.Duration) (end, timing string) {
	switch {
	case err == nil, errors.Is(err, io.EOF):
		end = "FIN"
	case errors.Is(err, syscall.ECONNRESET):
		end = "RST"
	case errors.Is(err, os.ErrDeadlineExceeded):
		return "open", "slow"
	default:
		end = "error: " + err.Error()
	}
	switch {
	case elapsed < 500*time.Millisecond:
		timing = "fast"
	case elapsed < 2*time.Second:
		timing = "middle"
	default:
		timing = "slow"
	}
	return end, timing
}

var srvDateLine = regexp.MustCompile(`(?m)^Date: .*\r\n`)

// srvNormalize keeps what is stable across runs: HTTP without Date lines,
// TLS as the sequence of record types and lengths (the content is fresh
// randomness every time).
func srvNormalize(b []byte) string {
	if len(b) >= 5 && (b[0] == 0x16 || b[0] == 0x15) && b[1] == 3 {
		var s string
		for len(b) >= 5 {
			n := int(b[3])<<8 | int(b[4])
			s += fmt.Sprintf("[%d:%d]", b[0], n)
			b = b[min(len(b), 5+n):]
		}
		return s + fmt.Sprintf("+%d", len(b))
	}
	return srvDateLine.ReplaceAllString(string(b), "")
}

// srvProbeRaw sends payload and reads until the connection ends.
func srvProbeRaw(t *testing.T, addr string, payload []byte) srvOutcome {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if isReset(err) {
		return srvOutcome{End: "RST", Timing: "fast"} // reset while connecting
	}
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	start := time.Now()
	if _, err := c.Write(payload); err != nil {
		end, timing := srvClassify(err, time.Since(start))
		return srvOutcome{End: end, Timing: timing}
	}
	c.SetReadDeadline(start.Add(srvProbePatience))
	got, err := io.ReadAll(c)
	end, timing := srvClassify(err, time.Since(start))
	return srvOutcome{Data: srvNormalize(got), End: end, Timing: timing}
}

// srvProbeTLS does a TLS handshake with sni and, if get, one HTTP GET; then
// waits for the end. Data holds the certificate chain's hash, the version,
// ALPN and the HTTP answer.
func srvProbeTLS(t *testing.T, addr, sni string, get bool) srvOutcome {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	tc := tls.Client(c, &tls.Config{ServerName: sni, InsecureSkipVerify: true, NextProtos: []string{"http/1.1"}})
	c.SetDeadline(time.Now().Add(srvProbePatience))
	if err := tc.Handshake(); err != nil {
		return srvOutcome{Data: "handshake: " + err.Error()}
	}
	st := tc.ConnectionState()
	d := sha256.New()
	for _, cert := range st.PeerCertificates {
		d.Write(cert.Raw)
	}
	data := fmt.Sprintf("chain %x version %#x alpn %q\n", d.Sum(nil)[:8], st.Version, st.NegotiatedProtocol)
	if get {
		fmt.Fprintf(tc, "GET / HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n", sni)
	}
	start := time.Now()
	got, err := io.ReadAll(tc)
	end, timing := srvClassify(err, time.Since(start))
	return srvOutcome{Data: data + srvNormalize(got), End: end, Timing: timing}
}

func srvRandom(n int) []byte {
	r := rand.New(rand.NewChaCha8([32]byte{byte(n)}))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

type srvProbe struct {
	name string
	run  func(t *testing.T, addr string) srvOutcome
}

func srvProbes() []srvProbe {
	raw := func(name string, payload []byte) srvProbe {
		return srvProbe{name, func(t *testing.T, addr string) srvOutcome { return srvProbeRaw(t, addr, payload) }}
	}
	ps := []srvProbe{
		{"tls handshake cover sni", func(t *testing.T, addr string) srvOutcome { return srvProbeTLS(t, addr, srvCoverName, false) }},
		{"tls GET", func(t *testing.T, addr string) srvOutcome { return srvProbeTLS(t, addr, srvCoverName, true) }},
		{"tls other sni", func(t *testing.T, addr string) srvOutcome { return srvProbeTLS(t, addr, "other.example", true) }},
		raw("plain http", []byte("GET / HTTP/1.1\r\nHost: cover.example\r\n\r\n")),
		raw("tls header only", []byte{0x16, 0x03, 0x01, 0x02, 0x00}),
	}
	for _, n := range []int{1, 50, 221, 500, 1000} {
		ps = append(ps, raw(fmt.Sprintf("random %d", n), srvRandom(n)))
	}
	return ps
}

// srvTries is how many times srvSame runs each probe.
const srvTries = 3

// srvSame runs probe against the cover and our server srvTries times and
// fails if the answers differ in any try, saying how often they did: a
// prober that sees a difference once has seen a difference, so no retry may
// hide an intermittent tell.
func srvSame(t *testing.T, p srvProbe, cover, ours string) {
	t.Helper()
	differed := 0
	var direct, via srvOutcome
	for range srvTries {
		d, v := p.run(t, cover), p.run(t, ours)
		if !d.sameAs(v) {
			if differed == 0 {
				direct, via = d, v
			}
			differed++
		}
	}
	if differed > 0 {
		t.Errorf("%s: differed in %d of %d tries; first: via server = %v, want %v (as the cover answers)", p.name, differed, srvTries, via, direct)
	}
}

func TestServerProbesLikeCover(t *testing.T) {
	for _, tt := range []struct {
		name      string
		resetJunk bool
	}{{"cover", false}, {"cover resetting junk", true}} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			cover := srvStartCover(t, tt.resetJunk)
			h := srvStart(t, cover)
			for _, p := range srvProbes() {
				t.Run(p.name, func(t *testing.T) {
					t.Parallel()
					srvSame(t, p, cover, h.addr)
				})
			}
		})
	}
}

// TestServerResetMirrored checks the measured tell directly: junk that the
// cover resets is reset by us too, never answered with a FIN.
func TestServerResetMirrored(t *testing.T) {
	srvCheckNoLeaks(t)
	cover := srvStartCover(t, true)
	h := srvStart(t, cover)
	for _, n := range []int{1, 50, 1000} {
		if got := srvProbeRaw(t, h.addr, srvRandom(n)); got.End != "RST" {
			t.Errorf("random %d via server ended %s, want RST", n, got.End)
		}
	}
	if got := srvProbeRaw(t, h.addr, []byte("GET / HTTP/1.0\r\n\r\n")); got.End != "RST" || got.Timing == "slow" {
		t.Errorf("plain http via server = %v, want a fast RST", got)
	}
}

// TestServerReplayGoesToCover replays an authenticated client's first flight:
// it must be served by the cover (Handshake returns ErrFallback) and look to
// the replayer exactly as the cover's answer to it.
func TestServerReplayGoesToCover(t *testing.T) {
	srvCheckNoLeaks(t)
	cover := srvStartCover(t, false)
	h := srvStart(t, cover)
	tc, flight, err := srvDialReality(t, h, ClientConfig{ServerName: srvCoverName, PublicKey: h.pub, ShortID: h.shortID})
	if err != nil {
		t.Fatalf("Client = %v, want nil", err)
	}
	if err := srvEcho(tc, []byte("hello through REALITY")); err != nil {
		t.Fatalf("echo = %v, want nil", err)
	}
	if len(flight) < 200 || flight[0] != 0x16 {
		t.Fatalf("captured first flight of %d bytes starting %x, want a TLS record", len(flight), flight[:min(len(flight), 1)])
	}
	replay := srvProbe{"replay", func(t *testing.T, addr string) srvOutcome { return srvProbeRaw(t, addr, flight) }}
	srvSame(t, replay, cover, h.addr)

	// And the server's own verdict on a replay.
	c, err := net.Dial("tcp", h.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.Write(flight)
	c.SetReadDeadline(time.Now().Add(srvProbePatience))
	io.Copy(io.Discard, c) // until the cover gives up on us
	c.Close()
	if err := h.result(t, c.LocalAddr().String()); !errors.Is(err, ErrFallback) {
		t.Errorf("Handshake(replayed hello) = %v, want ErrFallback", err)
	}
}

func TestServerGarbageNeverPanics(t *testing.T) {
	srvCheckNoLeaks(t)
	cover := srvStartCover(t, false)
	h := srvStart(t, cover)
	r := rand.New(rand.NewPCG(1, 2))
	type conn struct {
		c     net.Conn
		local string
	}
	var conns []conn
	for i := range 60 {
		var b []byte
		switch i % 3 {
		case 0: // random
			b = srvRandom(1 + r.IntN(3000))
		case 1: // a plausible record header, then garbage
			b = append([]byte{0x16, 3, 1, byte(r.IntN(0x41)), byte(r.UintN(256)), 1}, srvRandom(r.IntN(600))...)
		case 2: // a real-looking hello cut or corrupted
			b = append([]byte{0x16, 3, 3, 0, 200, 1, 0, 0, 196, 3, 3}, srvRandom(r.IntN(300))...)
		}
		c, err := net.Dial("tcp", h.addr)
		if err != nil {
			t.Fatal(err)
		}
		c.Write(b)
		conns = append(conns, conn{c, c.LocalAddr().String()})
	}
	for _, c := range conns {
		c.c.SetReadDeadline(time.Now().Add(srvProbePatience))
		io.Copy(io.Discard, c.c)
		c.c.Close()
		if err := h.result(t, c.local); !errors.Is(err, ErrFallback) {
			t.Errorf("Handshake(garbage) = %v, want ErrFallback", err)
		}
	}
}
