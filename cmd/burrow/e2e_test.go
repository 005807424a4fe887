package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/net/dns/dnsmessage"

	"github.com/burrow-vpn/burrow/internal/coversite"
)

// testSite serves /data?n=BYTES: a deterministic pseudo-random stream, so
// both ends can compute its SHA-256.
func testSite(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n, _ := strconv.ParseInt(r.URL.Query().Get("n"), 10, 64)
		w.Header().Set("Content-Length", strconv.FormatInt(n, 10))
		io.Copy(w, io.LimitReader(stream(), n))
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().String()
}

func stream() io.Reader {
	return &chachaReader{r: rand.NewChaCha8([32]byte{'b', 'u', 'r', 'r', 'o', 'w'})}
}

type chachaReader struct{ r *rand.ChaCha8 }

func (c *chachaReader) Read(p []byte) (int, error) { return c.r.Read(p) }

func streamSum(n int64) string {
	h := sha256.New()
	io.Copy(h, io.LimitReader(stream(), n))
	return hex.EncodeToString(h.Sum(nil))
}

// udpEchoDNS answers every DNS query for any name with A 192.0.2.7.
func udpDNS(t *testing.T) string {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	go func() {
		buf := make([]byte, 1500)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			var m dnsmessage.Message
			if m.Unpack(buf[:n]) != nil || len(m.Questions) != 1 {
				continue
			}
			m.Header.Response = true
			m.Answers = []dnsmessage.Resource{{
				Header: dnsmessage.ResourceHeader{Name: m.Questions[0].Name, Type: dnsmessage.TypeA, Class: dnsmessage.ClassINET, TTL: 60},
				Body:   &dnsmessage.AResource{A: [4]byte{192, 0, 2, 7}},
			}}
			out, _ := m.Pack()
			pc.WriteTo(out, from)
		}
	}()
	return pc.LocalAddr().String()
}

type proc struct {
	cancel context.CancelFunc
	done   chan error
	stderr *syncBuffer
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}
func (s *syncBuffer) String() string { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

// start runs `burrow ARGS` in-process until the test ends or stop is called.
func start(t *testing.T, args ...string) *proc {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	p := &proc{cancel: cancel, done: make(chan error, 1), stderr: &syncBuffer{}}
	go func() { p.done <- run(ctx, args, io.Discard, p.stderr) }()
	t.Cleanup(func() { p.stop(t) })
	return p
}

func (p *proc) stop(t *testing.T) error {
	p.cancel()
	select {
	case err := <-p.done:
		p.done <- err
		return err
	case <-time.After(15 * time.Second):
		t.Errorf("process did not stop within 15s; stderr:\n%s", p.stderr)
		return nil
	}
}

type deployment struct {
	data, link, socks, http string
	cover                   *coversite.Site
}

// deploy initialises a server (and runs it) plus a client, on loopback.
func deploy(t *testing.T, allowPrivate bool) *deployment {
	t.Helper()
	cover, err := coversite.Start("127.0.0.1:0", "cover.test")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cover.Close() })
	d := &deployment{data: t.TempDir() + "/srv", cover: cover}
	port, _ := freePort()
	args := []string{"server", "init", "--data", d.data, "--listen", "127.0.0.1:" + port, "--cover", cover.Addr, "--sni", "cover.test", "--public-addr", "127.0.0.1"}
	if allowPrivate {
		args = append(args, "--allow-private-egress")
	}
	var out, errOut bytes.Buffer
	if err := run(context.Background(), args, &out, &errOut); err != nil {
		t.Fatalf("server init: %v\n%s", err, errOut.String())
	}
	d.link = strings.TrimSpace(strings.SplitN(out.String(), "\n", 2)[0])
	if !strings.HasPrefix(d.link, "vless://") {
		t.Fatalf("server init printed %q, want a vless:// link first", out.String())
	}
	start(t, "server", "run", "--data", d.data)
	if err := waitListening(context.Background(), "127.0.0.1:"+port); err != nil {
		t.Fatal(err)
	}
	c := startClient(t, d.link, true)
	d.socks, d.http = c.socks, c.http
	return d
}

func get(proxy, target string) (string, int64, error) {
	pu, _ := url.Parse(proxy)
	tr := &http.Transport{Proxy: http.ProxyURL(pu)}
	defer tr.CloseIdleConnections()
	resp, err := (&http.Client{Transport: tr, Timeout: 2 * time.Minute}).Get(target)
	if err != nil {
		return "", 0, err
	}
	defer resp.Body.Close()
	h := sha256.New()
	n, err := io.Copy(h, resp.Body)
	return hex.EncodeToString(h.Sum(nil)), n, err
}

func TestEndToEndDownload(t *testing.T) {
	site := testSite(t)
	d := deploy(t, true)
	const size = 64 << 20
	want := streamSum(size)
	for _, proxy := range []string{"socks5://" + d.socks, "http://" + d.http} {
		sum, n, err := get(proxy, fmt.Sprintf("http://%s/data?n=%d", site, size))
		if err != nil || n != size || sum != want {
			t.Errorf("GET via %s: %d bytes, sha256 %s, err %v; want %d bytes, sha256 %s", proxy, n, sum, err, size, want)
		}
	}
}

