package main

import (
	"bytes"
	"context"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// holdPort listens on a free loopback port as "another program" would, accepting and
// hanging up on every connection (a proxy that answers nothing), and counts them.
func holdPort(t *testing.T, accepted *atomic.Int32) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			accepted.Add(1)
			c.Close()
		}
	})
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	return ln.Addr().String()
}

// TestDemoPortsTaken: with its default proxy ports held by another program, the demo says
// so, serves on free ports it prints, and self-tests through its own proxies only (before,
// it fetched through whatever held the port: "EOF", or a false "passed"). A port asked for
// with --socks that is taken is an error naming the clash.
func TestDemoPortsTaken(t *testing.T) {
	var accepted atomic.Int32
	oldSOCKS, oldHTTP := demoSOCKS, demoHTTP
	demoSOCKS, demoHTTP = holdPort(t, &accepted), holdPort(t, &accepted)
	defer func() { demoSOCKS, demoHTTP = oldSOCKS, oldHTTP }()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	var stdout, stderr bytes.Buffer
	if err := runDemo(ctx, []string{"--once"}, &stdout, &stderr); err != nil {
		t.Fatalf("demo --once with its default ports taken = %v\n%s", err, stderr.String())
	}
	out := stderr.String()
	for _, want := range []string{
		demoSOCKS + " is already in use by another program; the SOCKS5 proxy takes a free port instead",
		demoHTTP + " is already in use by another program; the HTTP proxy takes a free port instead",
		"demo: SOCKS5 proxy on 127.0.0.1:", "demo: HTTP proxy on 127.0.0.1:", "demo: self-test passed",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("demo output lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "proxy on "+demoSOCKS) || strings.Contains(out, "proxy on "+demoHTTP) {
		t.Errorf("demo claims a port another program holds:\n%s", out)
	}
	if n := accepted.Load(); n != 0 {
		t.Errorf("the other program's ports got %d connections from the demo, want 0", n)
	}
	if !strings.HasPrefix(stdout.String(), "vless://") {
		t.Errorf("demo stdout = %q, want the link", stdout.String())
	}

	stderr.Reset()
	err := runDemo(ctx, []string{"--once", "--socks", demoSOCKS}, &stdout, &stderr)
	if err == nil || !strings.Contains(err.Error(), "--socks "+demoSOCKS+": the port is already in use by another program") {
		t.Errorf("demo --socks with a taken port = %v, want the clash named", err)
	}
	if strings.Contains(stderr.String(), "self-test") {
		t.Errorf("demo with a taken --socks went on to a self-test:\n%s", stderr.String())
	}
}

// TestFreePortBelowEphemeral: freePort's ports come from below the
// ephemeral range (where port-0 listeners and outgoing connections cannot
// take them before the child process binds them) and are free.
func TestFreePortBelowEphemeral(t *testing.T) {
	low := ephemeralLow()
	for range 20 {
		p, err := freePort()
		if err != nil {
			t.Fatal(err)
		}
		n, err := strconv.Atoi(p)
		if err != nil || n >= low || n < 1024 {
			t.Fatalf("freePort() = %q, want a port in [1024, %d)", p, low)
		}
		l, err := net.Listen("tcp", "127.0.0.1:"+p)
		if err != nil {
			t.Fatalf("freePort() = %s, but listening on it: %v", p, err)
		}
		l.Close()
	}
}
