package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/burrow-vpn/burrow/internal/admin"
	"github.com/burrow-vpn/burrow/internal/coversite"
	"github.com/burrow-vpn/burrow/internal/server"
)

// srvEnv is a running in-process server (real SQLite file, real sockets)
// that tests add users to with the real `burrow user` commands.
type srvEnv struct {
	data, addr string
	srv        *proc
	cover      *coversite.Site
}

// deployServer runs `server init` and `server run ARGS...` on loopback, and
// waits until both the proxy port and the admin socket answer.
func deployServer(t *testing.T, allowPrivate bool, runArgs ...string) *srvEnv {
	t.Helper()
	cover, err := coversite.Start("127.0.0.1:0", "cover.test")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cover.Close() })
	e := &srvEnv{data: filepath.Join(t.TempDir(), "srv"), cover: cover}
	port, _ := freePort()
	e.addr = "127.0.0.1:" + port
	args := []string{"server", "init", "--data", e.data, "--listen", e.addr, "--cover", cover.Addr, "--sni", "cover.test", "--public-addr", "127.0.0.1"}
	if allowPrivate {
		args = append(args, "--allow-private-egress")
	}
	var errOut bytes.Buffer
	if err := run(context.Background(), args, io.Discard, &errOut); err != nil {
		t.Fatalf("server init: %v\n%s", err, errOut.String())
	}
	e.srv = start(t, append([]string{"server", "run", "--data", e.data}, runArgs...)...)
	if err := waitListening(context.Background(), e.addr); err != nil {
		t.Fatalf("%v\n%s", err, e.srv.stderr)
	}
	if !slices.Contains(runArgs, "off") {
		e.waitAdmin(t)
	}
	return e
}

