package bench

// relay_mem_test.go measures what idle client connections cost an exit and
// an entry relay, each in its own process (`burrow server run`, `burrow
// relay run`, built from this tree), so each figure is one party's RSS:
//
//  1. an exit alone; -idleconns real REALITY + Vision clients connect to it,
//     each sends a byte to an echo server and reads it back, then idles;
//  2. a fresh exit and a relay in front of it; the same clients connect to
//     the relay (an ordinary link whose address is the relay).
//
// Figures: the VmRSS increase (/proc/PID/status) per idle connection of the
// exit in 1 (exit-B/conn), of the relay in 2 (relay-B/conn), of the exit
// behind the relay in 2 (exit-relayed-B/conn), and relay/exit, the ratio
// the issue bounds (≤ 0.5). RSS is read after -idlewait of idleness, with
// the clients in this process. Run:
//
//	go test -run XXX -bench RelayIdleRSS -benchtime 1x ./bench/

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/burrow-vpn/burrow/internal/client"
	"github.com/burrow-vpn/burrow/internal/coversite"
	"github.com/burrow-vpn/burrow/internal/links"
	"github.com/burrow-vpn/burrow/internal/server"
)

var (
	idleConns = flag.Int("idleconns", 2000, "idle client connections BenchmarkRelayIdleRSS holds")
	idleWait  = flag.Duration("idlewait", 3*time.Second, "idle time before BenchmarkRelayIdleRSS reads RSS")
)

func BenchmarkRelayIdleRSS(b *testing.B) {
	if _, err := server.RaiseFileLimit(); err != nil { // the children inherit it
		b.Fatal(err)
	}
	bin := buildBurrow(b)
	echo := startEcho(b)
	link, viaRelay, exitData, relayData := exitAndRelay(b, bin)

	n := *idleConns
	var exitDirect, relayed, exitRelayed float64
	for b.Loop() {
		exit := startBurrow(b, bin, "burrow server running", "server", "run", "--data", exitData)
		d := holdIdle(b, link, echo, n, exit)
		exit.stop(b)
		exitDirect = d[0]

		exit = startBurrow(b, bin, "burrow server running", "server", "run", "--data", exitData)
		rl := startBurrow(b, bin, "burrow relay running", "relay", "run", "--data", relayData)
		d = holdIdle(b, &viaRelay, echo, n, rl, exit)
		rl.stop(b)
		exit.stop(b)
		relayed, exitRelayed = d[0], d[1]
	}
	b.ReportMetric(exitDirect, "exit-B/conn")
	b.ReportMetric(relayed, "relay-B/conn")
	b.ReportMetric(exitRelayed, "exit-relayed-B/conn")
	b.ReportMetric(relayed/exitDirect, "relay/exit")
}

// exitAndRelay sets up, with bin, an exit's and a relay's data dirs (a
// cover site on loopback, the exit allowed to reach loopback
// destinations, the relay holding a token of the exit) and returns a
// user's link to the exit and the same link through the relay.
func exitAndRelay(b *testing.B, bin string) (link *links.VLESS, viaRelay links.VLESS, exitData, relayData string) {
	b.Helper()
	cover, err := coversite.Start("127.0.0.1:0", "cover.test")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { cover.Close() })
	dir := b.TempDir()
	exitData, relayData = filepath.Join(dir, "exit"), filepath.Join(dir, "relay")
	exitAddr, relayAddr := freeLoopback(b), freeLoopback(b)
	out := runBurrow(b, bin, "server", "init", "--data", exitData, "--listen", exitAddr, "--cover", cover.Addr,
		"--sni", "cover.test", "--public-addr", "127.0.0.1", "--allow-private-egress")
	link, err = links.ParseVLESS(strings.TrimSpace(strings.SplitN(out, "\n", 2)[0]))
	if err != nil {
		b.Fatalf("server init printed no link: %v\n%s", err, out)
	}
	tok := strings.TrimSpace(runBurrow(b, bin, "server", "relay-token", "r1", "--data", exitData))
	runBurrow(b, bin, "relay", "init", "--data", relayData, "--listen", relayAddr, "--public-addr", "127.0.0.1", "--exit", tok)
	viaRelay = *link
	host, port, _ := net.SplitHostPort(relayAddr)
	viaRelay.Host, viaRelay.Port = host, uint16(mustAtoi(port))
	return link, viaRelay, exitData, relayData
}

