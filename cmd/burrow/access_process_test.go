package main

import (
	"bytes"
	"context"
	"fmt"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/burrow-vpn/burrow/internal/access"
	"github.com/burrow-vpn/burrow/internal/server"
)

// storedTraffic reads a user's counters straight from the SQLite file.
func storedTraffic(t *testing.T, data, name string) access.Traffic {
	t.Helper()
	tr, err := readStoredTraffic(data, name)
	if err != nil {
		t.Fatal(err)
	}
	return tr
}

func readStoredTraffic(data, name string) (access.Traffic, error) {
	st, err := access.OpenSQLite(filepath.Join(data, server.StoreFile))
	if err != nil {
		return access.Traffic{}, err
	}
	defer st.Close()
	u, err := st.UserByName(context.Background(), name)
	if err != nil {
		return access.Traffic{}, err
	}
	return access.Traffic{Up: u.BytesUp, Down: u.BytesDown}, nil
}

// waitStoredDown polls the SQLite file (the store is shared between
// processes; the running server keeps writing to it) until the user's
// stored download counter reaches down, and returns the counters. It gives
// up after a deadline far longer than the flush interval.
func waitStoredDown(data, name string, down int64) (access.Traffic, time.Duration, error) {
	const budget = 60 * time.Second
	start := time.Now()
	for {
		got, err := readStoredTraffic(data, name)
		if err == nil && got.Down >= down {
			return got, time.Since(start), nil
		}
		if time.Since(start) > budget {
			return got, budget, fmt.Errorf("no flush within %v: stored %+v (%v), want >= %d down", budget, got, err, down)
		}
		time.Sleep(100 * time.Millisecond) // polling interval
	}
}

// TestAccessCountersSurviveKill9 runs the real binary: traffic counted
// is flushed to disk by the periodic flush (every 5 s; the promise is at
// most 10 s lost) without any shutdown, survives a `kill -9`, a restart
// finds the stale admin socket and replaces it, and a SIGTERM flushes
// everything. The flush is awaited by polling the store, not timed.
func TestAccessCountersSurviveKill9(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary and waits for a flush")
	}
	bin := burrowBinary(t)
	site := testSite(t)
	data, port, link := initBinaryServer(t, bin)
	proxy := connect(t, link)
	const size = 8 << 20
	target := fmt.Sprintf("http://%s/data?n=%d", site, size)

	runServer := func() (*exec.Cmd, *bytes.Buffer) {
		var stderr bytes.Buffer
		srv := exec.Command(bin, "server", "run", "--data", data)
		srv.Stderr = &stderr
		if err := srv.Start(); err != nil {
			t.Fatal(err)
		}
		if err := waitListening(context.Background(), "127.0.0.1:"+port); err != nil {
			srv.Process.Kill()
			t.Fatalf("server did not listen: %v\n%s", err, stderr.String())
		}
		return srv, &stderr
	}

	// Round 1: download, wait for a periodic flush to reach the disk, kill -9.
	srv, stderr := runServer()
	if _, n, err := get(proxy, target); err != nil || n != size {
		srv.Process.Kill()
		t.Fatalf("download 1: %d, %v\n%s", n, err, stderr)
	}
	flushed, waited, err := waitStoredDown(data, "owner", size)
	if err != nil {
		srv.Process.Kill()
		t.Fatalf("%v\n%s", err, stderr)
	}
	t.Logf("periodic flush on disk %v after the download: %+v", waited.Round(time.Millisecond), flushed)
	srv.Process.Signal(syscall.SIGKILL)
	srv.Wait()
	got := storedTraffic(t, data, "owner")
	if got.Down < flushed.Down || got.Up == 0 {
		t.Fatalf("after kill -9: stored %+v, want what was flushed before it (%+v) and some upload", got, flushed)
	}
	t.Logf("after kill -9: stored %+v", got)

	// Round 2: the stale socket is replaced; download; SIGTERM at once.
	srv, stderr = runServer()
	c := exec.Command(bin, "user", "list", "--data", data)
	if out, err := c.CombinedOutput(); err != nil || !hasRow(string(out), "owner", "0") {
		t.Errorf("user list against the restarted server (via its socket) = %v\n%s\nserver: %s", err, out, stderr)
	}
	if _, n, err := get(proxy, target); err != nil || n != size {
		srv.Process.Kill()
		t.Fatalf("download 2: %d, %v\n%s", n, err, stderr)
	}
	srv.Process.Signal(syscall.SIGTERM)
	if err := srv.Wait(); err != nil {
		t.Errorf("server after SIGTERM: %v\n%s", err, stderr)
	}
	got2 := storedTraffic(t, data, "owner")
	if got2.Down < got.Down+size {
		t.Errorf("after SIGTERM right after a second download: stored %+v, want >= %d down", got2, got.Down+size)
	}
}

// TestAccessConcurrentUserAdd runs many `burrow user add` processes at
// once, first against the store (no server), then through a running
// server's admin API, and wants every user there exactly once.
func TestAccessConcurrentUserAdd(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	bin := burrowBinary(t)
	e := deployServer(t, true)
	if err := e.srv.stop(t); err != nil {
		t.Fatal(err)
	}
	addAll := func(phase string, procs, each int) {
		var wg sync.WaitGroup
		errs := make(chan error, procs*each)
		for p := 0; p < procs; p++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := 0; i < each; i++ {
					name := fmt.Sprintf("%s-p%d-u%d", phase, p, i)
					out, err := exec.Command(bin, "user", "add", name, "--data", e.data, "--quota", "1GB").CombinedOutput()
					if err != nil || !bytes.Contains(out, []byte("vless://")) {
						errs <- fmt.Errorf("user add %s: %v\n%s", name, err, out)
					}
				}
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Error(err)
		}
	}
	addAll("direct", 8, 5)
	e.srv = start(t, "server", "run", "--data", e.data)
	e.waitAdmin(t)
	addAll("api", 8, 3)

	st, err := access.OpenSQLite(filepath.Join(e.data, server.StoreFile))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	users, err := st.ListUsers(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	names, uuids, tokens := map[string]bool{}, map[[16]byte]bool{}, map[string]bool{}
	for _, u := range users {
		names[u.Name], uuids[u.UUID], tokens[u.SubToken] = true, true, true
	}
	if want := 1 + 8*5 + 8*3; len(users) != want || len(names) != want || len(uuids) != want || len(tokens) != want {
		t.Errorf("%d users (%d names, %d UUIDs, %d tokens), want %d of each", len(users), len(names), len(uuids), len(tokens), want)
	}
	for _, phase := range []string{"direct", "api"} {
		for p := 0; p < 8; p++ {
			if !names[fmt.Sprintf("%s-p%d-u0", phase, p)] {
				t.Errorf("user %s-p%d-u0 missing", phase, p)
			}
		}
	}
}