func (e *srvEnv) waitAdmin(t *testing.T) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := admin.DialUnix(context.Background(), filepath.Join(e.data, server.AdminSock))
		if err == nil {
			c.Close()
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("admin socket never answered: %v\n%s", err, e.srv.stderr)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// user runs `burrow user ARGS... --data DATA` in-process.
func (e *srvEnv) user(args ...string) (string, error) {
	var out, errOut bytes.Buffer
	err := run(context.Background(), append(append([]string{"user"}, args...), "--data", e.data), &out, &errOut)
	return out.String(), err
}

// addUser adds a user and returns their link.
func (e *srvEnv) addUser(t *testing.T, name string, flags ...string) string {
	t.Helper()
	out, err := e.user(append([]string{"add", name}, flags...)...)
	if err != nil {
		t.Fatalf("user add %s: %v", name, err)
	}
	link := strings.TrimSpace(strings.SplitN(out, "\n", 2)[0])
	if !strings.HasPrefix(link, "vless://") {
		t.Fatalf("user add printed %q, want a link first", out)
	}
	return link
}

// connect starts a client for link and returns its SOCKS5 proxy URL.
func connect(t *testing.T, link string) string {
	t.Helper()
	return "socks5://" + startClient(t, link, false).socks
}

// slowSite serves /slow: 16 KiB every 10 ms until the client goes away or a minute passes.
func slowSite(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		chunk := bytes.Repeat([]byte("x"), 16<<10)
		end := time.Now().Add(time.Minute)
		for time.Now().Before(end) {
			if _, err := w.Write(chunk); err != nil {
				return
			}
			w.(http.Flusher).Flush()
			time.Sleep(10 * time.Millisecond)
		}
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().String()
}

// liveStream is a download in progress through a proxy.
type liveStream struct {
	n      atomic.Int64
	done   chan struct{}
	ended  time.Time
	cancel context.CancelFunc
}

func openStream(t *testing.T, proxy, target string) *liveStream {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	s := &liveStream{done: make(chan struct{}), cancel: cancel}
	pu, _ := url.Parse(proxy)
	tr := &http.Transport{Proxy: http.ProxyURL(pu)}
	req, _ := http.NewRequestWithContext(ctx, "GET", target, nil)
	go func() {
		defer close(s.done)
		defer tr.CloseIdleConnections()
		resp, err := tr.RoundTrip(req)
		if err == nil {
			buf := make([]byte, 32<<10)
			for {
				n, err := resp.Body.Read(buf)
				s.n.Add(int64(n))
				if err != nil {
					break
				}
			}
			resp.Body.Close()
		}
		s.ended = time.Now()
	}()
	t.Cleanup(func() { cancel(); <-s.done })
	return s
}

// flowing waits until the stream has moved at least n bytes.
func (s *liveStream) flowing(t *testing.T, what string, n int64) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for s.n.Load() < n {
		select {
		case <-s.done:
			t.Fatalf("%s: stream ended after %d bytes before it got going", what, s.n.Load())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: stream stuck at %d bytes", what, s.n.Load())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// cutBudget is how long a test waits for a revoked user's stream to be cut:
// the promise is about a second, the budget is for a machine busy with more.
const cutBudget = 30 * time.Second

// openStreamOnceKnown opens streams to target until one moves a byte (the
// server may not know the user yet), for at most 30s.
func openStreamOnceKnown(t *testing.T, proxy, target string) *liveStream {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		s := openStream(t, proxy, target)
		for s.n.Load() == 0 && !s.endedWithin(10*time.Millisecond) && time.Now().Before(deadline) {
		}
		if s.n.Load() > 0 {
			return s
		}
		if time.Now().After(deadline) {
			t.Fatalf("no stream to %s moved a byte in 30s", target)
		}
	}
}

func (s *liveStream) endedWithin(d time.Duration) bool {
	select {
	case <-s.done:
		return true
	case <-time.After(d):
		return false
	}
}

// TestAccessRevokeCutsLiveStream: `user revoke` while the server runs cuts
// that user's live download within a second, and another user's download
// keeps going. `user list` shows both connected before.
func TestAccessRevokeCutsLiveStream(t *testing.T) {
	slow := slowSite(t)
	e := deployServer(t, true)
	alice := openStream(t, connect(t, e.addUser(t, "alice")), "http://"+slow+"/slow")
	bob := openStream(t, connect(t, e.addUser(t, "bob")), "http://"+slow+"/slow")
	alice.flowing(t, "alice", 256<<10)
	bob.flowing(t, "bob", 256<<10)

	out, err := e.user("list")
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"alice", "bob"} {
		if !hasRow(out, name, "1") {
			t.Errorf("user list:\n%s\nwant %s with 1 connection", out, name)
		}
	}
	if !hasRow(out, "owner", "0") {
		t.Errorf("user list:\n%s\nwant owner with 0 connections", out)
	}

	t0 := time.Now()
	if out, err := e.user("revoke", "alice"); err != nil || !strings.Contains(out, "Revoked") {
		t.Fatalf("user revoke alice = %q, %v", out, err)
	}
	// The promise is about a second; the test waits for the cut as an event, with
	// a budget a busy machine cannot run out of, and logs how long it took.
	if !alice.endedWithin(cutBudget) {
		t.Fatalf("alice's stream still running %v after revoke (%d bytes)", cutBudget, alice.n.Load())
	}
	t.Logf("alice's stream cut %v after the revoke command started", alice.ended.Sub(t0))
	// bob's stream keeps flowing: another 256 KiB after alice's revocation.
	bob.flowing(t, "bob after alice's revocation", bob.n.Load()+256<<10)
	// A revoked user cannot start again.
	if _, n, err := get(connectFor(t, e, "alice"), "http://"+slow+"/slow"); err == nil && n > 0 {
		t.Errorf("revoked alice fetched %d bytes", n)
	}
}

// TestAccessRevokeWithoutAdminAPI: with the admin socket off, `user revoke`
// writes the store directly, and the server's once-a-second refresh still
// cuts the live stream within about a second.
func TestAccessRevokeWithoutAdminAPI(t *testing.T) {
	slow := slowSite(t)
	e := deployServer(t, true, "--admin-socket", "off")
	link := e.addUser(t, "gina")
	// No API to poke: the server learns of gina at its next refresh, and until
	// then her connections go to the cover site; try until one flows.
	s := openStreamOnceKnown(t, connect(t, link), "http://"+slow+"/slow")
	s.flowing(t, "gina", 64<<10)
	out, _ := e.user("list")
	if !hasRow(out, "gina", "-") {
		t.Errorf("user list without the admin API:\n%s\nwant CONNECTED '-' (unknown)", out)
	}
	t0 := time.Now()
	if _, err := e.user("revoke", "gina"); err != nil {
		t.Fatal(err)
	}
	if !s.endedWithin(cutBudget) {
		t.Fatalf("stream still running %v after revoking through the store", cutBudget)
	}
	t.Logf("cut %v after the revoke command started (store path, 1s refresh)", s.ended.Sub(t0))
}

// TestAccessAdminTCP: --admin-listen serves the API on loopback with the
// bearer token stored (mode 0600) in the data dir; other addresses are refused.
func TestAccessAdminTCP(t *testing.T) {
	ap, _ := freePort()
	e := deployServer(t, true, "--admin-listen", "127.0.0.1:"+ap)
	tokFile := filepath.Join(e.data, AdminTokenFile)
	fi, err := os.Stat(tokFile)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("token file: %v, %v; want mode 0600", fi, err)
	}
	tok, _ := os.ReadFile(tokFile)
	ctx := context.Background()
	if _, err := admin.NewTCPClient("127.0.0.1:"+ap, "").ListUsers(ctx); err == nil || !strings.Contains(err.Error(), "token") {
		t.Errorf("TCP API without a token: %v, want refused", err)
	}
	users, err := admin.NewTCPClient("127.0.0.1:"+ap, strings.TrimSpace(string(tok))).ListUsers(ctx)
	if err != nil || len(users) != 1 || users[0].Name != "owner" {
		t.Errorf("TCP API with the token: %v, %v; want the owner", users, err)
	}
	var errOut bytes.Buffer
	err = run(ctx, []string{"server", "run", "--data", e.data, "--admin-socket", "off", "--admin-listen", "0.0.0.0:" + ap}, io.Discard, &errOut)
	if err == nil || !strings.Contains(err.Error(), "loopback") {
		t.Errorf("--admin-listen 0.0.0.0: err = %v, want a loopback-only refusal", err)
	}
}

