package socks5

import (
	"bytes"
	"context"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"
)

// pipeDialer answers every dial with one end of a net.Pipe whose other end is
// drained; addresses ending in an odd digit fail.
type pipeDialer struct {
	wg    sync.WaitGroup
	mu    sync.Mutex
	peers []net.Conn
}

func (d *pipeDialer) DialContext(ctx context.Context, network, address string) (net.Conn, error) {
	if strings.IndexAny(address[len(address)-1:], "13579") == 0 {
		return nil, ErrHostUnreachable
	}
	a, b := net.Pipe()
	d.mu.Lock()
	d.peers = append(d.peers, b)
	d.mu.Unlock()
	d.wg.Go(func() { io.Copy(io.Discard, b) })
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

func FuzzSOCKS5Handshake(f *testing.F) {
	greet := []byte{5, 1, 0}
	f.Add(cat(greet, []byte{5, 1, 0, 1, 127, 0, 0, 1, 0, 80}, []byte("GET / HTTP/1.0\r\n\r\n")))
	f.Add(cat(greet, []byte{5, 1, 0, 3, 11}, []byte("example.com"), []byte{1, 0xBB}))
	f.Add(cat(greet, []byte{5, 1, 0, 4}, make([]byte, 16), []byte{0, 53}))
	f.Add(cat(greet, []byte{5, 3, 0, 1, 0, 0, 0, 0, 0, 0}))
	f.Add(cat(greet, []byte{5, 2, 0, 1, 0, 0, 0, 0, 0, 0}))
	f.Add(cat(greet, []byte{5, 1, 0, 3, 0, 0, 80}))
	f.Add([]byte{5, 2, 1, 2})
	f.Add([]byte{5, 0})
	f.Add([]byte{4, 1, 0, 80, 127, 0, 0, 1, 0})
	f.Fuzz(func(t *testing.T, in []byte) {
		d := &pipeDialer{}
		defer d.close()
		s := &Server{Dialer: d, HandshakeTimeout: 50 * time.Millisecond, DialTimeout: 50 * time.Millisecond}
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
			t.Fatalf("ServeConn(%x) hung", in)
		}
	})
}

func FuzzSOCKS5UDPHeader(f *testing.F) {
	f.Add(append(appendUDPHeader(nil, addr{host: "example.com", port: 53}), "q"...))
	f.Add(appendUDPHeader(nil, addr{ip: zeroIPv4}))
	f.Add([]byte{0, 0, 0, 4, 0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 53, 'x'})
	f.Add([]byte{0, 0, 1, 1, 1, 2, 3, 4, 0, 53})
	f.Add([]byte{0x30, 0x30, 0, 3, 1, 0x30, 0x30, 0x30}) // one-byte domain
	f.Fuzz(func(t *testing.T, in []byte) {
		dst, payload, err := parseUDPHeader(in)
		if err != nil {
			return
		}
		re := append(appendUDPHeader(nil, dst), payload...)
		if !bytes.Equal(re[2:], in[2:]) {
			t.Fatalf("re-encoding of %x = %x, want the same bytes after RSV", in, re)
		}
		dst2, payload2, err := parseUDPHeader(re)
		if err != nil || dst2 != dst || !bytes.Equal(payload2, payload) {
			t.Fatalf("parseUDPHeader(%x) = %v, %x, %v, want %v, %x, nil", re, dst2, payload2, err, dst, payload)
		}
	})
}
