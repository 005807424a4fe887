package socks5

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"runtime"
	"syscall"
	"testing"
	"time"

	"golang.org/x/net/proxy"
)

func TestConnectWithXNetProxy(t *testing.T) {
	body := make([]byte, 8<<20)
	rand.NewChaCha8([32]byte{1}).Read(body)
	want := sha256.Sum256(body)
	origin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write(body)
	}))
	defer origin.Close()
	_, port, _ := net.SplitHostPort(origin.Listener.Addr().String())

	domain := net.JoinHostPort("origin.burrow.test", port)
	d := &testDialer{rewrite: map[string]string{domain: origin.Listener.Addr().String()}}
	addr := startServer(t, &Server{Dialer: d})

	socks, err := proxy.SOCKS5("tcp", addr, nil, proxy.Direct)
	if err != nil {
		t.Fatal(err)
	}
	tr := &http.Transport{DialContext: socks.(proxy.ContextDialer).DialContext}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr}

	for _, host := range []string{domain, origin.Listener.Addr().String()} {
		resp, err := client.Get("http://" + host + "/big")
		if err != nil {
			t.Fatalf("GET via socks5: %v", err)
		}
		h := sha256.New()
		n, err := io.Copy(h, resp.Body)
		resp.Body.Close()
		if err != nil {
			t.Fatalf("read body: %v", err)
		}
		if got := h.Sum(nil); !bytes.Equal(got, want[:]) {
			t.Errorf("GET %s: sha256 of %d bytes = %x, want %x", host, n, got, want)
		}
		tr.CloseIdleConnections()
	}
	calls := d.Calls()
	wantCalls := []string{"tcp " + domain, "tcp " + origin.Listener.Addr().String()}
	if fmt.Sprint(calls) != fmt.Sprint(wantCalls) {
		t.Errorf("dialer calls = %q, want %q (domain passed through unresolved)", calls, wantCalls)
	}
}

// echoServer accepts TCP connections on network/address and echoes each until
// EOF, then half-closes.
func echoServer(t *testing.T, network, address string) net.Listener {
	t.Helper()
	l, err := net.Listen(network, address)
	if err != nil {
		t.Skipf("listen %s %s: %v", network, address, err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				io.Copy(c, c)
				c.(*net.TCPConn).CloseWrite()
				io.Copy(io.Discard, c)
			}()
		}
	}()
	t.Cleanup(func() { l.Close(); <-done })
	return l
}

func TestConnectHalfClose(t *testing.T) {
	for _, tc := range []struct {
		name, network, listen string
	}{
		{"IPv4", "tcp4", "127.0.0.1:0"},
		{"IPv6", "tcp6", "[::1]:0"},
		{"domain", "tcp4", "127.0.0.1:0"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			echo := echoServer(t, tc.network, tc.listen)
			ap := echo.Addr().(*net.TCPAddr).AddrPort()
			dst := addr{ip: ap.Addr(), port: ap.Port()}
			d := &testDialer{}
			if tc.name == "domain" {
				dst = addr{host: "echo.burrow.test", port: ap.Port()}
				d.rewrite = map[string]string{dst.String(): ap.String()}
			}
			c, err := net.Dial("tcp", startServer(t, &Server{Dialer: d}))
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if rep, _ := clientRequest(t, c, cmdConnect, dst); rep != ReplySucceeded {
				t.Fatalf("CONNECT %s: reply = %v, want %v", dst, rep, ReplySucceeded)
			}
			data := make([]byte, 4<<20)
			rand.NewChaCha8([32]byte{2}).Read(data)
			c.SetDeadline(time.Now().Add(20 * time.Second))
			werr := make(chan error, 1)
			go func() {
				_, err := c.Write(data)
				if err == nil {
					err = c.(*net.TCPConn).CloseWrite()
				}
				werr <- err
			}()
			got, err := io.ReadAll(c)
			if err != nil {
				t.Fatalf("read echo: %v", err)
			}
			if err := <-werr; err != nil {
				t.Fatalf("write: %v", err)
			}
			if !bytes.Equal(got, data) {
				t.Errorf("echo of %d bytes: got %d bytes, not equal", len(data), len(got))
			}
			if calls, want := d.Calls(), "tcp "+dst.String(); len(calls) != 1 || calls[0] != want {
				t.Errorf("dialer calls = %q, want [%q]", calls, want)
			}
		})
	}
}

type customErr struct{ code byte }

func (e customErr) Error() string    { return "custom" }
func (e customErr) SOCKSReply() byte { return e.code }

