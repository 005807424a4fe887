package httpproxy

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"
)

func proxyTransport(proxyAddr string) *http.Transport {
	return &http.Transport{
		Proxy:             http.ProxyURL(&url.URL{Scheme: "http", Host: proxyAddr}),
		DisableKeepAlives: false,
		MaxConnsPerHost:   1,
	}
}

func TestTransportGet(t *testing.T) {
	big := make([]byte, 4<<20)
	rand.NewChaCha8([32]byte{1}).Read(big)
	bigSum := sha256.Sum256(big)
	origin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/big":
			w.Write(big) // large: chunked by net/http
		case "/echo":
			w.Header().Set("X-Method", r.Method)
			b, _ := io.ReadAll(r.Body) // net/http origins cannot echo full-duplex
			w.Write(b)
		default:
			w.Header().Set("Content-Length", "5")
			fmt.Fprint(w, "hello")
		}
	}))
	defer origin.Close()
	_, port, _ := net.SplitHostPort(origin.Listener.Addr().String())
	domain := net.JoinHostPort("origin.burrow.test", port)
	d := &testDialer{rewrite: map[string]string{domain: origin.Listener.Addr().String()}}
	l := startServer(t, &Server{Dialer: d})
	tr := proxyTransport(l.Addr().String())
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr}

	get := func(method, u string, body io.Reader) (*http.Response, []byte) {
		t.Helper()
		req, _ := http.NewRequest(method, u, body)
		resp, err := client.Do(req)
		if err != nil {
			t.Fatalf("%s %s: %v", method, u, err)
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatalf("%s %s: read body: %v", method, u, err)
		}
		return resp, b
	}

	// Alternate hosts on one client connection.
	for i, u := range []string{"http://" + domain + "/small", "http://" + origin.Listener.Addr().String() + "/small", "http://" + domain + "/small"} {
		resp, b := get("GET", u, nil)
		if resp.StatusCode != 200 || string(b) != "hello" {
			t.Errorf("GET %s (%d) = %d %q, want 200 %q", u, i, resp.StatusCode, b, "hello")
		}
	}
	resp, b := get("GET", "http://"+domain+"/big", nil)
	if got := sha256.Sum256(b); got != bigSum || resp.StatusCode != 200 {
		t.Errorf("GET /big = %d, %d bytes with sha256 %x, want 200, %d bytes with %x", resp.StatusCode, len(b), got, len(big), bigSum)
	}
	resp, b = get("HEAD", "http://"+domain+"/small", nil)
	if resp.StatusCode != 200 || len(b) != 0 || resp.ContentLength != 5 {
		t.Errorf("HEAD = %d, %d body bytes, Content-Length %d, want 200, 0, 5", resp.StatusCode, len(b), resp.ContentLength)
	}
	// Uploads: Content-Length and chunked.
	resp, b = get("POST", "http://"+domain+"/echo", bytes.NewReader(big[:100000]))
	if !bytes.Equal(b, big[:100000]) || resp.Header.Get("X-Method") != "POST" {
		t.Errorf("POST /echo (Content-Length) echoed %d bytes (equal %v), X-Method %q", len(b), bytes.Equal(b, big[:100000]), resp.Header.Get("X-Method"))
	}
	_, b = get("PUT", "http://"+domain+"/echo", io.MultiReader(strings.NewReader("chunked "), strings.NewReader("upload")))
	if string(b) != "chunked upload" {
		t.Errorf("PUT /echo (chunked) = %q, want %q", b, "chunked upload")
	}

	if n := l.n.Load(); n != 1 {
		t.Errorf("client connections accepted = %d, want 1 (keep-alive across requests and hosts)", n)
	}
	for _, c := range d.Calls() {
		if c != "tcp "+domain && c != "tcp "+origin.Listener.Addr().String() {
			t.Errorf("dialer call %q, want only %q or the origin's IP", c, "tcp "+domain)
		}
	}
	if calls := d.Calls(); !slices.Contains(calls, "tcp "+domain) {
		t.Errorf("dialer calls = %q, want the domain passed through unresolved", calls)
	}
}

