package httpproxy

import (
	"bufio"
	"context"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"
)

// pipeDialer answers every dial with one end of a net.Pipe whose other end
// is a tiny HTTP origin answering "ok" to each request; hosts starting with
// "fail" cannot be reached.
type pipeDialer struct {
	wg    sync.WaitGroup
	mu    sync.Mutex
	peers []net.Conn
}

func (d *pipeDialer) DialContext(ctx context.Context, network, address string) (net.Conn, error) {
	if strings.HasPrefix(address, "fail") {
		return nil, io.ErrUnexpectedEOF
	}
	a, b := net.Pipe()
	d.mu.Lock()
	d.peers = append(d.peers, b)
	d.mu.Unlock()
	d.wg.Go(func() {
		defer b.Close()
		br := bufio.NewReader(b)
		for {
			req, err := http.ReadRequest(br)
			if err != nil {
				io.Copy(io.Discard, br)
				return
			}
			io.Copy(io.Discard, req.Body)
			if _, err := io.WriteString(b, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"); err != nil {
				return
			}
		}
	})
	return a, nil
}

func (d *pipeDialer) close() {
	d.mu.Lock()
	for _, p := range d.peers {
		p.Close()
	}
	d.mu.Unlock()
	d.wg.Wait()
}

func FuzzHTTPProxyRequest(f *testing.F) {
	for _, s := range []string{
		"GET http://example.com/ HTTP/1.1\r\nHost: example.com\r\n\r\n",
		"GET http://example.com/a HTTP/1.1\r\n\r\nGET http://example.org:8080/b HTTP/1.1\r\nConnection: close\r\n\r\n",
		"POST http://example.com/ HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello",
		"POST http://example.com/ HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\nX-T: 1\r\n\r\n",
		"HEAD http://fail.test/ HTTP/1.1\r\n\r\n",
		"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n\x16\x03\x01",
		"CONNECT [::1]:443 HTTP/1.1\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: example.com\r\n\r\n",
		"GET http://example.com/ HTTP/1.0\r\nConnection: keep-alive, X-A\r\nX-A: 1\r\n\r\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		d := &pipeDialer{}
		defer d.close()
		s := &Server{Dialer: d, HeaderTimeout: 50 * time.Millisecond, IdleTimeout: 50 * time.Millisecond, MaxHeaderBytes: 8 << 10}
		server, client := net.Pipe()
		var wg sync.WaitGroup
		defer wg.Wait()
		wg.Go(func() { io.Copy(io.Discard, client) })
		wg.Go(func() {
			client.Write(in)
			client.Close()
		})
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		done := make(chan struct{})
		go func() {
			defer close(done)
			s.ServeConn(ctx, server)
		}()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			t.Fatalf("ServeConn(%q) hung", in)
		}
	})
}

func TestRemoveHopHeaders(t *testing.T) {
	h := http.Header{
		"Connection":       {"X-A, x-b", " keep-alive "},
		"Proxy-Connection": {"X-C"},
		"X-A":              {"1"},
		"X-B":              {"1"},
		"X-C":              {"1"},
		"Keep-Alive":       {"1"},
		"Te":               {"trailers"},
		"Trailer":          {"X-T"},
		"Upgrade":          {"h2c"},
		"X-Kept":           {"1"},
	}
	removeHopHeaders(h)
	if len(h) != 1 || h.Get("X-Kept") != "1" {
		t.Errorf("removeHopHeaders left %v, want only X-Kept", h)
	}
}
