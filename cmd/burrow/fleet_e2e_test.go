package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/burrow-vpn/burrow/internal/admin"
	"github.com/burrow-vpn/burrow/internal/control/pgtest"
	"github.com/burrow-vpn/burrow/internal/coversite"
	"github.com/burrow-vpn/burrow/internal/links"
	"github.com/burrow-vpn/burrow/internal/server"
	"github.com/burrow-vpn/burrow/internal/subscribe"
)

// fleetLab is a control plane (a separate process of the real binary, so
// the test can kill -9 it), its cover site, and exits joined to it.
type fleetLab struct {
	cover       *coversite.Site
	ctlData     string
	ctlAddr     string
	subAddr     string // the control plane's subscriptions
	ctl         *exec.Cmd
	ctlLog      *syncBuffer
	exits       []*fleetExit
	bin         string
	site, sitep string
	ctlArgs     []string // more flags for control run
}

type fleetExit struct {
	name, data, addr string
	proc             *proc
}

// newFleetLab makes the control plane on db ("sqlite" or a postgres URL),
// run with ctlArgs, and exits joined to it, all running.
func newFleetLab(t *testing.T, exits int, db string, ctlArgs ...string) *fleetLab {
	t.Helper()
	l := &fleetLab{bin: burrowBinary(t), site: testSite(t), ctlArgs: ctlArgs}
	_, l.sitep, _ = strings.Cut(l.site, ":")
	var err error
	if l.cover, err = coversite.Start("127.0.0.1:0", "cover.test"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.cover.Close() })
	l.ctlData, l.ctlAddr, l.subAddr = filepath.Join(t.TempDir(), "control"), loopbackAddr(t), loopbackAddr(t)
	runCmd(t, "control", "init", "--data", l.ctlData, "--db", db, "--listen", l.ctlAddr, "--public-addr", "127.0.0.1",
		"--cover", l.cover.Addr, "--sni", "cover.test")
	l.startControl(t)
	for i := range exits {
		e := &fleetExit{name: fmt.Sprintf("exit-%d", i+1), data: filepath.Join(t.TempDir(), "exit"), addr: loopbackAddr(t)}
		tok := strings.TrimSpace(runCmd(t, "control", "node-token", e.name, "--data", l.ctlData, "--role", "exit"))
		runCmd(t, "server", "init", "--join", tok, "--data", e.data, "--listen", e.addr, "--cover", l.cover.Addr,
			"--sni", "cover.test", "--public-addr", "127.0.0.1", "--allow-private-egress")
		l.exits = append(l.exits, e)
		l.startExit(t, i)
	}
	return l
}

func (l *fleetLab) startControl(t *testing.T) {
	t.Helper()
	l.ctlLog = &syncBuffer{}
	l.ctl = exec.Command(l.bin, append([]string{"control", "run", "--data", l.ctlData, "--subscribe", l.subAddr}, l.ctlArgs...)...)
	l.ctl.Stderr = l.ctlLog
	if err := l.ctl.Start(); err != nil {
		t.Fatal(err)
	}
	cmd := l.ctl
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	if err := waitListening(context.Background(), l.ctlAddr); err != nil {
		t.Fatalf("control run: %v\n%s", err, l.ctlLog)
	}
}

func (l *fleetLab) killControl(t *testing.T) {
	t.Helper()
	l.ctl.Process.Signal(syscall.SIGKILL)
	l.ctl.Wait()
}

func (l *fleetLab) startExit(t *testing.T, i int) {
	t.Helper()
	e := l.exits[i]
	e.proc = start(t, "server", "run", "--data", e.data, "--debug")
	if err := waitListening(context.Background(), e.addr); err != nil {
		t.Fatalf("%s: %v\n%s", e.name, err, e.proc.stderr)
	}
}