func TestExpectContinue(t *testing.T) {
	origin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(w, r.Body) // reading the body makes net/http send 100 Continue
	}))
	defer origin.Close()
	l := startServer(t, &Server{Dialer: &testDialer{}})
	tr := proxyTransport(l.Addr().String())
	tr.ExpectContinueTimeout = 10 * time.Second
	defer tr.CloseIdleConnections()
	req, _ := http.NewRequest("POST", origin.URL, strings.NewReader("body after 100"))
	req.Header.Set("Expect", "100-continue")
	start := time.Now()
	resp, err := tr.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(b) != "body after 100" {
		t.Errorf("POST with Expect: 100-continue = %q, want %q", b, "body after 100")
	}
	if el := time.Since(start); el > 5*time.Second {
		t.Errorf("POST with Expect: 100-continue took %v; the 100 was not passed on", el)
	}
}

func TestHTTPSViaConnect(t *testing.T) {
	origin := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "tls %s", r.URL.Path)
	}))
	defer origin.Close()
	_, port, _ := net.SplitHostPort(origin.Listener.Addr().String())
	domain := net.JoinHostPort("secure.burrow.test", port)
	d := &testDialer{rewrite: map[string]string{domain: origin.Listener.Addr().String()}}
	l := startServer(t, &Server{Dialer: d})

	tr := proxyTransport(l.Addr().String())
	tr.TLSClientConfig = origin.Client().Transport.(*http.Transport).TLSClientConfig.Clone()
	tr.TLSClientConfig.ServerName = "example.com" // in httptest's certificate
	defer tr.CloseIdleConnections()
	for i := range 3 {
		resp, err := (&http.Client{Transport: tr}).Get(fmt.Sprintf("https://%s/p%d", domain, i))
		if err != nil {
			t.Fatalf("GET https via CONNECT: %v", err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if want := fmt.Sprintf("tls /p%d", i); string(b) != want || resp.TLS == nil {
			t.Errorf("GET https #%d = %q (TLS %v), want %q over TLS", i, b, resp.TLS != nil, want)
		}
	}
	if calls := d.Calls(); len(calls) != 1 || calls[0] != "tcp "+domain {
		t.Errorf("dialer calls = %q, want [%q] (one tunnel, reused; domain unresolved)", calls, "tcp "+domain)
	}
}

// rawExchange sends raw bytes on a fresh connection to the proxy and returns
// everything it answers until it closes the connection or falls silent.
func rawExchange(t *testing.T, proxyAddr, in string, quiet time.Duration) string {
	t.Helper()
	c, err := net.Dial("tcp", proxyAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.Write([]byte(in))
	var out bytes.Buffer
	buf := make([]byte, 64<<10)
	for {
		c.SetReadDeadline(time.Now().Add(quiet))
		n, err := c.Read(buf)
		out.Write(buf[:n])
		if err != nil {
			return out.String()
		}
	}
}

func TestHopByHopHeaders(t *testing.T) {
	var got http.Header
	var gotHost, gotURI string
	origin := rawOrigin(t, func(req *http.Request, w *bufio.Writer) bool {
		got, gotHost, gotURI = req.Header.Clone(), req.Host, req.RequestURI
		w.WriteString("HTTP/1.1 200 OK\r\nConnection: X-Resp-Hop\r\nX-Resp-Hop: 1\r\nKeep-Alive: timeout=5\r\nProxy-Authenticate: Basic\r\nX-Resp-End: kept\r\nContent-Length: 2\r\n\r\nok")
		return false
	})
	l := startServer(t, &Server{Dialer: &testDialer{}})
	out := rawExchange(t, l.Addr().String(), "GET http://"+origin+"/path?q=1 HTTP/1.1\r\n"+
		"Host: ignored.example\r\n"+
		"Connection: X-Hop, keep-alive\r\n"+
		"X-Hop: secret\r\n"+
		"Proxy-Connection: keep-alive\r\n"+
		"Keep-Alive: 300\r\n"+
		"Proxy-Authorization: Basic dXNlcjpwYXNz\r\n"+
		"TE: trailers\r\n"+
		"Upgrade: websocket\r\n"+
		"X-End: kept\r\n\r\n", 300*time.Millisecond)

	if gotURI != "/path?q=1" || gotHost != origin {
		t.Errorf("origin saw request-target %q, Host %q, want %q, %q", gotURI, gotHost, "/path?q=1", origin)
	}
	for _, h := range []string{"Connection", "X-Hop", "Proxy-Connection", "Keep-Alive", "Proxy-Authorization", "Te", "Upgrade", "User-Agent"} {
		if v, ok := got[h]; ok {
			t.Errorf("origin saw header %s: %q, want it removed", h, v)
		}
	}
	if got.Get("X-End") != "kept" {
		t.Errorf("origin saw X-End %q, want %q", got.Get("X-End"), "kept")
	}

	resp, err := http.ReadResponse(bufio.NewReader(strings.NewReader(out)), nil)
	if err != nil {
		t.Fatalf("proxy answer %q: %v", out, err)
	}
	for _, h := range []string{"Connection", "X-Resp-Hop", "Keep-Alive", "Proxy-Authenticate"} {
		if v, ok := resp.Header[h]; ok {
			t.Errorf("client saw response header %s: %q, want it removed", h, v)
		}
	}
	if resp.Header.Get("X-Resp-End") != "kept" || resp.StatusCode != 200 {
		t.Errorf("client saw %d, X-Resp-End %q, want 200, %q", resp.StatusCode, resp.Header.Get("X-Resp-End"), "kept")
	}
}

func TestResponseFraming(t *testing.T) {
	origin := rawOrigin(t, func(req *http.Request, w *bufio.Writer) bool {
		switch req.URL.Path {
		case "/until-close":
			w.WriteString("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nbody until close")
			return true
		case "/http10":
			w.WriteString("HTTP/1.0 200 OK\r\n\r\nold server")
			return true
		case "/trailer":
			w.WriteString("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: X-Sum\r\n\r\n3\r\nabc\r\n0\r\nX-Sum: 42\r\n\r\n")
		case "/early-hints":
			w.WriteString("HTTP/1.1 103 Early Hints\r\nLink: </s.css>; rel=preload\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n")
		case "/304":
			w.WriteString("HTTP/1.1 304 Not Modified\r\nETag: \"x\"\r\n\r\n")
		}
		return false
	})
	l := startServer(t, &Server{Dialer: &testDialer{}})
	c, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	br := bufio.NewReader(c)
	for _, tc := range []struct {
		path, wantBody string
		wantStatus     int
		wantTrailer    string
		wantChunked    bool
	}{
		{"/until-close", "body until close", 200, "", true},
		{"/http10", "old server", 200, "", true},
		{"/trailer", "abc", 200, "42", true},
		{"/early-hints", "", 204, "", false},
		{"/304", "", 304, "", false},
		{"/until-close", "body until close", 200, "", true},
	} {
		req, _ := http.NewRequest("GET", "http://"+origin+tc.path, nil)
		if err := req.WriteProxy(c); err != nil {
			t.Fatal(err)
		}
		resp, err := http.ReadResponse(br, req)
		if err != nil {
			t.Fatalf("GET %s: %v", tc.path, err)
		}
		if resp.StatusCode == 103 {
			if resp.Header.Get("Link") == "" {
				t.Errorf("GET %s: 103 without Link header", tc.path)
			}
			resp, err = http.ReadResponse(br, req)
			if err != nil {
				t.Fatalf("GET %s after 103: %v", tc.path, err)
			}
		}
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatalf("GET %s: read body: %v", tc.path, err)
		}
		chunked := slices.Contains(resp.TransferEncoding, "chunked")
		if resp.StatusCode != tc.wantStatus || string(b) != tc.wantBody || resp.Close || chunked != tc.wantChunked {
			t.Errorf("GET %s = %d %q (close %v, chunked %v), want %d %q (close false, chunked %v)",
				tc.path, resp.StatusCode, b, resp.Close, chunked, tc.wantStatus, tc.wantBody, tc.wantChunked)
		}
		if got := resp.Trailer.Get("X-Sum"); got != tc.wantTrailer {
			t.Errorf("GET %s: trailer X-Sum = %q, want %q", tc.path, got, tc.wantTrailer)
		}
	}
	if n := l.n.Load(); n != 1 {
		t.Errorf("client connections = %d, want 1", n)
	}
}

func TestMalformedRequests(t *testing.T) {
	d := &testDialer{}
	l := startServer(t, &Server{Dialer: d, MaxHeaderBytes: 4096})
	for _, tc := range []struct {
		name, in, wantStatus string
	}{
		{"origin form", "GET / HTTP/1.1\r\nHost: example.com\r\n\r\n", "400"},
		{"garbage", "\x16\x03\x01\x00\x05hello\r\n\r\n", "400"},
		{"https absolute URI", "GET https://example.com/ HTTP/1.1\r\nHost: example.com\r\n\r\n", "400"},
		{"CONNECT without port", "CONNECT example.com HTTP/1.1\r\nHost: example.com\r\n\r\n", "400"},
		{"CONNECT path", "CONNECT /x HTTP/1.1\r\nHost: example.com\r\n\r\n", "400"},
		{"CONNECT port 0", "CONNECT example.com:0 HTTP/1.1\r\n\r\n", "400"},
		{"bad port", "GET http://example.com:99999/ HTTP/1.1\r\n\r\n", "400"},
		{"bad header line", "GET http://example.com/ HTTP/1.1\r\nno colon here\r\n\r\n", "400"},
		{"bad version", "GET http://example.com/ HTTP/2.0\r\n\r\n", "400"},
		{"bad content-length", "POST http://example.com/ HTTP/1.1\r\nContent-Length: -4\r\n\r\n", "400"},
		{"huge header", "GET http://example.com/ HTTP/1.1\r\nX-Big: " + strings.Repeat("a", 20000) + "\r\n\r\n", "431"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out := rawExchange(t, l.Addr().String(), tc.in, 2*time.Second)
			if want := "HTTP/1.1 " + tc.wantStatus + " "; !strings.HasPrefix(out, want) {
				t.Errorf("answer to %.40q = %.80q, want prefix %q", tc.in, out, want)
			}
			if !strings.Contains(out, "Connection: close\r\n") {
				t.Errorf("answer to %.40q = %q, want Connection: close", tc.in, out)
			}
		})
	}
	if calls := d.Calls(); len(calls) != 0 {
		t.Errorf("dialer calls = %q, want none", calls)
	}
}

