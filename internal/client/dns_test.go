package client

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// fakeResolver answers each query on its end of a pipe, out of order, with
// the query echoed back and the response bit set; after closeAfter answers
// (0: never) it closes the flow, as a server ends an idle UDP flow.
func fakeResolver(conn net.Conn, closeAfter int) {
	var mu sync.Mutex
	answered := 0
	buf := make([]byte, 65535)
	for {
		n, err := conn.Read(buf)
		if err != nil {
			return
		}
		q := append([]byte(nil), buf[:n]...)
		go func() {
			time.Sleep(time.Duration(rand.IntN(5)) * time.Millisecond)
			q[2] |= 0x80
			mu.Lock()
			defer mu.Unlock()
			if closeAfter > 0 && answered >= closeAfter {
				return
			}
			conn.Write(q)
			answered++
			if closeAfter > 0 && answered == closeAfter {
				conn.Close()
			}
		}()
	}
}

func query(id uint16, tag string) []byte {
	q := make([]byte, 12, 12+len(tag))
	binary.BigEndian.PutUint16(q, id)
	return append(q, tag...)
}

func TestDNSRelayConcurrentSameID(t *testing.T) {
	var dials atomic.Int32
	r := newDNSRelay(func(ctx context.Context) (net.Conn, error) {
		dials.Add(1)
		a, b := net.Pipe()
		go fakeResolver(b, 0)
		return a, nil
	})
	defer r.Close()
	var wg sync.WaitGroup
	for i := range 50 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			tag := fmt.Sprintf("name-%d", i)
			resp, err := r.Exchange(context.Background(), query(0x1234, tag))
			if err != nil {
				t.Errorf("Exchange(%s) error %v", tag, err)
				return
			}
			if id := binary.BigEndian.Uint16(resp); id != 0x1234 || string(resp[12:]) != tag || resp[2]&0x80 == 0 {
				t.Errorf("Exchange(%s) = id %#x body %q, want id 0x1234 body %q", tag, id, resp[12:], tag)
			}
		}()
	}
	wg.Wait()
	if n := dials.Load(); n != 1 {
		t.Errorf("dials = %d, want 1 (one flow shared by all queries)", n)
	}
}

func TestDNSRelayRedialsAfterClose(t *testing.T) {
	var dials atomic.Int32
	r := newDNSRelay(func(ctx context.Context) (net.Conn, error) {
		dials.Add(1)
		a, b := net.Pipe()
		go fakeResolver(b, 1)
		return a, nil
	})
	for i := range 3 {
		resp, err := r.Exchange(context.Background(), query(7, "q"))
		if err != nil || string(resp[12:]) != "q" {
			t.Fatalf("Exchange #%d = %q, %v; want an answer", i, resp, err)
		}
	}
	if n := dials.Load(); n < 2 {
		t.Errorf("dials = %d, want a new flow after the resolver closed one", n)
	}
	r.Close()
	if _, err := r.Exchange(context.Background(), query(7, "q")); !errors.Is(err, errRelayClosed) {
		t.Errorf("Exchange after Close = %v, want errRelayClosed", err)
	}
	if _, err := r.Exchange(context.Background(), []byte{1, 2}); err == nil {
		t.Error("Exchange(2 bytes) = nil error, want one")
	}
}

func TestDNSRelayDialError(t *testing.T) {
	r := newDNSRelay(func(ctx context.Context) (net.Conn, error) { return nil, errors.New("server unreachable") })
	defer r.Close()
	if _, err := r.Exchange(context.Background(), query(1, "q")); err == nil {
		t.Error("Exchange with the tunnel down = nil error, want one")
	}
}