// connectFor connects with the user's current link, from `user show`.
func connectFor(t *testing.T, e *srvEnv, name string) string {
	t.Helper()
	out, err := e.user("show", name)
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(out, "\n") {
		if strings.HasPrefix(line, "vless://") {
			return connect(t, line)
		}
	}
	t.Fatalf("user show %s printed no link:\n%s", name, out)
	return ""
}

// hasRow reports whether the `user list` table has a row for name whose
// CONNECTED column is conn.
func hasRow(table, name, conn string) bool {
	lines := strings.Split(table, "\n")
	col := strings.Index(lines[0], "CONNECTED")
	for _, l := range lines[1:] {
		f := strings.Fields(l)
		if len(f) > 0 && f[0] == name && col >= 0 && len(l) > col {
			return strings.Fields(l[col:])[0] == conn
		}
	}
	return false
}

// TestAccessExpiryCutsLiveStream: a user whose access expires mid-download
// is cut within about a second of the expiry.
func TestAccessExpiryCutsLiveStream(t *testing.T) {
	slow := slowSite(t)
	e := deployServer(t, true)
	expires := time.Now().Add(4 * time.Second).UTC().Truncate(time.Second)
	link := e.addUser(t, "carol", "--expires", expires.Format(time.RFC3339))
	s := openStream(t, connect(t, link), "http://"+slow+"/slow")
	s.flowing(t, "carol", 64<<10)
	if !s.endedWithin(time.Until(expires) + 1500*time.Millisecond) {
		t.Fatalf("carol's stream still running 1.5s after her expiry")
	}
	if late := s.ended.Sub(expires); late < -100*time.Millisecond || late > 1500*time.Millisecond {
		t.Errorf("stream ended %v after the expiry, want within (0, 1.5s]", late)
	} else {
		t.Logf("stream ended %v after the expiry", late)
	}
	out, _ := e.user("show", "carol")
	if !strings.Contains(out, "status:     expired") {
		t.Errorf("user show carol:\n%s\nwant status expired", out)
	}
}

