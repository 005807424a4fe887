package client

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"
)

// socksConnect opens a SOCKS5 CONNECT to host:port (sent as a domain name) through the
// proxy at proxy and returns the conn and the reply code.
func socksConnect(proxy, host string, port uint16) (net.Conn, byte, error) {
	c, err := net.Dial("tcp", proxy)
	if err != nil {
		return nil, 0, err
	}
	c.SetDeadline(time.Now().Add(30 * time.Second))
	req := []byte{5, 1, 0, 5, 1, 0, 3, byte(len(host))}
	req = binary.BigEndian.AppendUint16(append(req, host...), port)
	if _, err := c.Write(req); err != nil {
		c.Close()
		return nil, 0, err
	}
	var rep [2 + 4 + 4 + 2]byte // method answer; VER REP RSV ATYP; IPv4 and port
	if _, err := io.ReadFull(c, rep[:]); err != nil {
		c.Close()
		return nil, 0, fmt.Errorf("read reply: %w", err)
	}
	if rep[5] != 1 {
		c.Close()
		return nil, 0, fmt.Errorf("reply address type %d, want IPv4", rep[5])
	}
	c.SetDeadline(time.Time{})
	return c, rep[3], nil
}

// TestBadDestinationSharedMux: destinations that cannot be sent (an IPv6 zone, a control
// character, an over-long label), asked for while five downloads share one mux connection,
// are refused by the client with a SOCKS5 or HTTP error, and the five finish intact.
func TestBadDestinationSharedMux(t *testing.T) {
	_, _, l := muxBed(t)
	release := make(chan struct{})
	var releaseOnce sync.Once
	unblock := func() { releaseOnce.Do(func() { close(release) }) }
	defer unblock()
	const n = 256 << 10
	target := serveLoopback(t, func(c net.Conn) { // half the pattern, then the rest once released
		var nb [8]byte
		if _, err := io.ReadFull(c, nb[:]); err != nil {
			return
		}
		p := pattern(int(binary.BigEndian.Uint64(nb[:])))
		c.Write(p[:len(p)/2])
		<-release
		c.Write(p[len(p)/2:])
	})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cl, err := New(ctx, Config{Link: l, SOCKS: "127.0.0.1:0", HTTP: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cl.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run = %v", err)
		}
	}()
	socks, httpAddr := cl.SOCKSAddr().String(), cl.HTTPAddr().String()

	// Five downloads, each half read: all are sessions of the one mux connection.
	host, portStr, _ := net.SplitHostPort(target)
	var port uint16
	fmt.Sscan(portStr, &port)
	var good []net.Conn
	for i := range 5 {
		c, rep, err := socksConnect(socks, host, port)
		if err != nil || rep != 0 {
			t.Fatalf("download %d: CONNECT = reply %d, %v", i, rep, err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(30 * time.Second))
		var nb [8]byte
		binary.BigEndian.PutUint64(nb[:], n)
		c.Write(nb[:])
		if _, err := io.ReadFull(c, make([]byte, n/2)); err != nil {
			t.Fatalf("download %d: first half: %v", i, err)
		}
		good = append(good, c)
	}
	if m := cl.Tunnel.muxConns(); m != 1 {
		t.Fatalf("mux connections = %d, want the 5 downloads on 1", m)
	}

	for _, tc := range []struct {
		host string
		want byte
	}{
		{"fe80::1%v0", 0x08},
		{"a\x01b.example", 0x04},
		{strings.Repeat("x", 64) + ".example", 0x04},
	} {
		c, rep, err := socksConnect(socks, tc.host, 80)
		if err != nil {
			t.Fatalf("CONNECT %q: %v", tc.host, err)
		}
		if rep != tc.want {
			// Send what a browser would, as the refused destination's data.
			c.Write([]byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"))
			t.Errorf("CONNECT %q: reply %#02x, want %#02x", tc.host, rep, tc.want)
		}
		c.Close()
	}
	hc, err := net.Dial("tcp", httpAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer hc.Close()
	hc.SetDeadline(time.Now().Add(30 * time.Second))
	hc.Write([]byte("GET http://[::1%25lo]:7777/ HTTP/1.1\r\nHost: [::1%25lo]:7777\r\nConnection: close\r\n\r\n"))
	resp, err := http.ReadResponse(bufio.NewReader(hc), nil)
	if err != nil {
		t.Fatalf("HTTP proxy answer: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 400 || !strings.Contains(string(body), "IPv6 zone") {
		t.Errorf("HTTP proxy answer to an IPv6 zone = %d %q, want 400 naming the zone", resp.StatusCode, body)
	}

	unblock()
	want := sha256.Sum256(pattern(n)[n/2:])
	var errs []error
	for i, c := range good {
		h := sha256.New()
		got, err := io.Copy(h, c)
		if err != nil || got != n/2 || !bytes.Equal(h.Sum(nil), want[:]) {
			errs = append(errs, fmt.Errorf("download %d: second half %d bytes, %v; want %d matching", i, got, err, n/2))
		}
	}
	if err := errors.Join(errs...); err != nil {
		t.Error(err)
	}
}
