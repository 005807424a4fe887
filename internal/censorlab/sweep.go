package censorlab

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// The budget/cap sweep (issue 14): each system carries one long download
// behind a freeze box (ByteBudget) at Limit bytes and a connection cap
// (ConnCount) at Max, every byte checked, for every Limit × Max. It
// measures what a table of scenarios cannot: whether a transport finds
// its way through limits it was not told about, and at what cost in
// connections and handshakes.

// SweepPoint is one freeze budget and connection cap.
type SweepPoint struct {
	Budget   int64 // ByteBudget.Limit
	MaxConns int   // ConnCount.Max
}

// SweepConfig selects what Sweep runs.
type SweepConfig struct {
	Systems []System
	Points  []SweepPoint
	// Bytes is the download carried at each point. Default 32 MiB.
	Bytes int64
	// CoverChain is Config.CoverChain.
	CoverChain bool
	// Tries is how many times the download may start over (an application
	// retrying a connection that froze or was cut). Default 20.
	Tries int
	// Idle is how long the application waits on a connection that moves
	// nothing before it gives up and starts over; default 10s, stretched by
	// Budget. It must exceed the time an XHTTP client takes to find a
	// frozen connection and resume elsewhere (a stall window of 1.5–3 s and
	// a probe of at least 3 s), as a browser's patience does.
	Idle time.Duration
	// Parallel points at once. Default 1: points compete for the CPU, and
	// the figures are times.
	Parallel int
}

// SweepResult is one point of one system.
type SweepResult struct {
	System     string  `json:"system"`
	Budget     int64   `json:"budget"`
	MaxConns   int     `json:"max_conns"`
	Bytes      int64   `json:"bytes"`
	Delivered  int64   `json:"delivered"` // intact bytes of the attempt that got furthest
	OK         bool    `json:"ok"`        // one attempt delivered every byte intact
	Seconds    float64 `json:"seconds"`
	Tries      int     `json:"tries"`
	Conns      int     `json:"conns"`      // TCP connections to the server
	Handshakes int     `json:"handshakes"` // TLS ClientHellos to the server
	// PeakConns and PeakHandshakes are the most connection opens and TLS
	// handshakes to the server in any window of the conn-rate rule (10 s);
	// RateOK is set when neither is above that rule's limits. The sweep
	// runs no rate rule: it counts what one would see.
	PeakConns      int    `json:"peak_conns_10s"`
	PeakHandshakes int    `json:"peak_handshakes_10s"`
	RateOK         bool   `json:"rate_ok"`
	Rules          string `json:"rules,omitempty"`
	Detail         string `json:"detail,omitempty"` // the reason of the first event that is not the freeze
	Err            string `json:"err,omitempty"`
}

// PerMiB returns connections and handshakes per MiB carried.
func (r SweepResult) PerMiB() (conns, handshakes float64) {
	mib := float64(r.Bytes) / (1 << 20)
	return float64(r.Conns) / mib, float64(r.Handshakes) / mib
}

// Sweep starts the lab and runs every point of every system.
func Sweep(ctx context.Context, cfg SweepConfig, each func(SweepResult)) ([]SweepResult, error) {
	if cfg.Bytes == 0 {
		cfg.Bytes = 32 << 20
	}
	if cfg.Tries == 0 {
		cfg.Tries = 20
	}
	if cfg.Idle == 0 {
		cfg.Idle = DefaultIdle
	}
	cfg.Parallel = max(cfg.Parallel, 1)
	l, err := start(ctx, Config{Systems: cfg.Systems, Log: slog.New(slog.DiscardHandler), CoverChain: cfg.CoverChain})
	if err != nil {
		return nil, err
	}
	defer l.close()
	type job struct {
		sys System
		p   SweepPoint
	}
	var jobs []job
	for _, sys := range cfg.Systems {
		for _, p := range cfg.Points {
			jobs = append(jobs, job{sys, p})
		}
	}
	return runParallel(ctx, cfg.Parallel, jobs, func(j job) SweepResult {
		return l.sweepPoint(ctx, j.sys, j.p, cfg)
	}, each)
}

