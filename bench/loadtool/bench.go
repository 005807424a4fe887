package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"math"
	"net/netip"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"time"
)

// system is one entry of the -systems file: a name, a description, the
// SOCKS5 address to measure through (empty: direct to the sink) and the
// processes to start, in order, for each repetition.
type system struct {
	Name  string     `json:"name"`
	Desc  string     `json:"desc,omitempty"`
	Socks string     `json:"socks,omitempty"`
	Procs []procSpec `json:"procs,omitempty"`
}

// benchConfig is the load, recorded in the JSON next to the figures.
type benchConfig struct {
	Bytes       uint64   `json:"bytes"`         // per throughput test, split over the streams
	Streams     int      `json:"streams"`       // parallel streams of the multi-stream tests
	Reps        int      `json:"reps"`          // repetitions; figures are medians
	TTFBConns   int      `json:"ttfb_conns"`    // new connections timed for TTFB
	Echoes      int      `json:"echoes"`        // round trips timed for RTT
	IdleConns   int      `json:"idle_conns"`    // idle connections opened
	IdleWaitSec float64  `json:"idle_wait_sec"` // idle time before RSS is read
	Tests       []string `json:"tests"`
}

var allTests = []string{"idle", "ttfb", "rtt", "plain1", "plainN", "tls1", "tlsN"}

// running holds the processes started so far, so a signal can stop them.
var running struct {
	sync.Mutex
	procs []*proc
}

func runBench(args []string) error {
	fs := flag.NewFlagSet("bench", flag.ExitOnError)
	systemsFile := fs.String("systems", "", "JSON file: {\"systems\": [{name, desc, socks, procs: [{role, argv, ready}]}]}")
	plain := fs.String("plain", "", "plain sink address (ip:port)")
	tlsAddr := fs.String("tls", "", "inner-TLS sink address (ip:port)")
	var cfg benchConfig
	fs.Uint64Var(&cfg.Bytes, "bytes", 1<<30, "bytes per throughput test")
	fs.IntVar(&cfg.Streams, "streams", 8, "streams of the multi-stream tests")
	fs.IntVar(&cfg.Reps, "reps", 3, "repetitions (figures are medians)")
	fs.IntVar(&cfg.TTFBConns, "ttfb", 500, "new connections for time to first byte")
	fs.IntVar(&cfg.Echoes, "echo", 1000, "echo round trips")
	fs.IntVar(&cfg.IdleConns, "idle", 2000, "idle connections")
	idleWait := fs.Duration("idle-wait", 3*time.Second, "how long the idle connections sit before RSS is read")
	tests := fs.String("tests", strings.Join(allTests, ","), "tests to run")
	jsonOut := fs.String("json", "", "write results as JSON to this file")
	logDir := fs.String("logs", os.TempDir(), "directory for the processes' output")
	clkTck := fs.Float64("clk-tck", 100, "clock ticks per second of /proc/PID/stat (getconf CLK_TCK)")
	testTimeout := fs.Duration("test-timeout", 0, "bound on each test (0: 60s + 10 s per 100 MB)")
	sinkPID := fs.Int("sink-pid", 0, "PID of the sink, so its CPU is not counted as other processes' load")
	ratioOf := fs.String("ratio-of", "burrow", "systems whose names start with this get ratios")
	ratioTo := fs.String("ratio-to", "xray,forwarder:_MBps", "systems the ratios are taken to: NAME or NAME:KEY-SUFFIX, comma-separated")
	fs.Parse(args)

	cfg.IdleWaitSec = idleWait.Seconds()
	cfg.Tests = strings.Split(*tests, ",")
	for _, t := range cfg.Tests {
		if !contains(allTests, t) {
			return fmt.Errorf("unknown test %q (have %s)", t, strings.Join(allTests, ","))
		}
	}
	if cfg.Reps < 1 || cfg.Streams < 1 {
		return errors.New("-reps and -streams must be at least 1")
	}
	if *testTimeout == 0 {
		*testTimeout = 60*time.Second + time.Duration(cfg.Bytes/100e6)*10*time.Second
	}
	var tg target
	var err error
	if tg.plain, err = netip.ParseAddrPort(*plain); err != nil {
		return fmt.Errorf("-plain: %w", err)
	}
	if tg.tls, err = netip.ParseAddrPort(*tlsAddr); err != nil {
		return fmt.Errorf("-tls: %w", err)
	}
	systems, err := loadSystems(*systemsFile)
	if err != nil {
		return err
	}

	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	go func() {
		s := <-sigs
		fmt.Fprintf(os.Stderr, "loadtool bench: %v: stopping\n", s)
		stopAll()
		os.Exit(130)
	}()
	defer stopAll()

	rep := newReport(cfg, systems)
	for r := 1; r <= cfg.Reps; r++ {
		for i, sys := range systems {
			figs, errs := runSystem(sys, r, cfg, tg, *logDir, *clkTck, *testTimeout, *sinkPID)
			rep.Systems[i].Reps = append(rep.Systems[i].Reps, figs)
			rep.Systems[i].Errors = append(rep.Systems[i].Errors, errs...)
		}
	}
	rep.finish(splitList(*ratioOf), splitList(*ratioTo))
	rep.printTable(os.Stdout)
	if *jsonOut != "" {
		if err := os.MkdirAll(filepath.Dir(*jsonOut), 0o755); err != nil {
			return err
		}
		b, err := json.MarshalIndent(rep, "", "  ")
		if err != nil {
			return err
		}
		if err := os.WriteFile(*jsonOut, append(b, '\n'), 0o644); err != nil {
			return err
		}
		fmt.Printf("\nJSON: %s\n", *jsonOut)
	}
	return nil
}