func TestDialFailure(t *testing.T) {
	l := startServer(t, &Server{Dialer: &testDialer{fail: errors.New("host unreachable")}})
	c, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	br := bufio.NewReader(c)
	// GET and HEAD fail with 502 but keep the connection; CONNECT closes it.
	for _, method := range []string{"GET", "HEAD", "CONNECT"} {
		target := "http://unreachable.test/"
		if method == "CONNECT" {
			target = "unreachable.test:443"
		}
		fmt.Fprintf(c, "%s %s HTTP/1.1\r\nHost: unreachable.test\r\n\r\n", method, target)
		resp, err := http.ReadResponse(br, &http.Request{Method: method})
		if err != nil {
			t.Fatalf("%s: %v", method, err)
		}
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != 502 || resp.Header.Get("Content-Type") != "text/plain; charset=utf-8" {
			t.Errorf("%s to unreachable host = %d %q, want 502 text/plain", method, resp.StatusCode, resp.Header.Get("Content-Type"))
		}
		if wantBody := method != "HEAD"; wantBody != strings.Contains(string(b), "unreachable.test") {
			t.Errorf("%s: 502 body = %q, want a body naming the host: %v", method, b, wantBody)
		}
		if resp.Close != (method == "CONNECT") {
			t.Errorf("%s: 502 Close = %v, want %v", method, resp.Close, method == "CONNECT")
		}
	}
	if _, err := br.ReadByte(); err != io.EOF {
		t.Errorf("after failed CONNECT: read = %v, want EOF", err)
	}
}

