package main

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/burrow-vpn/burrow/internal/control/pgtest"
	"github.com/burrow-vpn/burrow/internal/coversite"
)

var (
	buildOnce sync.Once
	buildPath string
	buildErr  error
)

func TestMain(m *testing.M) {
	code := pgtest.Main(m) // m.Run, then stops the PostgreSQL of the control tests
	if buildPath != "" {
		os.RemoveAll(filepath.Dir(buildPath)) // the binary built for the run
	}
	os.Exit(code)
}

// burrowBinary builds the real burrow binary once per test run, for tests
// that need a separate process (signals, kill -9, concurrent CLI use).
func burrowBinary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "burrow-bin-")
		if err != nil {
			buildErr = err
			return
		}
		buildPath = filepath.Join(dir, "burrow")
		out, err := exec.Command("go", "build", "-o", buildPath, ".").CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return buildPath
}

// initBinaryServer starts a local cover site for the test and runs the real
// binary's `server init` against it (private egress allowed, for the test's
// loopback site). It returns the data dir, the listen port and the owner's link.
func initBinaryServer(t *testing.T, bin string) (data, port, link string) {
	t.Helper()
	cover, err := coversite.Start("127.0.0.1:0", "cover.test")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cover.Close() })
	data = filepath.Join(t.TempDir(), "srv")
	port, _ = freePort()
	out, err := exec.Command(bin, "server", "init", "--data", data, "--listen", "127.0.0.1:"+port,
		"--cover", cover.Addr, "--sni", "cover.test", "--public-addr", "127.0.0.1", "--allow-private-egress").Output()
	if err != nil {
		t.Fatalf("server init: %v", err)
	}
	return data, port, strings.TrimSpace(strings.SplitN(string(out), "\n", 2)[0])
}

// TestServerSIGTERMAndRestart: a real server process stops cleanly on
// SIGTERM, and a restart keeps config and users (the old link still works).
func TestServerSIGTERMAndRestart(t *testing.T) {
	bin := burrowBinary(t)
	site := testSite(t)
	data, port, link := initBinaryServer(t, bin)
	socks := startClient(t, link, false).socks
	target := fmt.Sprintf("http://%s/data?n=100000", site)

	for round := 1; round <= 2; round++ {
		var stderr bytes.Buffer
		srv := exec.Command(bin, "server", "run", "--data", data)
		srv.Stderr = &stderr
		if err := srv.Start(); err != nil {
			t.Fatal(err)
		}
		if err := waitListening(t.Context(), "127.0.0.1:"+port); err != nil {
			srv.Process.Kill()
			t.Fatalf("round %d: server did not listen: %v\n%s", round, err, stderr.String())
		}
		if _, n, err := get("socks5://"+socks, target); err != nil || n != 100000 {
			t.Errorf("round %d: fetch = %d bytes, %v; want 100000", round, n, err)
		}
		srv.Process.Signal(syscall.SIGTERM)
		done := make(chan error, 1)
		go func() { done <- srv.Wait() }()
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("round %d: server exit after SIGTERM: %v\n%s", round, err, stderr.String())
			}
		case <-time.After(15 * time.Second):
			srv.Process.Kill()
			t.Fatalf("round %d: server did not stop within 15s of SIGTERM", round)
		}
		if !strings.Contains(stderr.String(), "burrow server stopped") {
			t.Errorf("round %d: no clean-stop message in:\n%s", round, stderr.String())
		}
	}
	// The traffic of both rounds was flushed at shutdown.
	list, err := exec.Command(bin, "user", "list", "--data", data).Output()
	if err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(bytes.NewReader(list))
	found := false
	for sc.Scan() {
		if strings.HasPrefix(sc.Text(), "owner ") && !strings.Contains(sc.Text(), " 0 B ") {
			found = true
		}
	}
	if !found {
		t.Errorf("user list after two runs shows no traffic for owner:\n%s", list)
	}
}

