package main

import (
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// target is what the measurements talk to: the two sink addresses.
type target struct {
	plain, tls netip.AddrPort
}

// under is one system under test while it runs: its SOCKS address (empty
// for the direct baseline) and its processes.
type under struct {
	socks  string
	procs  []*proc
	clkTck float64
}

// cpu returns the CPU seconds (user+system) used so far by all processes.
func (u *under) cpu() (float64, error) {
	var sum float64
	for _, p := range u.procs {
		s, err := cpuSeconds(p.pid(), u.clkTck)
		if err != nil {
			return 0, fmt.Errorf("%s cpu: %w", p.spec.Role, err)
		}
		sum += s
	}
	return sum, nil
}

// rss returns the summed VmRSS of the processes with role; ok is false if
// there are none.
func (u *under) rss(role string) (sum int64, ok bool, err error) {
	for _, p := range u.procs {
		if p.spec.Role != role {
			continue
		}
		r, err := rssBytes(p.pid())
		if err != nil {
			return 0, false, fmt.Errorf("%s rss: %w", role, err)
		}
		sum, ok = sum+r, true
	}
	return sum, ok, nil
}

var innerTLS = &tls.Config{
	// The benchmark's own sink on loopback with a throw-away certificate:
	// there is nothing to verify.
	InsecureSkipVerify: true,
	ServerName:         "sink.test",
	MinVersion:         tls.VersionTLS13,
}

// open makes a new connection through u to the sink (the TLS sink when
// overTLS) and sends the request (mode, n).
func (u *under) open(ctx context.Context, t target, overTLS bool, mode byte, n uint64) (net.Conn, error) {
	dst := t.plain
	if overTLS {
		dst = t.tls
	}
	c, err := dialSOCKS(ctx, u.socks, dst)
	if err != nil {
		return nil, err
	}
	if dl, ok := ctx.Deadline(); ok {
		c.SetDeadline(dl)
	}
	if overTLS {
		tc := tls.Client(c, innerTLS)
		if err := tc.HandshakeContext(ctx); err != nil {
			c.Close()
			return nil, fmt.Errorf("inner tls handshake: %w", err)
		}
		c = tc
	}
	var req [requestLen]byte
	req[0] = mode
	binary.BigEndian.PutUint64(req[1:], n)
	if _, err := c.Write(req[:]); err != nil {
		c.Close()
		return nil, fmt.Errorf("write request: %w", err)
	}
	return c, nil
}

// readN reads exactly n bytes from c into the discard buffer buf.
func readN(c net.Conn, buf []byte, n uint64) error {
	var got uint64
	for got < n {
		k, err := c.Read(buf[:min(uint64(len(buf)), n-got)])
		got += uint64(k)
		if err != nil {
			if got == n {
				return nil
			}
			return fmt.Errorf("read after %d of %d bytes: %w", got, n, err)
		}
	}
	return nil
}

// throughput downloads total bytes split over streams parallel connections
// and returns MB/s (10^6 bytes per second of wall time, connection set-up
// included) and the CPU seconds per GiB the system's processes spent.
func (u *under) throughput(ctx context.Context, t target, overTLS bool, streams int, total uint64) (mbps, cpuPerGiB float64, err error) {
	cpu0, err := u.cpu()
	if err != nil {
		return 0, 0, err
	}
	start := time.Now()
	var wg sync.WaitGroup
	errs := make([]error, streams)
	for i := range streams {
		n := total / uint64(streams)
		if i == streams-1 {
			n = total - n*uint64(streams-1)
		}
		wg.Go(func() {
			c, err := u.open(ctx, t, overTLS, modeDownload, n)
			if err != nil {
				errs[i] = err
				return
			}
			defer c.Close()
			errs[i] = readN(c, make([]byte, 256<<10), n)
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	if err := errors.Join(errs...); err != nil {
		return 0, 0, err
	}
	mbps = float64(total) / elapsed.Seconds() / 1e6
	if len(u.procs) == 0 {
		return mbps, math.NaN(), nil
	}
	cpu1, err := u.cpu()
	if err != nil {
		return 0, 0, err
	}
	return mbps, (cpu1 - cpu0) / (float64(total) / (1 << 30)), nil
}

// ttfb opens n new connections one after another, each asking for one byte,
// and returns the times from starting the dial to reading that byte, and the
// number of failed attempts.
func (u *under) ttfb(ctx context.Context, t target, n int) ([]time.Duration, int) {
	var ds []time.Duration
	failed := 0
	var b [1]byte
	for range n {
		if ctx.Err() != nil {
			failed++
			continue
		}
		cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		start := time.Now()
		c, err := u.open(cctx, t, false, modeDownload, 1)
		if err == nil {
			_, err = io.ReadFull(c, b[:])
			c.Close()
		}
		d := time.Since(start)
		cancel()
		if err != nil {
			failed++
			continue
		}
		ds = append(ds, d)
	}
	return ds, failed
}

// rtt measures count round trips of a 64-byte message on one established
// connection in echo mode, after warm-up round trips (which also take any
// protocol past its start-of-connection padding).
func (u *under) rtt(ctx context.Context, t target, count int) ([]time.Duration, error) {
	c, err := u.open(ctx, t, false, modeEcho, 0)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	msg := make([]byte, 64)
	back := make([]byte, 64)
	const warmup = 100
	ds := make([]time.Duration, 0, count)
	for i := range warmup + count {
		start := time.Now()
		if _, err := c.Write(msg); err != nil {
			return nil, fmt.Errorf("echo write: %w", err)
		}
		if _, err := io.ReadFull(c, back); err != nil {
			return nil, fmt.Errorf("echo read: %w", err)
		}
		if i >= warmup {
			ds = append(ds, time.Since(start))
		}
	}
	return ds, nil
}

// idleResult is what the idle test found.
type idleResult struct {
	opened, held       int
	rssClient, rssServ int64 // with the connections open; -1 if no such process
	before             int64 // client+server RSS before opening
}

// idle opens n proxied echo connections (64 at a time), checks each end to
// end with one byte, lets them sit for wait, reads the RSS of the processes,
// then checks that each still echoes: those are held.
func (u *under) idle(ctx context.Context, t target, n int, wait time.Duration) (idleResult, error) {
	res := idleResult{rssClient: -1, rssServ: -1}
	var err error
	res.before, err = u.rssTotal()
	if err != nil {
		return res, err
	}
	conns := make([]net.Conn, n)
	defer func() {
		for _, c := range conns {
			if c != nil {
				c.Close()
			}
		}
	}()
	ping := func(c net.Conn) error {
		c.SetDeadline(time.Now().Add(15 * time.Second))
		defer c.SetDeadline(time.Time{})
		if _, err := c.Write([]byte{'.'}); err != nil {
			return err
		}
		var b [1]byte
		_, err := io.ReadFull(c, b[:])
		return err
	}
	var opened, held atomic.Int64
	parallel(n, 64, func(i int) {
		cctx, cancel := context.WithTimeout(ctx, 15*time.Second)
		defer cancel()
		c, err := u.open(cctx, t, false, modeEcho, 0)
		if err != nil {
			return
		}
		if ping(c) != nil {
			c.Close()
			return
		}
		conns[i] = c
		opened.Add(1)
	})
	select {
	case <-time.After(wait):
	case <-ctx.Done():
		return res, ctx.Err()
	}
	if r, ok, err := u.rss("client"); err != nil {
		return res, err
	} else if ok {
		res.rssClient = r
	}
	if r, ok, err := u.rss("server"); err != nil {
		return res, err
	} else if ok {
		res.rssServ = r
	}
	parallel(n, 64, func(i int) {
		if conns[i] != nil && ping(conns[i]) == nil {
			held.Add(1)
		}
	})
	res.opened, res.held = int(opened.Load()), int(held.Load())
	return res, nil
}

func (u *under) rssTotal() (int64, error) {
	var sum int64
	for _, role := range []string{"client", "server"} {
		r, _, err := u.rss(role)
		if err != nil {
			return 0, err
		}
		sum += r
	}
	return sum, nil
}

// parallel runs f(0..n-1) on at most width goroutines.
func parallel(n, width int, f func(i int)) {
	var wg sync.WaitGroup
	next := atomic.Int64{}
	for range min(width, n) {
		wg.Go(func() {
			for {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				f(i)
			}
		})
	}
	wg.Wait()
}

// percentile returns the nearest-rank q-quantile (0 < q <= 1) of ds.
func percentile(ds []time.Duration, q float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	i := int(math.Ceil(q*float64(len(s)))) - 1
	return s[max(0, min(i, len(s)-1))]
}