// TestAccessQuotaStopsDownload: a download stops at the quota plus at most
// one 256 KiB chunk, and the user can start no more.
func TestAccessQuotaStopsDownload(t *testing.T) {
	site := testSite(t)
	e := deployServer(t, true)
	const quota = 4 << 20
	proxy := connect(t, e.addUser(t, "dave", "--quota", "4MiB"))
	_, n, err := get(proxy, fmt.Sprintf("http://%s/data?n=%d", site, 64<<20))
	t.Logf("download with a 4 MiB quota: %d bytes, %v", n, err)
	if err == nil {
		t.Error("download of 64 MiB with a 4 MiB quota completed")
	}
	if n > quota+256<<10 {
		t.Errorf("received %d bytes, want at most quota+256KiB = %d", n, quota+256<<10)
	}
	if n < quota-2*256<<10 {
		t.Errorf("received %d bytes, want close to the quota %d (within two chunks)", n, quota)
	}
	if _, n2, err := get(proxy, fmt.Sprintf("http://%s/data?n=1000", site)); err == nil && n2 == 1000 {
		t.Error("a new download after the quota was used up succeeded")
	}
	// Raising the quota lets dave in again at once (the API pokes the registry).
	if _, err := e.user("set", "dave", "--quota", "100MiB"); err != nil {
		t.Fatal(err)
	}
	if _, n3, err := get(proxy, fmt.Sprintf("http://%s/data?n=1000", site)); err != nil || n3 != 1000 {
		t.Errorf("download after raising the quota: %d bytes, %v; want 1000", n3, err)
	}
}