func TestServerRunErrors(t *testing.T) {
	bin := burrowBinary(t)
	cover, err := coversite.Start("127.0.0.1:0", "cover.test")
	if err != nil {
		t.Fatal(err)
	}
	data := filepath.Join(t.TempDir(), "srv")
	busy, _ := freePort()
	if out, err := exec.Command(bin, "server", "init", "--data", data, "--listen", "127.0.0.1:"+busy,
		"--cover", cover.Addr, "--sni", "cover.test", "--public-addr", "127.0.0.1").CombinedOutput(); err != nil {
		t.Fatalf("init: %v\n%s", err, out)
	}
	tests := []struct {
		name  string
		setup func() func()
		want  string
	}{
		{"missing data dir", func() func() { return func() {} }, "run `burrow server init"},
		{"port in use", func() func() {
			l, err := listenTCP("127.0.0.1:" + busy)
			if err != nil {
				t.Fatal(err)
			}
			return func() { l.Close() }
		}, "already in use"},
		{"cover down", func() func() { cover.Close(); return func() {} }, "cover"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			undo := tt.setup()
			defer undo()
			dir := data
			if tt.name == "missing data dir" {
				dir = filepath.Join(t.TempDir(), "nothing-here")
			}
			cmd := exec.Command(bin, "server", "run", "--data", dir)
			out, err := runWithTimeout(cmd, 20*time.Second)
			if err == nil || !strings.Contains(string(out), tt.want) {
				t.Errorf("server run (%s): err %v, output %q; want a failure mentioning %q", tt.name, err, out, tt.want)
			}
		})
	}
}

func runWithTimeout(cmd *exec.Cmd, d time.Duration) ([]byte, error) {
	var buf bytes.Buffer
	cmd.Stdout, cmd.Stderr = &buf, &buf
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		return buf.Bytes(), err
	case <-time.After(d):
		cmd.Process.Kill()
		<-done
		return buf.Bytes(), fmt.Errorf("still running after %v", d)
	}
}

// TestServerRunSideListenerErrors: a side service (admin API, metrics,
// subscriptions) that cannot listen stops `server run` with a message that
// names it and says why, a non-zero exit and no panic; the server never
// claimed to be running and left no admin socket behind.
func TestServerRunSideListenerErrors(t *testing.T) {
	bin := burrowBinary(t)
	data, port, _ := initBinaryServer(t, bin)
	busy, err := listenTCP("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	held := busy.Addr().String()
	tests := []struct {
		flag, value string
		want        string
	}{
		{"--metrics", held, "--metrics " + held + ": the port is already in use"},
		{"--subscribe", held, "--subscribe " + held + ": the port is already in use"},
		{"--admin-listen", held, "--admin-listen " + held + ": the port is already in use"},
		{"--panel", held, "--panel " + held + ": the port is already in use"},
		{"--panel", "0.0.0.0:1", "--panel: only loopback addresses"},
		{"--admin-socket", filepath.Join(t.TempDir(), "no-such-dir", "admin.sock"), "no-such-dir does not exist"},
	}
	for _, tt := range tests {
		t.Run(tt.flag+" "+tt.value, func(t *testing.T) {
			out, err := runWithTimeout(exec.Command(bin, "server", "run", "--data", data, tt.flag, tt.value), 20*time.Second)
			var ee *exec.ExitError
			if !errors.As(err, &ee) || ee.ExitCode() != 1 {
				t.Errorf("server run %s %s: %v; want exit status 1\n%s", tt.flag, tt.value, err, out)
			}
			for _, bad := range []string{"panic", "goroutine ", "burrow server running"} {
				if strings.Contains(string(out), bad) {
					t.Errorf("server run %s: output has %q:\n%s", tt.flag, bad, out)
				}
			}
			if !strings.Contains(string(out), tt.want) {
				t.Errorf("server run %s: output %q; want it to say %q", tt.flag, out, tt.want)
			}
			if _, err := os.Lstat(filepath.Join(data, "admin.sock")); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("server run %s: admin.sock left behind (stat: %v)", tt.flag, err)
			}
			// The main port is free again.
			l, err := listenTCP("127.0.0.1:" + port)
			if err != nil {
				t.Errorf("server run %s: listen port still held after exit: %v", tt.flag, err)
			} else {
				l.Close()
			}
		})
	}
}
