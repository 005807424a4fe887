package bench

// relay_cpu_test.go measures what carrying bytes costs each party in CPU,
// with the exit (`burrow server run`) and the relay (`burrow relay run`)
// in processes of their own, built from this tree. BenchmarkRelay runs
// every party in one process on one machine, so its throughput through a
// relay is the machine's CPU divided among all of them; on separate
// machines a relay carries what its own CPU allows. This benchmark reads
// each process's CPU time (/proc/PID/stat) over downloads of -cpubytes per
// stream from a sink in this process, first straight to an exit, then
// through a relay to it:
//
//	exit-cpu-ns/B          the exit, clients direct
//	relay-cpu-ns/B         the relay
//	exit-relayed-cpu-ns/B  the exit behind the relay
//	direct-MB/s            the direct download's throughput here
//	relay-core-MB/s        what the relay carries on one core of this
//	                       machine: 1000 / relay-cpu-ns/B
//	relay-core/direct      the two divided: above 1, one core of relay keeps
//	                       up with the whole direct path on this machine
//
// Run:
//
//	go test -run XXX -bench RelayCPU -benchtime 1x ./bench/

import (
	"encoding/binary"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/burrow-vpn/burrow/internal/client"
	"github.com/burrow-vpn/burrow/internal/links"
)

var cpuBytes = flag.Int64("cpubytes", 64<<20, "bytes per stream BenchmarkRelayCPU downloads")

func BenchmarkRelayCPU(b *testing.B) {
	bin := buildBurrow(b)
	sink := startSink(b)
	link, viaRelay, exitData, relayData := exitAndRelay(b, bin)

	for _, streams := range []int{1, 8} {
		b.Run("streams="+strconv.Itoa(streams), func(b *testing.B) {
			var exitCPU, relayCPU, exitRelayedCPU, directMBs float64
			for b.Loop() {
				exit := startBurrow(b, bin, "burrow server running", "server", "run", "--data", exitData)
				cpu, mbs := download(b, link, sink, streams, exit)
				exit.stop(b)
				exitCPU, directMBs = cpu[0], mbs

				exit = startBurrow(b, bin, "burrow server running", "server", "run", "--data", exitData)
				rl := startBurrow(b, bin, "burrow relay running", "relay", "run", "--data", relayData)
				cpu, _ = download(b, &viaRelay, sink, streams, rl, exit)
				rl.stop(b)
				exit.stop(b)
				relayCPU, exitRelayedCPU = cpu[0], cpu[1]
			}
			b.ReportMetric(exitCPU, "exit-cpu-ns/B")
			b.ReportMetric(relayCPU, "relay-cpu-ns/B")
			b.ReportMetric(exitRelayedCPU, "exit-relayed-cpu-ns/B")
			b.ReportMetric(directMBs, "direct-MB/s")
			b.ReportMetric(1000/relayCPU, "relay-core-MB/s")
			b.ReportMetric(1000/relayCPU/directMBs, "relay-core/direct")
		})
	}
}

// download fetches -cpubytes on each of streams connections through link
// (after a warm-up) and returns, per process of procs, its CPU time per
// byte carried, and the throughput in MB/s.
func download(b *testing.B, link *links.VLESS, sink string, streams int, procs ...*burrowProc) ([]float64, float64) {
	b.Helper()
	tun, err := client.NewTunnel(link, client.TunnelOptions{NoFallback: true})
	if err != nil {
		b.Fatal(err)
	}
	defer tun.Close()
	if err := fetch(tun, sink, 1<<20); err != nil {
		b.Fatalf("warm-up download: %v\n%s", err, logsOf(procs))
	}
	before := make([]time.Duration, len(procs))
	for i, p := range procs {
		before[i] = cpuOf(b, p.cmd.Process.Pid)
	}
	start := time.Now()
	errs := make(chan error, streams)
	var wg sync.WaitGroup
	for range streams {
		wg.Go(func() { errs <- fetch(tun, sink, *cpuBytes) })
	}
	wg.Wait()
	took := time.Since(start)
	close(errs)
	for err := range errs {
		if err != nil {
			b.Fatalf("download: %v\n%s", err, logsOf(procs))
		}
	}
	total := float64(*cpuBytes) * float64(streams)
	out := make([]float64, len(procs))
	for i, p := range procs {
		out[i] = float64(cpuOf(b, p.cmd.Process.Pid)-before[i]) / total
	}
	return out, total / took.Seconds() / 1e6
}

// startSink runs a download server on loopback until the benchmark ends:
// a client sends 8 bytes (big endian, how many it wants) and reads them.
func startSink(b *testing.B) string {
	b.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Go(func() {
				defer c.Close()
				var nb [8]byte
				if _, err := io.ReadFull(c, nb[:]); err != nil {
					return
				}
				buf := make([]byte, 64<<10)
				for left := int64(binary.BigEndian.Uint64(nb[:])); left > 0; {
					k, err := c.Write(buf[:min(left, int64(len(buf)))])
					left -= int64(k)
					if err != nil {
						return
					}
				}
			})
		}
	})
	b.Cleanup(func() { ln.Close(); wg.Wait() })
	return ln.Addr().String()
}

// cpuOf returns the CPU time (user and system) process pid has used.
func cpuOf(b *testing.B, pid int) time.Duration {
	b.Helper()
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		b.Fatalf("CPU time of %d (this benchmark needs Linux /proc): %v", pid, err)
	}
	// The fields after the command name (which may hold spaces) in
	// parentheses: utime and stime are the 12th and 13th, in clock ticks.
	_, rest, ok := strings.Cut(string(raw), ") ")
	f := strings.Fields(rest)
	if !ok || len(f) < 13 {
		b.Fatalf("/proc/%d/stat: %q", pid, raw)
	}
	ut, err1 := strconv.ParseInt(f[11], 10, 64)
	st, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		b.Fatalf("/proc/%d/stat: %q", pid, raw)
	}
	return time.Duration(ut+st) * time.Second / clockTicks
}

// clockTicks is the kernel's USER_HZ, the unit of /proc/PID/stat's times
// (100 on every Linux architecture Go runs on).
const clockTicks = 100