func TestReplyCodes(t *testing.T) {
	// A port nobody listens on, for a real ECONNREFUSED.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closedAddr := l.Addr().(*net.TCPAddr).AddrPort()
	l.Close()

	for _, tc := range []struct {
		name string
		fail error
		dst  addr
		want Reply
	}{
		{"refused (real socket)", nil, addr{ip: closedAddr.Addr(), port: closedAddr.Port()}, ReplyConnectionRefused},
		{"ErrConnectionRefused", ErrConnectionRefused, addr{host: "a.test", port: 1}, ReplyConnectionRefused},
		{"ErrHostUnreachable wrapped", fmt.Errorf("tunnel: %w", ErrHostUnreachable), addr{host: "a.test", port: 1}, ReplyHostUnreachable},
		{"ErrNetworkUnreachable", ErrNetworkUnreachable, addr{host: "a.test", port: 1}, ReplyNetworkUnreachable},
		{"ErrNotAllowed", ErrNotAllowed, addr{host: "a.test", port: 1}, ReplyNotAllowed},
		{"ErrTTLExpired", ErrTTLExpired, addr{host: "a.test", port: 1}, ReplyTTLExpired},
		{"SOCKSReply method", fmt.Errorf("x: %w", customErr{0x04}), addr{host: "a.test", port: 1}, ReplyHostUnreachable},
		{"SOCKSReply zero", customErr{0}, addr{host: "a.test", port: 1}, ReplyGeneralFailure},
		{"EHOSTUNREACH", &net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("connect", syscall.EHOSTUNREACH)}, addr{host: "a.test", port: 1}, ReplyHostUnreachable},
		{"ENETUNREACH", &net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("connect", syscall.ENETUNREACH)}, addr{host: "a.test", port: 1}, ReplyNetworkUnreachable},
		{"DNS error", &net.DNSError{Err: "no such host", Name: "a.test", IsNotFound: true}, addr{host: "a.test", port: 1}, ReplyHostUnreachable},
		{"deadline", context.DeadlineExceeded, addr{host: "a.test", port: 1}, ReplyHostUnreachable},
		{"other", errors.New("boom"), addr{host: "a.test", port: 1}, ReplyGeneralFailure},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := &testDialer{fail: tc.fail}
			c, err := net.Dial("tcp", startServer(t, &Server{Dialer: d}))
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			rep, _ := clientRequest(t, c, cmdConnect, tc.dst)
			if rep != tc.want {
				t.Errorf("CONNECT with dial error %v: reply = %v, want %v", tc.fail, rep, tc.want)
			}
			c.SetReadDeadline(time.Now().Add(5 * time.Second))
			if n, err := c.Read(make([]byte, 1)); err != io.EOF {
				t.Errorf("after failure reply: Read = %d, %v, want EOF", n, err)
			}
		})
	}
}

// TestMalformed sends raw bytes and checks the server's exact answer and
// that it then closes the connection.
func TestMalformed(t *testing.T) {
	greet := []byte{5, 1, 0}
	for _, tc := range []struct {
		name   string
		in     []byte
		eof    bool // half-close after writing in
		want   []byte
		dialed bool
	}{
		{name: "SOCKS4 greeting", in: []byte{4, 1, 0, 80, 127, 0, 0, 1, 0}, want: nil},
		{name: "HTTP request", in: []byte("GET / HTTP/1.1\r\n\r\n"), want: nil},
		{name: "only username/password offered", in: []byte{5, 1, 2}, want: []byte{5, 0xFF}},
		{name: "zero methods", in: []byte{5, 0}, want: []byte{5, 0xFF}},
		{name: "GSSAPI and user/pass", in: []byte{5, 2, 1, 2}, want: []byte{5, 0xFF}},
		{name: "truncated methods", in: []byte{5, 3, 0}, eof: true, want: nil},
		{name: "stalled greeting (handshake timeout)", in: []byte{5}, want: nil},
		{name: "request wrong version", in: cat(greet, []byte{4, 1, 0, 1, 127, 0, 0, 1, 0, 80}), want: []byte{5, 0}},
		{name: "BIND", in: cat(greet, []byte{5, 2, 0, 1, 127, 0, 0, 1, 0, 80}), want: []byte{5, 0, 5, 7, 0, 1, 0, 0, 0, 0, 0, 0}},
		{name: "unknown command", in: cat(greet, []byte{5, 9, 0, 1, 127, 0, 0, 1, 0, 80}), want: []byte{5, 0, 5, 7, 0, 1, 0, 0, 0, 0, 0, 0}},
		{name: "unknown address type", in: cat(greet, []byte{5, 1, 0, 5, 127, 0, 0, 1, 0, 80}), want: []byte{5, 0, 5, 8, 0, 1, 0, 0, 0, 0, 0, 0}},
		{name: "empty domain", in: cat(greet, []byte{5, 1, 0, 3, 0, 0, 80}), want: []byte{5, 0, 5, 1, 0, 1, 0, 0, 0, 0, 0, 0}},
		{name: "truncated domain", in: cat(greet, []byte{5, 1, 0, 3, 10, 'a', 'b'}), eof: true, want: []byte{5, 0}},
		{name: "truncated IPv6", in: cat(greet, []byte{5, 1, 0, 4, 0, 0, 0}), eof: true, want: []byte{5, 0}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := &testDialer{fail: ErrHostUnreachable}
			c, err := net.Dial("tcp", startServer(t, &Server{Dialer: d, HandshakeTimeout: 300 * time.Millisecond}))
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if _, err := c.Write(tc.in); err != nil {
				t.Fatal(err)
			}
			if tc.eof {
				c.(*net.TCPConn).CloseWrite()
			}
			c.SetReadDeadline(time.Now().Add(5 * time.Second))
			got, err := io.ReadAll(c)
			if err != nil && !(len(tc.want) == 0 && errors.Is(err, syscall.ECONNRESET)) {
				t.Fatalf("server did not close: %v", err)
			}
			if !bytes.Equal(got, tc.want) {
				t.Errorf("answer to %x = %x, want %x", tc.in, got, tc.want)
			}
			if calls := d.Calls(); len(calls) != 0 {
				t.Errorf("dialer calls = %q, want none", calls)
			}
		})
	}
}