// statusError is a dial error that chooses the proxy's answer.
type statusError int

func (e statusError) Error() string   { return "destination cannot be sent: IPv6 zone" }
func (e statusError) HTTPStatus() int { return int(e) }

// TestDialFailureStatus: a Dialer error with an HTTPStatus method (a destination the
// Dialer refuses to send) is answered with that status and its own message, for GET and
// CONNECT, including a URL with an IPv6 zone.
func TestDialFailureStatus(t *testing.T) {
	d := &testDialer{fail: fmt.Errorf("wrapped: %w", statusError(400))}
	l := startServer(t, &Server{Dialer: d})
	for _, in := range []string{
		"GET http://[::1%25lo]:7777/ HTTP/1.1\r\nHost: [::1%25lo]:7777\r\nConnection: close\r\n\r\n",
		"CONNECT [fe80::1%25v0]:443 HTTP/1.1\r\n\r\n",
	} {
		out := rawExchange(t, l.Addr().String(), in, 5*time.Second)
		if !strings.HasPrefix(out, "HTTP/1.1 400 ") || !strings.Contains(out, "burrow: wrapped: destination cannot be sent: IPv6 zone") {
			t.Errorf("answer to %.40q = %q, want 400 with the dialer's message", in, out)
		}
	}
	if calls, want := d.Calls(), []string{"tcp [::1%lo]:7777", "tcp [fe80::1%v0]:443"}; !slices.Equal(calls, want) {
		t.Errorf("dialer calls = %q, want %q", calls, want)
	}
}