// links returns the user's tcp link through each exit, by exit address,
// waiting until every exit has registered where clients reach it.
func (l *fleetLab) links(t *testing.T, user string) map[string]*links.VLESS {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		out := runCmd(t, "user", "show", user, "--data", l.ctlData)
		got := map[string]*links.VLESS{}
		for _, line := range strings.Split(out, "\n") {
			if !strings.HasPrefix(line, "vless://") {
				continue
			}
			v, err := links.ParseVLESS(line)
			if err != nil {
				t.Fatal(err)
			}
			if v.Type == "" || v.Type == "tcp" {
				got[fmt.Sprintf("%s:%d", v.Host, v.Port)] = v
			}
		}
		if len(got) == len(l.exits) {
			return got
		}
		if time.Now().After(deadline) {
			t.Fatalf("after 60 s, user show lists %d exits, want %d:\n%s\ncontrol:\n%s", len(got), len(l.exits), out, l.ctlLog)
		}
		time.Sleep(100 * time.Millisecond) // the exits register when they reach the control plane
	}
}

// subscription fetches user's subscription from the control plane.
func (l *fleetLab) subscription(t *testing.T, user string) []*links.VLESS {
	t.Helper()
	_, st, err := openControl(context.Background(), l.ctlData)
	if err != nil {
		t.Fatal(err)
	}
	u, err := st.UserByName(context.Background(), user)
	st.Close()
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.Get(subscribe.URL("http://"+l.subAddr, u.SubToken))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("subscription: %s: %s", resp.Status, body)
	}
	ls, err := subscribe.ParseBase64(body)
	if err != nil {
		t.Fatal(err)
	}
	return ls
}

// fetchVia fetches n bytes of the test stream through a client on link.
func (l *fleetLab) fetchVia(t *testing.T, socks string, n int64) error {
	t.Helper()
	return getOnce("socks5://"+socks, "localhost:"+l.sitep, n)
}

// waitFetch retries a fetch until it works: the exit applies a change
// within its sync, not at once.
func (l *fleetLab) waitFetch(t *testing.T, socks, what string) time.Duration {
	t.Helper()
	start := time.Now()
	for {
		err := l.fetchVia(t, socks, 64<<10)
		if err == nil {
			return time.Since(start)
		}
		if time.Since(start) > 60*time.Second {
			t.Fatalf("%s: no fetch through the exit within 60 s: %v", what, err)
		}
		time.Sleep(50 * time.Millisecond) // retried: nothing to wait on but the exit's replica
	}
}

// TestFleetEndToEnd: a control plane and two exits joined to it, on
// loopback. A user added on the control plane connects through both
// exits; a revocation cuts a live download within 2 s; with the control
// plane killed (-9), the exits keep serving, also after a restart; the
// traffic counted while it was away reaches it when it is back.
func TestFleetEndToEnd(t *testing.T) {
	t.Run("sqlite", func(t *testing.T) { testFleetEndToEnd(t, "sqlite") })
	t.Run("postgres", func(t *testing.T) { testFleetEndToEnd(t, pgtest.DB(t)) })
}