func loadSystems(path string) ([]system, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("-systems: %w", err)
	}
	var f struct {
		Systems []system `json:"systems"`
	}
	dec := json.NewDecoder(strings.NewReader(string(b)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&f); err != nil {
		return nil, fmt.Errorf("-systems %s: %w", path, err)
	}
	if len(f.Systems) == 0 {
		return nil, fmt.Errorf("-systems %s: no systems", path)
	}
	for _, s := range f.Systems {
		if s.Name == "" {
			return nil, fmt.Errorf("-systems %s: a system without a name", path)
		}
		for _, p := range s.Procs {
			if p.Role != "client" && p.Role != "server" {
				return nil, fmt.Errorf("-systems %s: %s: role %q, want client or server", path, s.Name, p.Role)
			}
		}
	}
	return f.Systems, nil
}

func stopAll() {
	running.Lock()
	defer running.Unlock()
	for i := len(running.procs) - 1; i >= 0; i-- {
		running.procs[i].stop()
	}
	running.procs = nil
}

// runSystem starts sys, runs the tests of one repetition and stops it. It
// returns the figures it got and one message per failure.
func runSystem(sys system, rep int, cfg benchConfig, tg target, logDir string, clkTck float64, timeout time.Duration, sinkPID int) (map[string]float64, []string) {
	figs := map[string]float64{}
	var errs []string
	fail := func(what string, err error) {
		msg := fmt.Sprintf("rep %d: %s: %v", rep, what, err)
		errs = append(errs, msg)
		progress(sys.Name, rep, "FAILED %s: %v", what, err)
	}
	u := &under{socks: sys.Socks, clkTck: clkTck}
	for _, spec := range sys.Procs {
		log := filepath.Join(logDir, fmt.Sprintf("%s-%s-rep%d.log", sys.Name, spec.Role, rep))
		p, err := startProc(spec, log)
		if err != nil {
			fail("start "+spec.Role, err)
			stopAll()
			return figs, errs
		}
		running.Lock()
		running.procs = append(running.procs, p)
		running.Unlock()
		u.procs = append(u.procs, p)
	}
	defer stopAll()

	// Smoke test: one small download end to end, before timing anything.
	smoke := func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		defer cancel()
		c, err := u.open(ctx, tg, false, modeDownload, 64<<10)
		if err != nil {
			return err
		}
		defer c.Close()
		return readN(c, make([]byte, 64<<10), 64<<10)
	}
	var err error
	for range 3 { // a client may connect to its server lazily
		if err = smoke(); err == nil {
			break
		}
		time.Sleep(500 * time.Millisecond)
	}
	if err != nil {
		fail("smoke test", err)
		return figs, errs
	}

	for _, test := range cfg.Tests {
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		switch test {
		case "idle":
			r, err := u.idle(ctx, tg, cfg.IdleConns, time.Duration(cfg.IdleWaitSec*float64(time.Second)))
			if err != nil {
				fail("idle", err)
				break
			}
			figs["idle_opened"] = float64(r.opened)
			figs["idle_held"] = float64(r.held)
			if len(u.procs) > 0 {
				total := max(r.rssClient, 0) + max(r.rssServ, 0)
				if r.rssClient >= 0 {
					figs["idle_rss_client_MiB"] = mib(r.rssClient)
				}
				if r.rssServ >= 0 {
					figs["idle_rss_server_MiB"] = mib(r.rssServ)
				}
				figs["idle_rss_total_MiB"] = mib(total)
				if r.opened > 0 {
					figs["idle_KiB_per_conn"] = float64(total-r.before) / 1024 / float64(r.opened)
				}
			}
			progress(sys.Name, rep, "idle: %d/%d held, RSS client %s server %s", r.held, cfg.IdleConns, mibStr(r.rssClient), mibStr(r.rssServ))
			time.Sleep(time.Second) // let the closes settle
		case "ttfb":
			ds, failed := u.ttfb(ctx, tg, cfg.TTFBConns)
			figs["ttfb_failed"] = float64(failed)
			if len(ds) == 0 {
				fail("ttfb", errors.New("no connection succeeded"))
				break
			}
			figs["ttfb_p50_ms"] = ms(percentile(ds, 0.50))
			figs["ttfb_p99_ms"] = ms(percentile(ds, 0.99))
			progress(sys.Name, rep, "ttfb: p50 %.2f ms p99 %.2f ms (%d failed)", figs["ttfb_p50_ms"], figs["ttfb_p99_ms"], failed)
		case "rtt":
			ds, err := u.rtt(ctx, tg, cfg.Echoes)
			if err != nil {
				fail("rtt", err)
				break
			}
			figs["rtt_p50_us"] = us(percentile(ds, 0.50))
			figs["rtt_p99_us"] = us(percentile(ds, 0.99))
			progress(sys.Name, rep, "rtt: p50 %.0f µs p99 %.0f µs", figs["rtt_p50_us"], figs["rtt_p99_us"])
		case "plain1", "plainN", "tls1", "tlsN":
			overTLS := strings.HasPrefix(test, "tls")
			streams := 1
			if strings.HasSuffix(test, "N") {
				streams = cfg.Streams
			}
			key := tputKey(overTLS, streams)
			m0, o0 := machineCPUOrNaN(clkTck), ownCPU(u, sinkPID)
			start := time.Now()
			mbps, cpu, err := u.throughput(ctx, tg, overTLS, streams, cfg.Bytes)
			if err != nil {
				fail(key, err)
				break
			}
			elapsed := time.Since(start).Seconds()
			m1, o1 := machineCPUOrNaN(clkTck), ownCPU(u, sinkPID)
			if share := ((m1 - m0) - (o1 - o0)) / (elapsed * float64(runtime.NumCPU())); !math.IsNaN(share) {
				figs[key+"_foreign_cpu_share"] = max(0, share)
			}
			figs[key+"_MBps"] = mbps
			msg := fmt.Sprintf("%s: %.0f MB/s", key, mbps)
			if len(u.procs) > 0 {
				figs[key+"_cpu_s_per_GiB"] = cpu
				msg += fmt.Sprintf(", %.2f CPU-s/GiB", cpu)
			}
			progress(sys.Name, rep, "%s", msg)
		}
		cancel()
		for _, p := range u.procs {
			if !p.alive() {
				fail(test, fmt.Errorf("%s process exited: %s", p.spec.Role, tail(p.log)))
				return figs, errs
			}
		}
	}
	return figs, errs
}