// sweepPoint runs one download of cfg.Bytes behind the point's boxes.
func (l *Lab) sweepPoint(ctx context.Context, sys System, p SweepPoint, cfg SweepConfig) SweepResult {
	r := SweepResult{System: sys.Name, Budget: p.Budget, MaxConns: p.MaxConns, Bytes: cfg.Bytes}
	watch := &rateWatch{}
	c := NewCensor(&ByteBudget{Networks: []netip.Prefix{l.path.ServerNet}, Limit: p.Budget}, &ConnCount{Max: p.MaxConns}, watch)
	c.Listen, c.Dial = l.path.RelayListen, l.path.RouterDial
	defer c.Close()
	inst := l.instances[sys.Name]
	var via netip.AddrPort
	err := l.path.InRouter(func() (err error) {
		via, err = c.ExposeTCP(ctx, inst.Server)
		return err
	})
	if err != nil {
		r.Err = err.Error()
		return r
	}
	defer inst.endCell(via)
	start := time.Now()
	idle := Budget(cfg.Idle)
	for r.Tries < cfg.Tries && !r.OK && ctx.Err() == nil {
		r.Tries++
		var conn net.Conn
		err = l.path.InClient(func() (err error) {
			conn, err = inst.Dial(ctx, via, l.Site.Addr)
			return err
		})
		if err == nil {
			var got int64
			got, err = fetchDown(ctx, conn, l.Site.ClientTLS(), cfg.Bytes, idle)
			r.Delivered = max(r.Delivered, got)
			r.OK = err == nil && got == cfg.Bytes
		}
		if err != nil {
			r.Err = err.Error()
		}
	}
	if r.OK {
		r.Err = ""
	}
	r.Seconds = time.Since(start).Seconds()
	c.Settle()
	r.Conns = int(c.nextID.Load())
	r.Handshakes, r.PeakConns, r.PeakHandshakes = watch.counts()
	pairMax, _, hsMax, _, _ := (&ConnRate{}).defaults()
	r.RateOK = r.PeakConns <= pairMax && r.PeakHandshakes <= hsMax
	var rules []string
	for _, e := range c.Events() {
		if r.Detail == "" && e.Rule != "byte-budget" {
			r.Detail = e.Reason
		}
		if !slices.Contains(rules, e.Rule) {
			rules = append(rules, e.Rule)
		}
	}
	r.Rules = strings.Join(rules, "+")
	return r
}

// fetchDown downloads n bytes of the site's down stream over conn (TLS to
// the site inside it) and returns how many arrived intact. A read that
// waits idle closes conn: deadlines alone do not reach every conn (a
// Vision conn reading the socket directly after the inner handshake).
func fetchDown(ctx context.Context, conn net.Conn, cfg *tls.Config, n int64, idle time.Duration) (int64, error) {
	watchdog := time.AfterFunc(idle, func() { conn.Close() })
	defer watchdog.Stop()
	tc := tls.Client(&idleConn{Conn: progressConn{conn, func() { watchdog.Reset(idle) }}, idle: idle}, cfg)
	defer tc.Close()
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	if err := tc.HandshakeContext(ctx); err != nil {
		return 0, fmt.Errorf("inner TLS handshake: %w", err)
	}
	var got atomic.Int64
	err := download(tc, n, &got)
	if err == nil && got.Load() != n {
		err = io.ErrUnexpectedEOF
	}
	if err != nil {
		return got.Load(), fmt.Errorf("download: %w", err)
	}
	return got.Load(), nil
}

// progressConn calls moved after every read that returned bytes.
type progressConn struct {
	net.Conn
	moved func()
}

func (c progressConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if n > 0 {
		c.moved()
	}
	return n, err
}

