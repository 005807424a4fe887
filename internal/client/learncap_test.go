package client

import (
	"context"
	"io"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/burrow-vpn/burrow/internal/links"
)

// capper is a relay that resets a client's connection while max others
// are open, as a censor capping concurrent connections per pair does.
type capper struct {
	ln     net.Listener
	mu     sync.Mutex
	live   int // guarded by mu
	resets int // guarded by mu
}

func startCapper(t *testing.T, to netip.AddrPort, max int) *capper {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cp := &capper{ln: ln}
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			cp.mu.Lock()
			over := cp.live >= max
			if over {
				cp.resets++
			} else {
				cp.live++
			}
			cp.mu.Unlock()
			if over {
				c.(*net.TCPConn).SetLinger(0)
				c.Close()
				continue
			}
			wg.Go(func() {
				defer func() {
					cp.mu.Lock()
					cp.live--
					cp.mu.Unlock()
				}()
				defer c.Close()
				s, err := net.Dial("tcp", to.String())
				if err != nil {
					return
				}
				defer s.Close()
				done := make(chan struct{})
				go func() {
					io.Copy(s, c)
					s.(*net.TCPConn).CloseWrite()
					close(done)
				}()
				io.Copy(c, s)
				c.(*net.TCPConn).CloseWrite()
				<-done
			})
		}
	})
	t.Cleanup(func() {
		ln.Close()
		wg.Wait()
	})
	return cp
}

// TestRotationLearnsConnCap: a path that resets a second concurrent
// connection (a cap of 1) teaches the rotating transport to keep one open;
// the transfer goes on meanwhile.
func TestRotationLearnsConnCap(t *testing.T) {
	bed := startBed(t)
	cp := startCapper(t, bed.server, 1)
	l := bed.link
	l.Port = uint16(cp.ln.Addr().(*net.TCPAddr).Port)
	l.Type, l.Flow, l.XHTTP = links.TypeXHTTP, "", &links.XHTTP{}
	tun, err := NewTunnel(&l, TunnelOptions{Budget: 16 << 10, Pace: noPace}) // rotation: a second connection warms up
	if err != nil {
		t.Fatal(err)
	}
	defer tun.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	if err := fetch(ctx, tun, bed.target, 512<<10); err != nil {
		t.Fatalf("fetch through a cap of 1: %v", err)
	}
	if got := tun.learned.Get(tun.netKey()).MaxConns; got != 1 {
		t.Fatalf("learned MaxConns = %d, want 1", got)
	}
	cp.mu.Lock()
	before := cp.resets
	cp.mu.Unlock()
	if err := fetch(ctx, tun, bed.target, 512<<10); err != nil {
		t.Fatalf("fetch after learning the cap: %v", err)
	}
	cp.mu.Lock()
	defer cp.mu.Unlock()
	if cp.resets > before {
		t.Errorf("%d more connections reset after the cap was learned, want none", cp.resets-before)
	}
	t.Logf("cap of 1 learned after %d reset connections", before)
}

// TestHandshakeResetSwitchesTransport: a plain link whose handshake is
// reset right after the ClientHello twice moves to the XHTTP transport
// (once does not), which then carries the data (the server serves both on
// its port).
func TestHandshakeResetSwitchesTransport(t *testing.T) {
	bed := startBed(t)
	ln := resetFront(t, bed.server.String(), 2)
	l := bed.link
	l.Port = uint16(ln.Addr().(*net.TCPAddr).Port)
	tun, err := NewTunnel(&l, TunnelOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer tun.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	for i, want := range []string{TransportTCP, TransportXHTTP} {
		if err := fetch(ctx, tun, bed.target, 1000); err == nil {
			t.Fatalf("fetch %d through a reset handshake succeeded, want the reset", i)
		}
		if got := tun.Transport(); got != want {
			t.Fatalf("Transport() after %d reset handshakes = %q, want %q", i+1, got, want)
		}
	}
	if err := fetch(ctx, tun, bed.target, 256<<10); err != nil {
		t.Fatalf("fetch over the next transport: %v", err)
	}
}