func cat(bs ...[]byte) []byte { return bytes.Join(bs, nil) }

// TestEarlyData checks that bytes sent right behind the request (before the
// reply) reach the destination: the handshake must not over-read.
func TestEarlyData(t *testing.T) {
	echo := echoServer(t, "tcp4", "127.0.0.1:0")
	ap := echo.Addr().(*net.TCPAddr).AddrPort()
	c, err := net.Dial("tcp", startServer(t, &Server{Dialer: &testDialer{}}))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	req := cat([]byte{5, 1, 0}, addr{ip: ap.Addr(), port: ap.Port()}.appendTo([]byte{5, 1, 0}), []byte("hello"))
	c.Write(req)
	c.(*net.TCPConn).CloseWrite()
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	got, err := io.ReadAll(c)
	if err != nil {
		t.Fatal(err)
	}
	want := cat([]byte{5, 0, 5, 0, 0, 1, 127, 0, 0, 1}, nil)
	if len(got) < len(want)+2 || !bytes.Equal(got[:len(want)], want) {
		t.Fatalf("reply = %x, want prefix %x", got, want)
	}
	if rest := got[len(want)+2:]; string(rest) != "hello" {
		t.Errorf("echoed early data = %q, want %q", rest, "hello")
	}
}

func TestCloseEndsEverything(t *testing.T) {
	base := runtime.NumGoroutine()
	hold := echoServer(t, "tcp4", "127.0.0.1:0")
	ap := hold.Addr().(*net.TCPAddr).AddrPort()
	base2 := runtime.NumGoroutine()

	s := &Server{Dialer: &testDialer{}}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- s.Serve(l) }()

	var clients []net.Conn
	dial := func() net.Conn {
		c, err := net.Dial("tcp", l.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		clients = append(clients, c)
		return c
	}
	dial().Write([]byte{5, 1}) // mid-greeting
	if rep, _ := clientRequest(t, dial(), cmdConnect, addr{ip: ap.Addr(), port: ap.Port()}); rep != ReplySucceeded {
		t.Fatalf("CONNECT reply = %v", rep)
	}
	if rep, _ := clientRequest(t, dial(), cmdUDPAssociate, addr{ip: zeroIPv4}); rep != ReplySucceeded {
		t.Fatalf("UDP ASSOCIATE reply = %v", rep)
	}

	closed := make(chan error, 1)
	go func() { closed <- s.Close() }()
	select {
	case err := <-closed:
		if err != nil {
			t.Errorf("Close() = %v", err)
		}
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
	if err := s.Serve(l); !errors.Is(err, ErrServerClosed) {
		t.Errorf("Serve after Close = %v, want ErrServerClosed", err)
	}
	checkGoroutines(t, base2)
	_ = base
}

func TestServeConnContextCancel(t *testing.T) {
	a, b := net.Pipe()
	defer b.Close()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- (&Server{Dialer: &testDialer{}}).ServeConn(ctx, a) }()
	cancel()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("ServeConn did not return after cancel")
	}
}

func TestAddrString(t *testing.T) {
	for _, tc := range []struct {
		in   addr
		want string
	}{
		{addr{ip: netip.MustParseAddr("10.1.2.3"), port: 443}, "10.1.2.3:443"},
		{addr{ip: netip.MustParseAddr("2001:db8::1"), port: 53}, "[2001:db8::1]:53"},
		{addr{host: "example.com", port: 80}, "example.com:80"},
	} {
		if got := tc.in.String(); got != tc.want {
			t.Errorf("addr%+v.String() = %q, want %q", tc.in, got, tc.want)
		}
	}
}
