package httpproxy

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"testing"
	"time"
)

// trickleDialer wraps the upstream conn so each Read returns at most a few
// hundred bytes, with pauses: the proxy's upstream buffer is often empty
// while its client buffer holds data, which is when flushingBody flushes.
type trickleDialer struct{ testDialer }

type trickleConn struct {
	net.Conn
	rng *rand.Rand
}

func (c *trickleConn) Read(p []byte) (int, error) {
	if len(p) > 300 {
		p = p[:1+c.rng.IntN(300)]
	}
	if c.rng.IntN(8) == 0 {
		time.Sleep(50 * time.Microsecond)
	}
	return c.Conn.Read(p)
}

func (d *trickleDialer) DialContext(ctx context.Context, network, address string) (net.Conn, error) {
	c, err := d.testDialer.DialContext(ctx, network, address)
	if err != nil {
		return nil, err
	}
	return &trickleConn{Conn: c, rng: rand.New(rand.NewPCG(1, 2))}, nil
}

// TestTrickledBodyIntact: a body that reaches the proxy in small, irregular
// reads arrives byte for byte (the response head once, never again inside
// the body).
func TestTrickledBodyIntact(t *testing.T) {
	body := make([]byte, 1<<20)
	rand.NewChaCha8([32]byte{7}).Read(body)
	origin := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", fmt.Sprint(len(body)))
		w.Write(body)
	})}
	ol, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go origin.Serve(ol)
	defer origin.Close()

	l := startServer(t, &Server{Dialer: &trickleDialer{}})
	tr := proxyTransport(l.Addr().String())
	defer tr.CloseIdleConnections()
	for n := 0; n < 3; n++ {
		resp, err := (&http.Client{Transport: tr}).Get("http://" + ol.Addr().String() + "/")
		if err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil || !bytes.Equal(got, body) {
			i := 0
			for i < min(len(got), len(body)) && got[i] == body[i] {
				i++
			}
			t.Fatalf("GET %d: %d bytes (err %v), first difference at %d; want %d identical bytes", n, len(got), err, i, len(body))
		}
	}
}