// rateWatch is a middlebox that only counts: the flows opening with a TLS
// ClientHello (the handshakes a handshake-rate rule counts), and the most
// connection opens and handshakes per client→server pair in any window of
// the conn-rate rule's length, which it compares with that rule's limits
// (ConnRate's defaults) without acting on them.
type rateWatch struct {
	mu        sync.Mutex
	seen      map[uint64]bool         // guarded by mu; flows already judged
	opens     map[pairKey][]time.Time // guarded by mu; opens per pair in the window
	hellos    map[pairKey][]time.Time // guarded by mu; handshakes per pair in the window
	n         int                     // guarded by mu; handshakes in all
	peakOpens int                     // guarded by mu
	peakHS    int                     // guarded by mu
}

func (*rateWatch) Name() string { return "rate-watch" }

func (w *rateWatch) Close(f *Flow) {
	w.mu.Lock()
	delete(w.seen, f.ID)
	w.mu.Unlock()
}

func (w *rateWatch) window() time.Duration {
	_, _, _, window, _ := (&ConnRate{}).defaults()
	return window
}

func (w *rateWatch) Open(f *Flow) Verdict {
	if f.Network != "tcp" {
		return Verdict{}
	}
	k := pairKey{f.Client.Addr(), f.Server}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.opens == nil {
		w.opens, w.hellos, w.seen = map[pairKey][]time.Time{}, map[pairKey][]time.Time{}, map[uint64]bool{}
	}
	w.opens[k] = slide(w.opens[k], time.Now(), w.window())
	w.peakOpens = max(w.peakOpens, len(w.opens[k]))
	return Verdict{}
}

func (w *rateWatch) Data(f *Flow, dir Dir, _ []byte) Verdict {
	if dir != Up || f.Network != "tcp" {
		return Verdict{}
	}
	w.mu.Lock()
	done := w.seen[f.ID] || w.seen == nil
	w.mu.Unlock()
	if done {
		return Verdict{}
	}
	_, complete, err := PeekHello(f.Seen(Up))
	if !complete {
		return Verdict{}
	}
	k := pairKey{f.Client.Addr(), f.Server}
	w.mu.Lock()
	defer w.mu.Unlock()
	w.seen[f.ID] = true
	if err == nil {
		w.n++
		w.hellos[k] = slide(w.hellos[k], time.Now(), w.window())
		w.peakHS = max(w.peakHS, len(w.hellos[k]))
	}
	return Verdict{}
}

// counts returns the handshakes in all and the peaks per window.
func (w *rateWatch) counts() (handshakes, peakOpens, peakHS int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.n, w.peakOpens, w.peakHS
}

// SweepGrid is issue 14's grid: freezes at 4, 8, 16, 32 and 64 KiB, caps
// of 2, 3, 4 and 8 connections.
func SweepGrid() []SweepPoint {
	var ps []SweepPoint
	for _, b := range []int64{4 << 10, 8 << 10, 16 << 10, 32 << 10, 64 << 10} {
		for _, m := range []int{2, 3, 4, 8} {
			ps = append(ps, SweepPoint{Budget: b, MaxConns: m})
		}
	}
	return ps
}

// PrintSweep writes results as a table.
func PrintSweep(w io.Writer, results []SweepResult) {
	fmt.Fprintf(w, "%-14s %7s %4s %-4s %12s %8s %5s %7s %9s %9s %9s %-5s  %s\n",
		"system", "freeze", "cap", "ok", "delivered", "seconds", "tries", "conns", "conns/MiB", "hs/MiB", "peak/10s", "rate", "rules / error")
	for _, r := range results {
		ok := "yes"
		if !r.OK {
			ok = "NO"
		}
		c, h := r.PerMiB()
		note := r.Rules
		if r.Detail != "" {
			note += " (" + r.Detail + ")"
		}
		if r.Err != "" {
			note += " " + r.Err
		}
		rate := "under"
		if !r.RateOK {
			rate = "OVER"
		}
		fmt.Fprintf(w, "%-14s %6dK %4d %-4s %12d %8.1f %5d %7d %9.1f %9.1f %9d %-5s  %s\n",
			r.System, r.Budget>>10, r.MaxConns, ok, r.Delivered, r.Seconds, r.Tries, r.Conns, c, h,
			max(r.PeakConns, r.PeakHandshakes), rate, note)
	}
}