// TestAccessAdversarialCLI gives every user command nonsense, with the
// server running (through the admin API) and stopped (on the store), and
// wants each refused with a reason and nothing changed.
func TestAccessAdversarialCLI(t *testing.T) {
	e := deployServer(t, true)
	e.addUser(t, "taken")
	long := strings.Repeat("n", 5000)
	cases := []struct {
		args   []string
		reason string
	}{
		{[]string{"add", ""}, "empty"},
		{[]string{"add", " "}, "space"},
		{[]string{"add", "a\x00b"}, "control"},
		{[]string{"add", "a\nb"}, "control"},
		{[]string{"add", "\u202eevil"}, "name"},
		{[]string{"add", long}, "at most 64"},
		{[]string{"add", "TAKEN"}, "exists"},
		{[]string{"add"}, "exactly one"},
		{[]string{"add", "a", "b"}, "exactly one"},
		{[]string{"add", "x", "--quota", ""}, "empty"},
		{[]string{"add", "x", "--quota", "-5GB"}, "negative"},
		{[]string{"add", "x", "--quota", "99999999999EB"}, "too large"},
		{[]string{"add", "x", "--quota", "9223372036854775808"}, "too large"},
		{[]string{"add", "x", "--quota", "ten"}, "number"},
		{[]string{"add", "x", "--quota", long}, "too long"},
		{[]string{"add", "x", "--expires", ""}, "empty"},
		{[]string{"add", "x", "--expires", "-1d"}, "negative"},
		{[]string{"add", "x", "--expires", "1999-01-01"}, "past"},
		{[]string{"add", "x", "--expires", "0d"}, "zero"},
		{[]string{"add", "x", "--expires", "99999999999999d"}, "100 years"},
		{[]string{"add", "x", "--expires", "2027-02-30"}, "expiry"},
		{[]string{"add", "x", "--reset", "daily"}, "monthly"},
		{[]string{"add", "x", "--reset", ""}, "empty"},
		{[]string{"add", "x", "--note", long}, "at most 1000"},
		{[]string{"add", "x", "--note", "\x1b[31mred"}, "control"},
		{[]string{"set", "taken"}, "nothing to change"},
		{[]string{"set", "taken", "--quota", "-1"}, "negative"},
		{[]string{"set", "taken", "--quota", ""}, "empty"},
		{[]string{"set", "taken", "--expires", ""}, "empty"},
		{[]string{"set", "taken", "--expires", "yesterday"}, "expiry"},
		{[]string{"set", "taken", "--note", "a\x00"}, "control"},
		{[]string{"set", "nobody", "--note", "x"}, "not found"},
		{[]string{"show", "taken", "--qr", "/nonexistent-dir/x.png"}, "write QR code"},
		{[]string{"add", "x", "--bogus"}, "not defined"},
		{[]string{"list", "extra"}, "no arguments"},
		{[]string{"frob", "x"}, "unknown subcommand"},
	}
	for _, verb := range []string{"show", "revoke", "rotate", "reset-traffic"} {
		cases = append(cases,
			struct {
				args   []string
				reason string
			}{[]string{verb, ""}, "empty"},
			struct {
				args   []string
				reason string
			}{[]string{verb, "nobody"}, "not found"},
			struct {
				args   []string
				reason string
			}{[]string{verb, "x\x7f"}, "control"},
			struct {
				args   []string
				reason string
			}{[]string{verb, long}, "at most 64"})
	}
	check := func(mode string) {
		for _, c := range cases {
			_, err := e.user(c.args...)
			if err == nil || !strings.Contains(err.Error(), c.reason) {
				t.Errorf("%s: user %.60q = %v; want an error saying %q", mode, c.args, err, c.reason)
			}
		}
		out, err := e.user("list")
		if err != nil || strings.Count(strings.TrimSpace(out), "\n") != 2 {
			t.Errorf("%s: after adversarial input, user list = %v\n%s\nwant owner and taken only", mode, err, out)
		}
	}
	check("server running")
	if err := e.srv.stop(t); err != nil {
		t.Fatal(err)
	}
	check("server stopped")
}

// TestAccessLogsNoUserWithDestination: without --debug-log-destinations no
// log line carries both a user name and a destination (even at debug
// level); with it, some do, so the check can fail.
func TestAccessLogsNoUserWithDestination(t *testing.T) {
	site := testSite(t)
	_, sitePort, _ := net.SplitHostPort(site)
	for _, withFlag := range []bool{false, true} {
		args := []string{"--debug"}
		if withFlag {
			args = append(args, "--debug-log-destinations")
		}
		e := deployServer(t, true, args...)
		link := e.addUser(t, "zelda")
		proxy := connect(t, link)
		if _, n, err := get(proxy, fmt.Sprintf("http://%s/data?n=1000", site)); err != nil || n != 1000 {
			t.Fatalf("download: %d, %v", n, err)
		}
		e.user("revoke", "zelda")
		get(proxy, fmt.Sprintf("http://%s/data?n=1000", site)) // refused: logged at debug
		e.srv.stop(t)
		logs := e.srv.stderr.String()
		uuid := strings.TrimPrefix(strings.SplitN(link, "@", 2)[0], "vless://")
		if strings.Contains(logs, uuid) {
			t.Errorf("a UUID appears in the server log:\n%s", logs)
		}
		both := 0
		for _, line := range strings.Split(logs, "\n") {
			if strings.Contains(line, "zelda") && (strings.Contains(line, site) || strings.Contains(line, ":"+sitePort)) {
				both++
				if !withFlag {
					t.Errorf("log line with a user and a destination without --debug-log-destinations:\n%s", line)
				}
			}
		}
		if withFlag && (both == 0 || !strings.Contains(logs, "debug-log-destinations is on")) {
			t.Errorf("with --debug-log-destinations: %d lines with user and destination, want some, and a warning:\n%s", both, logs)
		}
	}
}