func TestEndToEndUDPAssociateDNS(t *testing.T) {
	dns := udpDNS(t)
	d := deploy(t, true)
	ctrl, err := net.Dial("tcp", d.socks)
	if err != nil {
		t.Fatal(err)
	}
	defer ctrl.Close()
	ctrl.SetDeadline(time.Now().Add(20 * time.Second))
	// Greeting (no auth), then UDP ASSOCIATE 0.0.0.0:0.
	ctrl.Write([]byte{5, 1, 0})
	var sel [2]byte
	if _, err := io.ReadFull(ctrl, sel[:]); err != nil || sel != [2]byte{5, 0} {
		t.Fatalf("greeting reply %v, %v", sel, err)
	}
	ctrl.Write([]byte{5, 3, 0, 1, 0, 0, 0, 0, 0, 0})
	var rep [10]byte
	if _, err := io.ReadFull(ctrl, rep[:]); err != nil || rep[1] != 0 || rep[3] != 1 {
		t.Fatalf("UDP ASSOCIATE reply %v, %v", rep, err)
	}
	relay := &net.UDPAddr{IP: net.IP(rep[4:8]), Port: int(binary.BigEndian.Uint16(rep[8:10]))}
	uc, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer uc.Close()

	q := dnsmessage.Message{Header: dnsmessage.Header{ID: 0x4242, RecursionDesired: true},
		Questions: []dnsmessage.Question{{Name: dnsmessage.MustNewName("example.org."), Type: dnsmessage.TypeA, Class: dnsmessage.ClassINET}}}
	query, _ := q.Pack()
	host, port, _ := net.SplitHostPort(dns)
	p, _ := strconv.Atoi(port)
	hdr := append([]byte{0, 0, 0, 1}, net.ParseIP(host).To4()...)
	hdr = binary.BigEndian.AppendUint16(hdr, uint16(p))
	var answer dnsmessage.Message
	buf := make([]byte, 2048)
	for attempt := 0; attempt < 5; attempt++ {
		uc.WriteTo(append(hdr, query...), relay)
		uc.SetReadDeadline(time.Now().Add(2 * time.Second))
		n, _, err := uc.ReadFrom(buf)
		if err != nil {
			continue
		}
		if n < 10 || answer.Unpack(buf[10:n]) != nil {
			t.Fatalf("bad SOCKS UDP reply % x", buf[:n])
		}
		break
	}
	if answer.Header.ID != 0x4242 || len(answer.Answers) != 1 {
		t.Fatalf("DNS answer through SOCKS5 UDP ASSOCIATE: %+v, want one answer for id 0x4242", answer.Header)
	}
	if a, ok := answer.Answers[0].Body.(*dnsmessage.AResource); !ok || a.A != [4]byte{192, 0, 2, 7} {
		t.Fatalf("DNS answer = %v, want A 192.0.2.7", answer.Answers[0].Body)
	}
}

func TestEndToEndEgressPolicy(t *testing.T) {
	site := testSite(t)
	target := fmt.Sprintf("http://%s/data?n=1000", site)
	closed := deploy(t, false)
	if _, n, err := get("socks5://"+closed.socks, target); err == nil && n == 1000 {
		t.Errorf("fetch of %s through a server without --allow-private-egress succeeded; want refused", target)
	}
	open := deploy(t, true)
	if _, n, err := get("socks5://"+open.socks, target); err != nil || n != 1000 {
		t.Errorf("fetch of %s through a server with --allow-private-egress: %d bytes, %v; want 1000 bytes", target, n, err)
	}
}

func TestServerInitRefusesExistingDir(t *testing.T) {
	cover, err := coversite.Start("127.0.0.1:0", "cover.test")
	if err != nil {
		t.Fatal(err)
	}
	defer cover.Close()
	dir := t.TempDir()
	port, _ := freePort()
	args := []string{"server", "init", "--data", dir, "--listen", "127.0.0.1:" + port, "--cover", cover.Addr, "--sni", "cover.test", "--public-addr", "127.0.0.1"}
	if err := run(context.Background(), args, io.Discard, io.Discard); err != nil {
		t.Fatal(err)
	}
	before, _ := os.ReadFile(dir + "/config.json")
	err = run(context.Background(), args, io.Discard, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "already exists") {
		t.Fatalf("second init: err = %v, want an 'already exists' refusal", err)
	}
	after, _ := os.ReadFile(dir + "/config.json")
	if !bytes.Equal(before, after) {
		t.Fatal("second init changed config.json")
	}
}

func listenTCP(addr string) (net.Listener, error) { return net.Listen("tcp", addr) }

// clientProc is a `burrow connect` run in-process, with the addresses its
// proxies listen on.
type clientProc struct {
	*proc
	socks, http string
}

// startClient runs `burrow connect LINK ARGS` with its proxies on ports the
// kernel picks (so no other test can take them in between), and waits for
// the lines naming them, or for the process to end, which fails the test
// with its error. withHTTP turns the HTTP proxy on.
func startClient(t *testing.T, link string, withHTTP bool, args ...string) *clientProc {
	t.Helper()
	httpArg := ""
	if withHTTP {
		httpArg = "127.0.0.1:0"
	}
	p := start(t, append([]string{"connect", link, "--socks", "127.0.0.1:0", "--http", httpArg}, args...)...)
	c := &clientProc{proc: p}
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	deadline := time.After(2 * time.Minute)
	for {
		out := p.stderr.String()
		c.socks = listenLine(out, "SOCKS5 proxy on ")
		c.http = listenLine(out, "HTTP proxy on ")
		if c.socks != "" && (c.http != "" || !withHTTP) {
			return c
		}
		select {
		case err := <-p.done:
			p.done <- err
			t.Fatalf("burrow connect ended before its proxies listened: %v\n%s", err, out)
		case <-deadline:
			t.Fatalf("burrow connect did not name its proxies within 2m:\n%s", out)
		case <-tick.C:
		}
	}
}

// listenLine returns what follows prefix on the line of out that starts
// with it, or "".
func listenLine(out, prefix string) string {
	for line := range strings.Lines(out) {
		if rest, ok := strings.CutPrefix(line, prefix); ok {
			return strings.TrimSpace(rest)
		}
	}
	return ""
}
