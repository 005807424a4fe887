package camo

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/binary"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	utls "github.com/refraction-networking/utls"

	"github.com/burrow-vpn/burrow/internal/tlshello"
)

var (
	updateGolden     = flag.Bool("update", false, "rewrite testdata/fingerprints.golden")
	captureChromium  = flag.String("capture-chromium", "", "run `chromium` headless against a loopback catcher and write its ClientHello to this file")
	chromiumCapture  = "testdata/chromium-156.hello"
	fingerprintsFile = "testdata/fingerprints.golden"
)

// readHelloMsg reads TLS records from r until they hold one whole handshake
// message and returns it (no record headers).
func readHelloMsg(r io.Reader) ([]byte, error) {
	var msg []byte
	for {
		var hdr [5]byte
		if _, err := io.ReadFull(r, hdr[:]); err != nil {
			return nil, err
		}
		if hdr[0] != 0x16 {
			return nil, fmt.Errorf("record type %d, want handshake", hdr[0])
		}
		frag := make([]byte, binary.BigEndian.Uint16(hdr[3:]))
		if _, err := io.ReadFull(r, frag); err != nil {
			return nil, err
		}
		msg = append(msg, frag...)
		if len(msg) >= 4 {
			if n := 4 + (int(msg[1])<<16 | int(msg[2])<<8 | int(msg[3])); len(msg) >= n {
				return msg[:n], nil
			}
		}
	}
}

// catchHello listens on loopback, runs send with the listener's address,
// and returns the ClientHello message of the first connection.
func catchHello(t *testing.T, send func(addr string)) []byte {
	t.Helper()
	return catchHelloUntil(t, func(addr string, _ <-chan struct{}) { send(addr) })
}