func TestConnectEarlyDataAndHalfClose(t *testing.T) {
	echo, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer echo.Close()
	go func() {
		c, err := echo.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		io.Copy(c, c)
		c.(*net.TCPConn).CloseWrite()
	}()
	l := startServer(t, &Server{Dialer: &testDialer{}})
	c, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	// The CONNECT header and the first tunnelled bytes in one write.
	fmt.Fprintf(c, "CONNECT %s HTTP/1.1\r\nHost: x\r\n\r\nearly bytes|", echo.Addr())
	c.Write([]byte("late bytes"))
	c.(*net.TCPConn).CloseWrite()
	out, err := io.ReadAll(c)
	if err != nil {
		t.Fatal(err)
	}
	want := "HTTP/1.1 200 Connection established\r\n\r\nearly bytes|late bytes"
	if string(out) != want {
		t.Errorf("CONNECT exchange = %q, want %q", out, want)
	}
}

func TestCloseEndsEverything(t *testing.T) {
	origin := rawOrigin(t, func(req *http.Request, w *bufio.Writer) bool {
		w.WriteString("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
		return false
	})
	hold, err := net.Listen("tcp", "127.0.0.1:0") // accepts and never answers
	if err != nil {
		t.Fatal(err)
	}
	defer hold.Close()
	base := runtime.NumGoroutine()

	s := &Server{Dialer: &testDialer{}}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- s.Serve(l) }()
	var clients []net.Conn
	dial := func(in string) net.Conn {
		c, err := net.Dial("tcp", l.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		c.Write([]byte(in))
		clients = append(clients, c)
		return c
	}
	dial("GET http://exa") // mid-header
	kept := dial("GET http://" + origin + "/ HTTP/1.1\r\n\r\n")
	if resp, err := http.ReadResponse(bufio.NewReader(kept), nil); err != nil || resp.StatusCode != 200 {
		t.Fatalf("GET: %v", err)
	}
	dial("CONNECT " + hold.Addr().String() + " HTTP/1.1\r\n\r\n")
	dial("GET http://" + hold.Addr().String() + "/ HTTP/1.1\r\n\r\n") // waits for a response
	// Both requests to hold are under way once the server has dialled it twice.
	hold.(*net.TCPListener).SetDeadline(time.Now().Add(10 * time.Second))
	for range 2 {
		c, err := hold.Accept()
		if err != nil {
			t.Fatalf("the server did not dial the silent target: %v", err)
		}
		defer c.Close()
	}

	closed := make(chan error, 1)
	go func() { closed <- s.Close() }()
	select {
	case <-closed:
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not return")
	}
	if err := <-served; !errors.Is(err, ErrServerClosed) {
		t.Errorf("Serve() = %v, want ErrServerClosed", err)
	}
	for i, c := range clients {
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := io.ReadAll(c); err != nil {
			t.Errorf("client %d: not closed by server: %v", i, err)
		}
		c.Close()
	}
	checkGoroutines(t, base)
}

// Silence unused-import complaints in builds without TLS tests.
var _ = tls.VersionTLS13

func TestClientAsksClose(t *testing.T) {
	origin := rawOrigin(t, func(req *http.Request, w *bufio.Writer) bool {
		w.WriteString("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhi\r\n0\r\n\r\n")
		return false
	})
	l := startServer(t, &Server{Dialer: &testDialer{}})
	for _, tc := range []struct {
		name, in, want string
	}{
		{"HTTP/1.1 Connection: close", "GET http://" + origin + "/ HTTP/1.1\r\nConnection: close\r\n\r\n",
			"HTTP/1.1 200 OK\r\nConnection: close\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhi\r\n0\r\n\r\n"},
		{"HTTP/1.0 gets the body unchunked", "GET http://" + origin + "/ HTTP/1.0\r\n\r\n",
			"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nhi"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// rawExchange returns once the proxy closes the connection (or
			// after 5s of silence, which would fail the comparison).
			if out := rawExchange(t, l.Addr().String(), tc.in, 5*time.Second); out != tc.want {
				t.Errorf("answer to %q =\n%q, want\n%q", tc.in, out, tc.want)
			}
		})
	}
}

