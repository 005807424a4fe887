package camo

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"io"
	"log/slog"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/xtls/reality"
)

// rsCover is a TLS 1.3 cover on loopback that records, per connection, the
// records it sent after it had read the client's second flight, and the
// ALPN the client offered.
type rsCover struct {
	addr  string
	roots *x509.CertPool

	mu    sync.Mutex
	after map[string][]int // guarded by mu; key: alpnClass of the client
}

// rsStartCover starts a cover with cfg's certificate set to srvCert. After
// its handshake the cover sends nothing more (everything it sent is
// handshake or post-handshake records) and keeps the connection open until
// the client ends it, so the detection ends on its quiet spell.
func rsStartCover(t *testing.T, cfg *tls.Config) *rsCover {
	t.Helper()
	cert, err := srvCert()
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(cert.Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	c := &rsCover{roots: x509.NewCertPool(), after: make(map[string][]int)}
	c.roots.AddCert(leaf)
	cfg.Certificates = []tls.Certificate{cert}
	c.addr = srvServeRaw(t, func(conn *net.TCPConn) {
		defer conn.Close()
		rec := &rsWriteRecorder{Conn: conn}
		var class string
		ccfg := cfg.Clone()
		ccfg.GetConfigForClient = func(h *tls.ClientHelloInfo) (*tls.Config, error) {
			class = alpnClass(h.SupportedProtos)
			return nil, nil
		}
		tc := tls.Server(rec, ccfg)
		tc.SetDeadline(time.Now().Add(20 * time.Second))
		if err := tc.Handshake(); err != nil {
			return
		}
		c.mu.Lock()
		c.after[class] = rec.recordsAfterMark(t)
		c.mu.Unlock()
		// Hold the connection until the client ends it: a close here could
		// race the client's last bytes into a reset that discards the
		// tickets still unread on the client's side.
		io.Copy(io.Discard, conn)
	})
	return c
}

// rsWriteRecorder records what is written to it, and where the writes
// stood when the first read after a write happened (the client's second
// flight).
type rsWriteRecorder struct {
	net.Conn
	written bytes.Buffer // only the handshaking goroutine uses it
	mark    int          // 0 until set
	wrote   bool
}

func (r *rsWriteRecorder) Read(p []byte) (int, error) {
	if r.wrote && r.mark == 0 {
		r.mark = r.written.Len()
	}
	return r.Conn.Read(p)
}

func (r *rsWriteRecorder) Write(p []byte) (int, error) {
	r.wrote = true
	r.written.Write(p)
	return r.Conn.Write(p)
}

// recordsAfterMark returns the lengths of the records written after the
// mark.
func (r *rsWriteRecorder) recordsAfterMark(t *testing.T) []int {
	lens := []int{}
	rd := bytes.NewReader(r.written.Bytes()[r.mark:])
	for rd.Len() > 0 {
		rec, err := readRecord(rd)
		if err != nil {
			t.Errorf("cover wrote a bad record: %v", err)
			return lens
		}
		lens = append(lens, len(rec))
	}
	return lens
}

// rsDetect runs the detection against cover and returns the sizes stored
// for each ALPN class.
func rsDetect(t *testing.T, cover string, roots *x509.CertPool, dial dialFunc) map[string][]int {
	t.Helper()
	select {
	case <-startRecordSizeDetection(dial, cover, []string{srvCoverName}, roots, slog.New(slog.DiscardHandler)):
	case <-time.After(2 * recordSizeDetectTimeout):
		t.Fatal("record-size detection did not end")
	}
	got := make(map[string][]int)
	for _, c := range alpnClasses {
		v, _ := reality.GlobalPostHandshakeRecordsLens.Load(cover + " " + srvCoverName + " " + c.class)
		lens, ok := v.([]int)
		if !ok {
			t.Fatalf("sizes for class %s = %v, want []int", c.class, v)
		}
		got[c.class] = lens
	}
	return got
}

var rsDial dialFunc = (&net.Dialer{}).DialContext

// TestRecordSizesAsCoverSends: the detected sizes are those of the records
// the cover sent after the handshake, as the cover itself wrote them. A Go
// cover that requests client certificates sends its session tickets after
// the client's Finished; one that does not has none for Go's hello (no
// psk_key_exchange_modes) but some for Chrome's.
func TestRecordSizesAsCoverSends(t *testing.T) {
	srvCheckNoLeaks(t)
	for _, tt := range []struct {
		name    string
		cfg     *tls.Config
		tickets bool
	}{
		{"tickets", &tls.Config{ClientAuth: tls.RequestClientCert}, true},
		{"no tickets", &tls.Config{ClientAuth: tls.RequestClientCert, SessionTicketsDisabled: true}, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			cover := rsStartCover(t, tt.cfg)
			got := rsDetect(t, cover.addr, cover.roots, rsDial)
			cover.mu.Lock()
			defer cover.mu.Unlock()
			for _, c := range alpnClasses {
				want, ok := cover.after[c.class]
				if !ok {
					t.Fatalf("class %s: the cover saw no handshake", c.class)
				}
				if !slices.Equal(got[c.class], want) {
					t.Errorf("class %s: detected sizes %v, want %v (as the cover wrote them)", c.class, got[c.class], want)
				}
			}
			if n := len(got["2"]); tt.tickets && n == 0 || !tt.tickets && n != 0 {
				t.Errorf("class 2 (Chrome's hello): %d records, want tickets: %v", n, tt.tickets)
			}
		})
	}
}