// catchHelloUntil is catchHello for a sender that keeps going until told:
// caught is closed once the catcher is done (the ClientHello read, or the
// catch failed).
func catchHelloUntil(t *testing.T, send func(addr string, caught <-chan struct{})) []byte {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	done, caught := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		send(l.Addr().String(), caught)
	}()
	defer func() { <-done }()
	defer close(caught)
	l.(*net.TCPListener).SetDeadline(time.Now().Add(30 * time.Second))
	c, err := l.Accept()
	if err != nil {
		t.Fatalf("catcher: accept: %v", err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	msg, err := readHelloMsg(c)
	if err != nil {
		t.Fatalf("catcher: read ClientHello: %v", err)
	}
	return msg
}

// ourHello returns the ClientHello that Client sends for fingerprint fp.
func ourHello(t *testing.T, fp string) *tlshello.ClientHello {
	t.Helper()
	msg := catchHello(t, func(addr string) {
		conn, err := net.Dial("tcp", addr)
		if err != nil {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		pub := bytes.Repeat([]byte{9}, 32)
		if c, err := Client(ctx, conn, ClientConfig{ServerName: coverName, PublicKey: pub, ShortID: []byte{1}, Fingerprint: fp}); err == nil {
			c.Close()
		}
	})
	return mustParse(t, msg)
}

func mustParse(t *testing.T, msg []byte) *tlshello.ClientHello {
	t.Helper()
	h, err := tlshello.Parse(msg)
	if err != nil {
		t.Fatalf("tlshello.Parse: %v", err)
	}
	return h
}

// ja3n is JA3 over the extensions sorted by type, so that it is stable for
// hellos (Chrome's) that permute their extensions.
func ja3n(h *tlshello.ClientHello) string {
	s := *h
	s.Extensions = slices.Clone(h.Extensions)
	slices.SortFunc(s.Extensions, func(a, b tlshello.Extension) int { return int(a.Type) - int(b.Type) })
	_, hash := s.JA3()
	return hash
}

// TestFingerprintsGolden pins the fingerprint of every fp= we send.
func TestFingerprintsGolden(t *testing.T) {
	var b strings.Builder
	b.WriteString("# JA4, JA4_r and JA3 (extensions sorted: Chrome permutes them) of the ClientHello\n")
	b.WriteString("# that camo.Client sends per fingerprint. Regenerate: go test ./internal/camo -run Golden -update\n")
	ja4s := map[string]bool{}
	for _, fp := range []string{FingerprintChrome, FingerprintEdge, FingerprintFirefox, FingerprintSafari, FingerprintIOS} {
		h := ourHello(t, fp)
		ja4s[h.JA4()] = true
		fmt.Fprintf(&b, "%s ja4 %s\n%s ja4_r %s\n%s ja3n %s\n", fp, h.JA4(), fp, h.JA4R(), fp, ja3n(h))
	}
	got := b.String()
	if *updateGolden {
		if err := os.WriteFile(fingerprintsFile, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(fingerprintsFile)
	if err != nil {
		t.Fatalf("%v (run with -update to create it)", err)
	}
	if got != string(want) {
		t.Errorf("fingerprints changed (run with -update if intended):\ngot:\n%s\nwant:\n%s", got, want)
	}

	if r := ourHello(t, FingerprintRandom).JA4(); !ja4s[r] {
		t.Errorf("JA4(random) = %s, want one of the named fingerprints' %v", r, ja4s)
	}
}

// TestChromeMatchesChromium compares our chrome hello with the committed
// Chromium 156 capture: the same JA4, and extension for extension the same
// contents wherever they are not random per connection.
func TestChromeMatchesChromium(t *testing.T) {
	raw, err := os.ReadFile(chromiumCapture)
	if err != nil {
		t.Fatal(err)
	}
	want := mustParse(t, raw)
	const wantJA4 = "t13d1517h2_8daaf6152771_cb7bf5808d99" // also in shared/research/CENSORSHIP.md
	if got := want.JA4(); got != wantJA4 {
		t.Fatalf("JA4(capture) = %s, want %s", got, wantJA4)
	}

	orders := map[string]bool{}
	for i := range 4 {
		got := ourHello(t, FingerprintChrome)
		if got.JA4() != want.JA4() {
			t.Errorf("JA4(chrome) = %s, want Chromium's %s\n got raw: %s\nwant raw: %s", got.JA4(), want.JA4(), got.JA4R(), want.JA4R())
		}
		compareHellos(t, got, want)
		var order []string
		for _, e := range got.Extensions {
			order = append(order, fmt.Sprint(e.Type))
		}
		orders[strings.Join(order, ",")] = true
		if i == 0 {
			t.Logf("chrome JA4 %s (Chromium 156 capture %s)", got.JA4(), want.JA4())
		}
	}
	if len(orders) < 2 {
		t.Errorf("extension order identical over 4 connections; Chrome permutes it per connection")
	}
}

func nonGREASE(vs []uint16) []uint16 {
	return slices.DeleteFunc(slices.Clone(vs), func(v uint16) bool { return v&0x0f0f == 0x0a0a && v>>8 == v&0xff })
}

func isGREASEExt(e tlshello.Extension) bool {
	return e.Type&0x0f0f == 0x0a0a && e.Type>>8 == e.Type&0xff
}

func compareHellos(t *testing.T, got, want *tlshello.ClientHello) {
	t.Helper()
	check := func(what string, g, w any) {
		t.Helper()
		if fmt.Sprint(g) != fmt.Sprint(w) {
			t.Errorf("chrome %s = %v, want Chromium's %v", what, g, w)
		}
	}
	check("legacy_version", got.Version, want.Version)
	check("session id length", len(got.SessionID), len(want.SessionID))
	check("cipher suites (wire order)", nonGREASE(got.CipherSuites), nonGREASE(want.CipherSuites))
	check("GREASE cipher first", isGREASEExt(tlshello.Extension{Type: got.CipherSuites[0]}), true)
	check("compression methods", got.CompressionMethods, want.CompressionMethods)
	check("supported groups", nonGREASE(got.SupportedGroups), nonGREASE(want.SupportedGroups))
	check("signature algorithms", nonGREASE(got.SignatureAlgorithms), nonGREASE(want.SignatureAlgorithms))
	check("signature algorithms count", len(got.SignatureAlgorithms), len(want.SignatureAlgorithms))
	check("supported versions", nonGREASE(got.SupportedVersions), nonGREASE(want.SupportedVersions))
	check("ALPN", got.ALPN, want.ALPN)
	check("EC point formats", got.ECPointFormats, want.ECPointFormats)
	check("server name", got.ServerName, want.ServerName)
	shares := func(h *tlshello.ClientHello) (s []string) {
		for _, ks := range h.KeyShares {
			if v := nonGREASE([]uint16{ks.Group}); len(v) == 0 {
				s = append(s, fmt.Sprintf("GREASE:%d", len(ks.Data)))
			} else {
				s = append(s, fmt.Sprintf("%#04x:%d", ks.Group, len(ks.Data)))
			}
		}
		return s
	}
	check("key shares", shares(got), shares(want))
	check("first extension is GREASE", isGREASEExt(got.Extensions[0]), true)
	check("last extension is GREASE", isGREASEExt(got.Extensions[len(got.Extensions)-1]), true)

	// Extensions whose bytes are fixed must be byte-identical; the others
	// carry GREASE, keys or random ECH payloads and are compared above.
	byType := func(h *tlshello.ClientHello) map[uint16][]byte {
		m := map[uint16][]byte{}
		for _, e := range h.Extensions {
			if !isGREASEExt(e) {
				m[e.Type] = e.Data
			}
		}
		return m
	}
	g, w := byType(got), byType(want)
	check("extension set", slices.Sorted(mapKeys(g)), slices.Sorted(mapKeys(w)))
	for typ, wd := range w {
		switch typ {
		case 0x000a, 0x000d, 0x002b, 0x0033: // GREASE or keys inside
			continue
		case 0xfe0d: // ECH GREASE: fixed header, random enc and payload
			// type (1), KDF (2), AEAD (2), config id (1, random), enc length (2)
			if gd := g[typ]; len(gd) < 8 || !bytes.Equal(gd[:5], wd[:5]) || !bytes.Equal(gd[6:8], wd[6:8]) {
				t.Errorf("chrome ECH GREASE header = %x, want %x", gd[:min(8, len(gd))], wd[:8])
			}
			if l := len(g[typ]); l != 186 && l != 218 && l != 250 && l != 282 {
				t.Errorf("chrome ECH GREASE length %d, want one of Chromium's 186/218/250/282", l)
			}
			continue
		}
		if !bytes.Equal(g[typ], wd) {
			t.Errorf("chrome extension %#04x = %x, want Chromium's %x", typ, g[typ], wd)
		}
	}
}

func mapKeys(m map[uint16][]byte) func(func(uint16) bool) {
	return func(yield func(uint16) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

// TestGoTLSFingerprintDiffers checks that Go's own crypto/tls hello — the
// one a censor's lab can pick out — is not what we send, and records how
// utls's stock Chrome preset differs from Chromium 156.
func TestGoTLSFingerprintDiffers(t *testing.T) {
	capture := mustParse(t, mustRead(t, chromiumCapture))
	goHello := mustParse(t, catchHello(t, func(addr string) {
		conn, err := net.Dial("tcp", addr)
		if err != nil {
			return
		}
		defer conn.Close()
		tls.Client(conn, &tls.Config{ServerName: coverName, NextProtos: []string{"h2", "http/1.1"}}).Handshake()
	}))
	ours := ourHello(t, FingerprintChrome)
	if goHello.JA4() == ours.JA4() || goHello.JA4() == capture.JA4() {
		t.Errorf("JA4(crypto/tls) = %s, same as chrome's %s", goHello.JA4(), ours.JA4())
	}
	t.Logf("crypto/tls JA4 %s", goHello.JA4())

	stock := mustParse(t, catchHello(t, func(addr string) {
		conn, err := net.Dial("tcp", addr)
		if err != nil {
			return
		}
		defer conn.Close()
		utls.UClient(conn, &utls.Config{ServerName: coverName}, utls.HelloChrome_Auto).Handshake()
	}))
	t.Logf("utls HelloChrome_Auto JA4 %s (Chromium 156: %s)", stock.JA4(), capture.JA4())
	if stock.JA4() == capture.JA4() {
		t.Logf("utls HelloChrome_Auto now matches Chromium; chrome156Spec could be retired")
	}
}

func mustRead(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestCaptureChromium refreshes the Chromium capture:
//
//	go test ./internal/camo -run CaptureChromium -capture-chromium testdata/chromium-NNN.hello
//
// It starts chromium headless at https://cover.test:PORT/ mapped to the
// loopback catcher, so nothing leaves the machine.
func TestCaptureChromium(t *testing.T) {
	if *captureChromium == "" {
		t.Skip("set -capture-chromium FILE to capture a fresh Chromium ClientHello")
	}
	bin, err := exec.LookPath("chromium")
	if err != nil {
		t.Skipf("chromium not installed: %v", err)
	}
	msg := catchHelloUntil(t, func(addr string, caught <-chan struct{}) {
		_, port, _ := net.SplitHostPort(addr)
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		cmd := exec.CommandContext(ctx, bin, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
			"--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync",
			"--user-data-dir="+t.TempDir(), "--host-resolver-rules=MAP cover.test 127.0.0.1",
			"https://cover.test:"+port+"/")
		if err := cmd.Start(); err != nil {
			t.Errorf("start chromium: %v", err) // and the catcher's accept times out
			return
		}
		select {
		case <-caught:
		case <-ctx.Done():
		}
		cmd.Process.Kill()
		cmd.Wait()
	})
	h := mustParse(t, msg)
	if err := os.WriteFile(*captureChromium, msg, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("captured %d bytes, JA4 %s\nJA4_r %s", len(msg), h.JA4(), h.JA4R())
}
