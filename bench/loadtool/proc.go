package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// procSpec says how to start one process of a system under test.
type procSpec struct {
	Role  string   `json:"role"`  // "client" or "server": which RSS column it counts in
	Argv  []string `json:"argv"`  // program and arguments
	Ready string   `json:"ready"` // host:port that accepts connections once it is up
}

// proc is a started process of a system under test.
type proc struct {
	spec procSpec
	cmd  *exec.Cmd
	log  string
	done chan struct{} // closed once cmd.Wait returned
}

// startProc starts spec with its output in logPath and waits until spec.Ready
// accepts connections. The process is killed if this program dies.
func startProc(spec procSpec, logPath string) (*proc, error) {
	if len(spec.Argv) == 0 {
		return nil, errors.New("empty argv")
	}
	f, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(spec.Argv[0], spec.Argv[1:]...)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true}
	if err := cmd.Start(); err != nil {
		f.Close()
		return nil, fmt.Errorf("start %s: %w", filepath.Base(spec.Argv[0]), err)
	}
	p := &proc{spec: spec, cmd: cmd, log: logPath, done: make(chan struct{})}
	go func() {
		cmd.Wait()
		f.Close()
		close(p.done)
	}()
	if spec.Ready != "" {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		for {
			if err := waitPort(spec.Ready, 100*time.Millisecond); err == nil {
				break
			}
			select {
			case <-p.done:
				return nil, fmt.Errorf("%s exited before listening on %s: %s", spec.Role, spec.Ready, tail(logPath))
			case <-ctx.Done():
				p.stop()
				return nil, fmt.Errorf("%s not listening on %s after 20s: %s", spec.Role, spec.Ready, tail(logPath))
			case <-time.After(50 * time.Millisecond):
			}
		}
	}
	return p, nil
}

// stop sends SIGTERM to the process (by PID), waits up to 5s, then SIGKILL.
func (p *proc) stop() {
	select {
	case <-p.done:
		return
	default:
	}
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(5 * time.Second):
		p.cmd.Process.Kill()
		<-p.done
	}
}

func (p *proc) pid() int { return p.cmd.Process.Pid }

// alive reports whether the process has not exited.
func (p *proc) alive() bool {
	select {
	case <-p.done:
		return false
	default:
		return true
	}
}

// tail returns the last lines of a log file, for error messages.
func tail(path string) string {
	b, _ := os.ReadFile(path)
	b = bytes.TrimSpace(b)
	if len(b) > 600 {
		b = b[len(b)-600:]
	}
	if len(b) == 0 {
		return "(no output)"
	}
	return string(b)
}

// cpuSeconds returns utime+stime of pid from /proc/PID/stat, all threads, in seconds.
func cpuSeconds(pid int, clkTck float64) (float64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	return parseStatCPU(b, clkTck)
}

// parseStatCPU extracts utime (field 14) and stime (field 15) from the
// contents of /proc/PID/stat. The command name (field 2) may hold spaces and
// parentheses, so fields are counted after its last ')'.
func parseStatCPU(b []byte, clkTck float64) (float64, error) {
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, errors.New("stat: no command field")
	}
	f := strings.Fields(string(b[i+1:]))
	// f[0] is field 3 (state); utime is field 14 -> f[11], stime f[12].
	if len(f) < 13 {
		return 0, errors.New("stat: short")
	}
	u, err1 := strconv.ParseUint(f[11], 10, 64)
	s, err2 := strconv.ParseUint(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, errors.New("stat: bad utime/stime")
	}
	return float64(u+s) / clkTck, nil
}

// rssBytes returns VmRSS of pid from /proc/PID/status.
func rssBytes(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	return parseVmRSS(b)
}

func parseVmRSS(b []byte) (int64, error) {
	for line := range strings.SplitSeq(string(b), "\n") {
		rest, ok := strings.CutPrefix(line, "VmRSS:")
		if !ok {
			continue
		}
		f := strings.Fields(rest)
		if len(f) != 2 || f[1] != "kB" {
			return 0, fmt.Errorf("status: bad VmRSS line %q", line)
		}
		kb, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil {
			return 0, fmt.Errorf("status: bad VmRSS line %q", line)
		}
		return kb * 1024, nil
	}
	return 0, errors.New("status: no VmRSS")
}

// machineCPU returns the busy CPU seconds of the whole machine since boot
// (all CPUs, everything but idle and iowait), from /proc/stat.
func machineCPU(clkTck float64) (float64, error) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, err
	}
	return parseMachineCPU(b, clkTck)
}

func parseMachineCPU(b []byte, clkTck float64) (float64, error) {
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	if len(f) < 9 || f[0] != "cpu" {
		return 0, errors.New("stat: no cpu line")
	}
	var busy uint64
	// user nice system idle iowait irq softirq steal [guest guest_nice]:
	// guest time is already counted in user.
	for i, v := range f[1:9] {
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			return 0, errors.New("stat: bad cpu line")
		}
		if i != 3 && i != 4 {
			busy += n
		}
	}
	return float64(busy) / clkTck, nil
}