func testFleetEndToEnd(t *testing.T, db string) {
	l := newFleetLab(t, 2, db)
	runCmd(t, "user", "add", "anna", "--data", l.ctlData)
	ls := l.links(t, "anna")
	// The control plane's subscription lists the user's link through
	// every exit.
	sub := l.subscription(t, "anna")
	if len(sub) != len(l.exits) {
		t.Fatalf("subscription holds %d links, want one per exit (%d)", len(sub), len(l.exits))
	}
	for _, v := range sub {
		if w := ls[fmt.Sprintf("%s:%d", v.Host, v.Port)]; w == nil || w.UUID != v.UUID {
			t.Fatalf("subscription link %s is not one of user show's", v)
		}
	}
	// The admin API answers on the control plane's unix socket.
	ac, err := admin.DialUnix(context.Background(), filepath.Join(l.ctlData, server.AdminSock))
	if err != nil {
		t.Fatal(err)
	}
	if us, err := ac.ListUsers(context.Background()); err != nil || len(us) != 1 || us[0].Name != "anna" {
		t.Fatalf("admin API on the control plane: %v, %v", us, err)
	}
	ac.Close()
	socks := map[string]string{}
	for _, e := range l.exits {
		link := ls[e.addr]
		if link == nil {
			t.Fatalf("no link through %s (%s)", e.name, e.addr)
		}
		socks[e.name], _ = connectLink(t, link.String())
		d := l.waitFetch(t, socks[e.name], "new user on "+e.name)
		t.Logf("%s: the new user's first fetch worked after %v", e.name, d.Round(time.Millisecond))
	}

	// Revocation cuts a live download through exit 1 within 2 s.
	cut := make(chan error, 1)
	started := make(chan struct{})
	go func() { _, err := endlessGet(socks["exit-1"], "localhost:"+l.sitep, started); cut <- err }()
	select {
	case <-started:
	case <-time.After(60 * time.Second):
		t.Fatal("the long download did not start")
	}
	at := time.Now()
	runCmd(t, "user", "revoke", "anna", "--data", l.ctlData)
	select {
	case err := <-cut:
		d := time.Since(at)
		t.Logf("revocation on the control plane cut the live download in %v (%v)", d.Round(time.Millisecond), err)
		if d > 2*time.Second {
			t.Errorf("revocation took %v to cut a live connection, want at most 2 s", d)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("a revoked user's download went on for 30 s")
	}
	runCmd(t, "user", "enable", "anna", "--data", l.ctlData)
	for _, e := range l.exits {
		l.waitFetch(t, socks[e.name], "enabled again on "+e.name)
	}

	// The control plane dies; the exits keep serving, exit 2 also after a
	// restart with the control plane still down.
	l.killControl(t)
	const n = 3 << 20
	for _, e := range l.exits {
		if err := l.fetchVia(t, socks[e.name], n); err != nil {
			t.Fatalf("%s with the control plane down: %v", e.name, err)
		}
	}
	if err := l.exits[1].proc.stop(t); err != nil {
		t.Fatalf("exit-2 stop: %v\n%s", err, l.exits[1].proc.stderr)
	}
	l.startExit(t, 1)
	l.waitFetch(t, socks["exit-2"], "exit-2 restarted with the control plane down")

	// Back: what the exits counted meanwhile reaches it.
	before := fleetUsage(t, l.ctlData, "anna")
	l.startControl(t)
	deadline := time.Now().Add(60 * time.Second)
	for fleetUsage(t, l.ctlData, "anna") < before+2*n {
		if time.Now().After(deadline) {
			t.Fatalf("the control plane counted %d bytes, want at least %d more than %d", fleetUsage(t, l.ctlData, "anna"), 2*n, before)
		}
		time.Sleep(200 * time.Millisecond) // pushes come every 2 s; nothing to wait on from here
	}
	out := runCmd(t, "control", "nodes", "--data", l.ctlData)
	for _, e := range l.exits {
		if !strings.Contains(out, e.name) {
			t.Errorf("control nodes lacks %s:\n%s", e.name, out)
		}
	}
}

// fleetUsage returns the bytes the control plane counted for user.
func fleetUsage(t *testing.T, dir, user string) int64 {
	t.Helper()
	_, st, err := openControl(context.Background(), dir)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	u, err := st.UserByName(context.Background(), user)
	if err != nil {
		t.Fatal(err)
	}
	return u.BytesUp + u.BytesDown
}

// endlessGet downloads an endless stream through socks until the
// connection breaks, closing started once bytes flow, and returns the bytes
// it received.
func endlessGet(socks, site string, started chan struct{}) (int64, error) {
	pu, _ := url.Parse("socks5://" + socks)
	tr := &http.Transport{Proxy: http.ProxyURL(pu)}
	defer tr.CloseIdleConnections()
	resp, err := (&http.Client{Transport: tr}).Get(fmt.Sprintf("http://%s/data?n=%d", site, int64(1)<<40))
	if err != nil {
		close(started)
		return 0, err
	}
	defer resp.Body.Close()
	buf := make([]byte, 64<<10)
	var got int64
	for {
		n, err := resp.Body.Read(buf)
		if got == 0 && n > 0 {
			close(started)
		}
		got += int64(n)
		if err != nil {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return got, fmt.Errorf("after %d bytes: %w", got, err)
		}
	}
}

// TestFleetQuota: a user's quota holds across three exits downloading at
// once: the control plane lends each exit slices of what is left, and the
// exits together move no more than the quota plus 256 KiB each.
func TestFleetQuota(t *testing.T) {
	l := newFleetLab(t, 3, pgtest.DB(t))
	const quota = 24 << 20
	runCmd(t, "user", "add", "q", "--quota", "24MiB", "--data", l.ctlData)
	ls := l.links(t, "q")
	t.Cleanup(func() {
		if t.Failed() {
			for _, e := range l.exits {
				t.Logf("%s:\n%s", e.name, e.proc.stderr)
			}
		}
	})
	type result struct {
		n   int64
		err error
	}
	results := make(chan result, len(l.exits))
	var moved int64
	for _, e := range l.exits {
		socks, _ := connectLink(t, ls[e.addr].String())
		l.waitFetch(t, socks, "the user on "+e.name) // the exit has the user
		moved += 64 << 10
	}
	for _, e := range l.exits {
		socks, _ := connectLink(t, ls[e.addr].String())
		started := make(chan struct{})
		go func() {
			n, err := endlessGet(socks, "localhost:"+l.sitep, started)
			results <- result{n, err}
		}()
	}
	began := time.Now()
	for range l.exits {
		select {
		case r := <-results:
			t.Logf("one exit's download ended after %d bytes and %v: %v", r.n, time.Since(began).Round(time.Millisecond), r.err)
			if r.n == 0 {
				t.Errorf("a download never started: %v", r.err)
			}
			moved += r.n
		case <-time.After(3 * time.Minute):
			t.Fatalf("downloads still running after 3 minutes (%d bytes ended so far)", moved)
		}
	}
	const bound = quota + 3*256<<10
	t.Logf("three exits moved %d bytes for a quota of %d (%+d)", moved, quota, moved-quota)
	if moved > bound {
		t.Errorf("the fleet moved %d bytes, over the quota of %d by more than 3 x 256 KiB", moved, quota)
	}
	if moved < quota*3/4 {
		t.Errorf("the fleet moved only %d bytes of a %d quota", moved, quota)
	}

	// The control plane's count: the bytes moved (the HTTP requests up
	// add a little), once the exits have pushed.
	deadline := time.Now().Add(60 * time.Second)
	for {
		c := fleetUsage(t, l.ctlData, "q")
		if c >= moved {
			t.Logf("the control plane counted %d bytes", c)
			if c > bound {
				t.Errorf("the control plane counted %d bytes, over the quota by more than 3 x 256 KiB", c)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the control plane counted %d bytes, fewer than the %d the clients received", c, moved)
		}
		time.Sleep(200 * time.Millisecond) // pushes come every 2 s
	}
	// With the quota spent, new connections are refused.
	if fleetUsage(t, l.ctlData, "q") >= quota {
		if err := l.fetchVia(t, mustConnect(t, ls[l.exits[0].addr]), 1<<10); err == nil {
			t.Error("a fetch worked with the quota spent")
		}
	}
}

func mustConnect(t *testing.T, link *links.VLESS) string {
	t.Helper()
	socks, _ := connectLink(t, link.String())
	return socks
}

// TestServerInitJoinErrors: a join token that is not an exit's, or not a
// token at all, is refused with a clear error and leaves no data dir.
func TestServerInitJoinErrors(t *testing.T) {
	ctl := controlDir(t, "sqlite")
	relayTok := strings.TrimSpace(runCmd(t, "control", "node-token", "r1", "--data", ctl, "--role", "relay"))
	for tok, want := range map[string]string{
		relayTok:                       "relay",
		"burrow-node://garbage@x:1":    "token",
		"vless://not-a-node-token@x:1": "token",
	} {
		data := filepath.Join(t.TempDir(), "exit")
		msg := runCmdErr(t, "server", "init", "--join", tok, "--data", data, "--cover", "cover.example:443",
			"--public-addr", "127.0.0.1", "--skip-cover-check")
		if !strings.Contains(msg, want) {
			t.Errorf("server init --join %.30s…: %q, want it to mention %q", tok, msg, want)
		}
		if _, err := os.Stat(data); !os.IsNotExist(err) {
			t.Errorf("a refused --join left %s behind", data)
		}
	}
	// On a joined exit, user commands are refused: the users are the
	// control plane's.
	tok := strings.TrimSpace(runCmd(t, "control", "node-token", "e1", "--data", ctl, "--role", "exit"))
	data := filepath.Join(t.TempDir(), "exit")
	runCmd(t, "server", "init", "--join", tok, "--data", data, "--cover", "cover.example:443",
		"--public-addr", "127.0.0.1", "--skip-cover-check")
	if msg := runCmdErr(t, "user", "add", "bob", "--data", data); !strings.Contains(msg, "control plane") {
		t.Errorf("user add on a joined exit: %q, want a refusal naming the control plane", msg)
	}
}

// TestJoinedExitManagesNoUsers: a joined exit refuses the panel and
// subscriptions (the control plane's), and its admin API changes no user.
func TestJoinedExitManagesNoUsers(t *testing.T) {
	cover, err := coversite.Start("127.0.0.1:0", "cover.test")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cover.Close() })
	ctl := controlDir(t, "sqlite")
	tok := strings.TrimSpace(runCmd(t, "control", "node-token", "e1", "--data", ctl, "--role", "exit"))
	data, addr := filepath.Join(t.TempDir(), "exit"), loopbackAddr(t)
	runCmd(t, "server", "init", "--join", tok, "--data", data, "--listen", addr, "--cover", cover.Addr, "--sni", "cover.test",
		"--public-addr", "127.0.0.1")
	for _, flag := range [][]string{{"--panel", loopbackAddr(t)}, {"--subscribe", loopbackAddr(t)}} {
		if msg := runCmdErr(t, append([]string{"server", "run", "--data", data}, flag...)...); !strings.Contains(msg, "control plane") {
			t.Errorf("server run %s on a joined exit: %q, want a refusal naming the control plane", flag[0], msg)
		}
	}
	// Its panel and admins are the control plane's: `admin add` on the
	// exit says so, and on the control directory it works.
	if _, _, err := adminCmd(data, "", "add", "root", "--role", "owner"); err == nil || !strings.Contains(err.Error(), "control plane") {
		t.Errorf("admin add on a joined exit: %v, want a refusal naming the control plane", err)
	}
	if out, _, err := adminCmd(ctl, "", "add", "root", "--role", "owner"); err != nil || !strings.Contains(out, "/setup/") {
		t.Errorf("admin add on the control directory: %v\n%s", err, out)
	}
	p := start(t, "server", "run", "--data", data)
	if err := waitListening(context.Background(), addr); err != nil {
		t.Fatalf("%v\n%s", err, p.stderr)
	}
	sock := filepath.Join(data, server.AdminSock)
	var ac *admin.Client
	for deadline := time.Now().Add(30 * time.Second); ; {
		if ac, err = admin.DialUnix(context.Background(), sock); err == nil || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond) // the socket comes up with the server
	}
	if err != nil {
		t.Fatal(err)
	}
	defer ac.Close()
	if _, err := ac.AddUser(context.Background(), admin.AddRequest{Name: "bob"}); err == nil || !strings.Contains(err.Error(), "control plane") {
		t.Errorf("admin API add on a joined exit: %v, want a refusal naming the control plane", err)
	}
}