// TestRecordSizesTicketsInFirstFlight: a Go cover that requests no client
// certificate sends its tickets in the same flight as its Finished; they
// are still post-handshake records, the same as a cover that sends them
// after the client's Finished.
func TestRecordSizesTicketsInFirstFlight(t *testing.T) {
	srvCheckNoLeaks(t)
	late := rsStartCover(t, &tls.Config{ClientAuth: tls.RequestClientCert})
	early := rsStartCover(t, &tls.Config{})
	want := rsDetect(t, late.addr, late.roots, rsDial)["2"]
	got := rsDetect(t, early.addr, early.roots, rsDial)["2"]
	if len(want) == 0 || !slices.Equal(got, want) {
		t.Errorf("sizes with tickets in the first flight %v, want %v (tickets after the client's Finished)", got, want)
	}
}

// TestRecordSizesUseDialCover: the server's detection dials through
// DialCover, and an unverifiable cover yields "no records".
func TestRecordSizesUseDialCover(t *testing.T) {
	srvCheckNoLeaks(t)
	cover := srvStartCover(t, false)
	var dials atomic.Int32
	priv, _, _ := GenerateKey()
	s, err := NewServer(ServerConfig{PrivateKey: priv, ShortIDs: [][]byte{{1}}, ServerNames: []string{srvCoverName}, Cover: cover,
		DialCover: func(ctx context.Context, network, addr string) (net.Conn, error) {
			dials.Add(1)
			return rsDial(ctx, network, addr)
		}})
	if err != nil {
		t.Fatal(err)
	}
	select {
	case <-s.recordSizes:
	case <-time.After(2 * recordSizeDetectTimeout):
		t.Fatal("record-size detection did not end")
	}
	if n := dials.Load(); n != int32(len(alpnClasses)) {
		t.Errorf("DialCover called %d times, want %d", n, len(alpnClasses))
	}
	for _, c := range alpnClasses {
		v, _ := reality.GlobalPostHandshakeRecordsLens.Load(cover + " " + srvCoverName + " " + c.class)
		if lens, ok := v.([]int); !ok || len(lens) != 0 {
			t.Errorf("class %s: sizes %v for a self-signed cover, want []int{}", c.class, v)
		}
	}
}

// TestServerAuthenticatedWithRecordSizes: when the cover sends records
// after its handshake (tickets, h2 SETTINGS), reality.Server sends fakes of
// their sizes, and an authenticated client still gets through.
func TestServerAuthenticatedWithRecordSizes(t *testing.T) {
	srvCheckNoLeaks(t)
	cover := srvStartCover(t, false)
	cert, err := srvCert()
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(cert.Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(leaf)
	// Measured first, the sizes are not measured again by the server.
	if sizes := rsDetect(t, cover, roots, rsDial); len(sizes["2"]) == 0 {
		t.Fatalf("cover sizes %v, want records for Chrome's hello", sizes)
	}
	h := srvStart(t, cover)
	for _, fp := range []string{"chrome", "firefox"} {
		tc, _, err := srvDialReality(t, h, ClientConfig{ServerName: srvCoverName, PublicKey: h.pub, ShortID: h.shortID, Fingerprint: fp})
		if err != nil {
			t.Fatalf("%s: Client = %v, want nil", fp, err)
		}
		if err := h.result(t, tc.LocalAddr().String()); err != nil {
			t.Fatalf("%s: Handshake = %v, want nil", fp, err)
		}
		if err := srvEcho(tc, []byte("ping")); err != nil {
			t.Errorf("%s: echo = %v, want nil", fp, err)
		}
	}
}