func TestNilDialer(t *testing.T) {
	a, b := net.Pipe()
	defer b.Close()
	if err := (&Server{}).ServeConn(t.Context(), a); err == nil {
		t.Error("ServeConn with nil Dialer = nil, want error")
	}
}

// TestStreamedResponse checks that each part of a streamed response reaches
// the client before the destination sends the next one.
func TestStreamedResponse(t *testing.T) {
	next := make(chan struct{})
	origin := rawOrigin(t, func(req *http.Request, w *bufio.Writer) bool {
		w.WriteString("HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n")
		for i := range 3 {
			fmt.Fprintf(w, "9\r\ndata: %d\n\n\r\n", i)
			w.Flush()
			select {
			case <-next:
			case <-time.After(5 * time.Second):
				return true
			}
		}
		w.WriteString("0\r\n\r\n")
		return false
	})
	l := startServer(t, &Server{Dialer: &testDialer{}})
	c, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	fmt.Fprintf(c, "GET http://%s/events HTTP/1.1\r\n\r\n", origin)
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 9)
	for i := range 3 {
		if _, err := io.ReadFull(resp.Body, buf); err != nil {
			t.Fatalf("event %d: %v (not flushed to the client?)", i, err)
		}
		if want := fmt.Sprintf("data: %d\n\n", i); string(buf) != want {
			t.Errorf("event %d = %q, want %q", i, buf, want)
		}
		next <- struct{}{}
	}
}