// ownCPU returns the CPU seconds used so far by the benchmark's own
// processes: the system under test, this load tool, and the sink (if its PID
// is known); NaN if one cannot be read.
func ownCPU(u *under, sinkPID int) float64 {
	sum, err := u.cpu()
	if err != nil {
		return math.NaN()
	}
	for _, pid := range []int{os.Getpid(), sinkPID} {
		if pid <= 0 {
			continue
		}
		c, err := cpuSeconds(pid, u.clkTck)
		if err != nil {
			return math.NaN()
		}
		sum += c
	}
	return sum
}

func machineCPUOrNaN(clkTck float64) float64 {
	c, err := machineCPU(clkTck)
	if err != nil {
		return math.NaN()
	}
	return c
}

func tputKey(overTLS bool, streams int) string {
	k := "plain"
	if overTLS {
		k = "tls"
	}
	return fmt.Sprintf("%s_x%d", k, streams)
}

func progress(name string, rep int, format string, args ...any) {
	fmt.Fprintf(os.Stderr, "%s [rep %d] %-10s %s\n", time.Now().Format("15:04:05"), rep, name, fmt.Sprintf(format, args...))
}

func ms(d time.Duration) float64 { return float64(d) / 1e6 }
func us(d time.Duration) float64 { return float64(d) / 1e3 }
func mib(b int64) float64        { return float64(b) / (1 << 20) }

func mibStr(b int64) string {
	if b < 0 {
		return "-"
	}
	return fmt.Sprintf("%.1f MiB", mib(b))
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func splitList(s string) []string {
	var out []string
	for _, x := range strings.Split(s, ",") {
		if x = strings.TrimSpace(x); x != "" {
			out = append(out, x)
		}
	}
	return out
}