// holdIdle opens n idle connections through link (each its own REALITY +
// Vision connection, one byte echoed) and returns, per process of procs,
// its RSS increase per connection after idleWait. A warm-up connection is
// made before the first reading, so pools and one-time set-up are not
// counted.
func holdIdle(b *testing.B, link *links.VLESS, echo string, n int, procs ...*burrowProc) []float64 {
	b.Helper()
	tun, err := client.NewTunnel(link, client.TunnelOptions{NoMux: true, NoFallback: true})
	if err != nil {
		b.Fatal(err)
	}
	defer tun.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	warm, err := echoConn(ctx, tun, echo)
	if err != nil {
		b.Fatalf("warm-up connection: %v\n%s", err, logsOf(procs))
	}
	defer warm.Close()
	before := make([]int64, len(procs))
	for i, p := range procs {
		before[i] = rssOf(b, p.cmd.Process.Pid)
	}
	conns := make([]net.Conn, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	next := make(chan int)
	for range 32 {
		wg.Go(func() {
			for i := range next {
				conns[i], errs[i] = echoConn(ctx, tun, echo)
			}
		})
	}
	for i := range n {
		next <- i
	}
	close(next)
	wg.Wait()
	defer func() {
		for _, c := range conns {
			if c != nil {
				c.Close()
			}
		}
	}()
	if err := errors.Join(errs...); err != nil {
		b.Fatalf("opening %d idle connections: %v\n%s", n, err, logsOf(procs))
	}
	time.Sleep(*idleWait) // the measured state: idle connections
	out := make([]float64, len(procs))
	for i, p := range procs {
		out[i] = float64(rssOf(b, p.cmd.Process.Pid)-before[i]) / float64(n)
	}
	return out
}

// echoConn opens a connection to the echo server through tun and checks
// one byte's round trip.
func echoConn(ctx context.Context, tun *client.Tunnel, echo string) (net.Conn, error) {
	c, err := tun.DialContext(ctx, "tcp", echo)
	if err != nil {
		return nil, err
	}
	stop := context.AfterFunc(ctx, func() { c.SetDeadline(time.Now()) })
	defer stop()
	var one [1]byte
	_, err = c.Write([]byte{'x'})
	if err == nil {
		_, err = io.ReadFull(c, one[:])
	}
	if err != nil || one[0] != 'x' {
		c.Close()
		return nil, fmt.Errorf("echo through the tunnel: got %q: %w", one[0], err)
	}
	return c, nil
}

// startEcho runs a TCP echo server on loopback until the benchmark ends.
func startEcho(b *testing.B) string {
	b.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var open []net.Conn
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			open = append(open, c)
			mu.Unlock()
			wg.Go(func() { defer c.Close(); io.Copy(c, c) })
		}
	})
	b.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range open {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	return ln.Addr().String()
}

// rssOf returns the VmRSS of process pid in bytes.
func rssOf(b *testing.B, pid int) int64 {
	b.Helper()
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		b.Fatalf("RSS of %d (this benchmark needs Linux /proc): %v", pid, err)
	}
	for line := range strings.SplitSeq(string(raw), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			if err != nil {
				b.Fatalf("VmRSS of %d: %q: %v", pid, v, err)
			}
			return kb << 10
		}
	}
	b.Fatalf("no VmRSS in /proc/%d/status", pid)
	return 0
}

// buildBurrow builds the burrow binary of this tree into a temporary dir.
func buildBurrow(b *testing.B) string {
	b.Helper()
	bin := filepath.Join(b.TempDir(), "burrow")
	if out, err := exec.Command("go", "build", "-o", bin, "github.com/burrow-vpn/burrow/cmd/burrow").CombinedOutput(); err != nil {
		b.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// runBurrow runs `burrow ARGS` to completion and returns its stdout.
func runBurrow(b *testing.B, bin string, args ...string) string {
	b.Helper()
	cmd := exec.Command(bin, args...)
	var errOut strings.Builder
	cmd.Stderr = &errOut
	out, err := cmd.Output()
	if err != nil {
		b.Fatalf("burrow %s: %v\n%s", strings.Join(args, " "), err, errOut.String())
	}
	return string(out)
}

// freeLoopback returns a loopback address with a port free now.
func freeLoopback(b *testing.B) string {
	b.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// burrowProc is a running burrow process and its log.
type burrowProc struct {
	cmd  *exec.Cmd
	mu   sync.Mutex
	log  strings.Builder // guarded by mu
	done chan struct{}   // closed when its log ended
}

// startBurrow starts `burrow ARGS` and waits for a log line containing
// ready.
func startBurrow(b *testing.B, bin, ready string, args ...string) *burrowProc {
	b.Helper()
	p := &burrowProc{cmd: exec.Command(bin, args...), done: make(chan struct{})}
	errPipe, err := p.cmd.StderrPipe()
	if err != nil {
		b.Fatal(err)
	}
	p.cmd.Stdout = p.cmd.Stderr
	if err := p.cmd.Start(); err != nil {
		b.Fatal(err)
	}
	up := make(chan struct{})
	go func() {
		defer close(p.done)
		sc := bufio.NewScanner(errPipe)
		seen := false
		for sc.Scan() {
			p.mu.Lock()
			p.log.WriteString(sc.Text() + "\n")
			p.mu.Unlock()
			if !seen && strings.Contains(sc.Text(), ready) {
				seen = true
				close(up)
			}
		}
	}()
	select {
	case <-up:
	case <-p.done:
		p.cmd.Wait()
		b.Fatalf("burrow %s ended before it was ready:\n%s", strings.Join(args, " "), p.logs())
	case <-time.After(time.Minute):
		p.cmd.Process.Kill()
		<-p.done
		p.cmd.Wait()
		b.Fatalf("burrow %s not ready within a minute:\n%s", strings.Join(args, " "), p.logs())
	}
	b.Cleanup(func() { p.stop(b) })
	return p
}

func (p *burrowProc) logs() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.log.String()
}

// stop ends the process with SIGTERM, or SIGKILL after 15 s, and waits for
// it. Stopping it again does nothing.
func (p *burrowProc) stop(b *testing.B) {
	if p.cmd.ProcessState != nil {
		return
	}
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(15 * time.Second):
		b.Logf("burrow did not stop within 15 s after SIGTERM; killing it:\n%s", p.logs())
		p.cmd.Process.Kill()
		<-p.done
	}
	p.cmd.Wait()
}

func logsOf(procs []*burrowProc) string {
	var s strings.Builder
	for _, p := range procs {
		fmt.Fprintf(&s, "--- %s\n%s", strings.Join(p.cmd.Args[1:], " "), p.logs())
	}
	return s.String()
}
