package main

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/burrow-vpn/burrow/internal/access"
	"github.com/burrow-vpn/burrow/internal/camo"
	"github.com/burrow-vpn/burrow/internal/links"
	"github.com/burrow-vpn/burrow/internal/relay"
	"github.com/burrow-vpn/burrow/internal/relaylink"
)

// fleetRelayLab is a fleetLab with a relay joined to it by token.
type fleetRelayLab struct {
	*fleetLab
	data, addr, metrics string
	proc                *proc
}

func (l *fleetLab) addRelay(t *testing.T, name string) *fleetRelayLab {
	t.Helper()
	r := &fleetRelayLab{fleetLab: l, data: filepath.Join(t.TempDir(), "relay"), addr: loopbackAddr(t), metrics: loopbackAddr(t)}
	tok := strings.TrimSpace(runCmd(t, "control", "node-token", name, "--data", l.ctlData, "--role", "relay"))
	runCmd(t, "relay", "init", "--join", tok, "--data", r.data, "--listen", r.addr)
	r.proc = start(t, "relay", "run", "--data", r.data, "--debug", "--metrics", r.metrics)
	if err := waitListening(context.Background(), r.addr); err != nil {
		t.Fatalf("relay run: %v\n%s", err, r.proc.stderr)
	}
	return r
}

// relayLinks returns the user's tcp links through the relay, by exit name,
// waiting until there are want of them (the relay registers its endpoint
// when it reaches the control plane).
func (r *fleetRelayLab) relayLinks(t *testing.T, user string, want int) map[string]*links.VLESS {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		out := runCmd(t, "user", "show", user, "--data", r.ctlData)
		got := map[string]*links.VLESS{}
		for _, v := range linksIn(t, out) {
			_, exit, through := strings.Cut(v.Name, " > ")
			if through && (v.Type == "" || v.Type == "tcp") {
				if v.Host+":"+fmt.Sprint(v.Port) != r.addr {
					t.Fatalf("a link through the relay goes to %s:%d, want the relay's %s", v.Host, v.Port, r.addr)
				}
				got[exit] = v
			}
		}
		if len(got) == want {
			return got
		}
		if time.Now().After(deadline) {
			t.Fatalf("after 60 s, user show lists %d links through the relay, want %d:\n%s\nrelay:\n%s", len(got), want, out, r.proc.stderr)
		}
		time.Sleep(100 * time.Millisecond) // polled: the relay registers when it reaches the control plane
	}
}

// waitMetrics polls the relay's metrics until ok holds; it returns how long
// that took.
func (r *fleetRelayLab) waitMetrics(t *testing.T, what string, ok func(string) bool) time.Duration {
	t.Helper()
	start := time.Now()
	for {
		m := scrapeText(t, r.metrics)
		if ok(m) {
			return time.Since(start)
		}
		if time.Since(start) > 30*time.Second {
			t.Fatalf("%s: not seen in 30 s; metrics:\n%s\nrelay log:\n%s", what, m, r.proc.stderr)
		}
		time.Sleep(20 * time.Millisecond) // polled: metrics have no events
	}
}

// waitLogCount waits until the process's log holds s more than n times.
func waitLogCount(t *testing.T, p *proc, who, s string, n int) {
	t.Helper()
	start := time.Now()
	for strings.Count(p.stderr.String(), s) <= n {
		if time.Since(start) > 30*time.Second {
			t.Fatalf("%s did not log %q within 30 s:\n%s", who, s, p.stderr)
		}
		time.Sleep(20 * time.Millisecond) // polled: the log has no events
	}
}

// waitLog waits until the process's log holds s; it returns how long that
// took.
func waitLog(t *testing.T, p *proc, who, s string) time.Duration {
	t.Helper()
	start := time.Now()
	for !strings.Contains(p.stderr.String(), s) {
		if time.Since(start) > 30*time.Second {
			t.Fatalf("%s did not log %q within 30 s:\n%s", who, s, p.stderr)
		}
		time.Sleep(20 * time.Millisecond) // polled: the log has no events
	}
	return time.Since(start)
}

// TestFleetRelay: a relay joins the fleet with a token; with paths to two
// exits (of different keys) a user's link through it reaches each exit;
// removing a path takes that exit from the relay, and the exit cuts the
// relay; revoking the relay node makes the other exit cut and refuse it.
// Nothing the relay holds or wrote names the user.
func TestFleetRelay(t *testing.T) {
	l := newFleetLab(t, 2, "sqlite")
	r := l.addRelay(t, "relay-1")
	runCmd(t, "control", "path", "add", "relay-1", "exit-1", "--data", l.ctlData)
	runCmd(t, "control", "path", "add", "relay-1", "exit-2", "--data", l.ctlData)
	const user = "anna-of-the-fleet"
	runCmd(t, "user", "add", user, "--data", l.ctlData)
	ls := r.relayLinks(t, user, 2)
	socks := map[string]string{}
	for _, e := range l.exits {
		socks[e.name] = mustConnect(t, ls[e.name])
		d := l.waitFetch(t, socks[e.name], "through the relay to "+e.name)
		t.Logf("through the relay to %s: first fetch after %v", e.name, d.Round(time.Millisecond))
	}
	// Every REALITY handshake through the relay reaches the exit of its
	// link's key, whichever exit the relay tries first.
	for _, e := range l.exits {
		v := ls[e.name]
		for i := range 6 {
			if err := realityThrough(r.addr, camo.ClientConfig{ServerName: v.SNI, PublicKey: v.PublicKey, ShortID: v.ShortID}); err != nil {
				t.Errorf("handshake %d through the relay with %s's key: %v", i+1, e.name, err)
			}
		}
	}
	m := scrapeText(t, r.metrics)
	for _, e := range l.exits {
		if !strings.Contains(m, fmt.Sprintf("burrow_relay_exit_streams_total{exit=%q}", e.addr)) ||
			strings.Contains(m, fmt.Sprintf("burrow_relay_exit_streams_total{exit=%q} 0\n", e.addr)) {
			t.Errorf("the relay carried nothing to %s:\n%s", e.name, m)
		}
	}
	u := ls["exit-1"].UUID

	// A prober of the relay, whose hello no exit takes, gets the cover's
	// certificate; a REALITY client with a key no exit has, the cover too.
	want, err := probeCover(l.cover.Addr, "cover.test")
	if err != nil {
		t.Fatal(err)
	}
	if got, err := probeCover(r.addr, "cover.test"); err != nil || !bytes.Equal(got, want) {
		t.Errorf("prober of the relay: err %v, the cover's certificate: %v", err, bytes.Equal(got, want))
	}
	_, stranger, _ := camo.GenerateKey()
	if err := realityThrough(r.addr, camo.ClientConfig{ServerName: "cover.test", PublicKey: stranger, ShortID: ls["exit-1"].ShortID}); !errors.Is(err, camo.ErrNotReality) {
		t.Errorf("REALITY client of another key through the relay: %v, want %v", err, camo.ErrNotReality)
	}

	// A path removed: the relay drops the exit, and the exit cuts the relay.
	at := time.Now()
	runCmd(t, "control", "path", "remove", "relay-1", "exit-2", "--data", l.ctlData)
	e2 := l.exits[1]
	r.waitMetrics(t, "exit-2 gone from the relay", func(m string) bool { return !strings.Contains(m, e2.addr) })
	t.Logf("path removed: exit-2 gone from the relay after %v", time.Since(at).Round(time.Millisecond))
	waitLog(t, e2.proc, "exit-2", `relay revoked: its links are cut" relay=relay-1`)
	t.Logf("path removed: exit-2 cut the relay after %v", time.Since(at).Round(time.Millisecond))
	if d := time.Since(at); d > 2*time.Second {
		t.Errorf("a path removal took %v to reach the relay and the exit, want at most 2 s", d)
	}
	if err := l.fetchVia(t, socks["exit-2"], 1<<10); err == nil {
		t.Error("a link through the relay to exit-2 still works with the path removed")
	}
	l.waitFetch(t, socks["exit-1"], "through the relay to exit-1, the other path removed")

	// The control plane down, the relay restarted: it serves from the
	// exits it kept.
	l.killControl(t)
	if err := r.proc.stop(t); err != nil {
		t.Fatalf("relay stop: %v\n%s", err, r.proc.stderr)
	}
	r.proc = start(t, "relay", "run", "--data", r.data, "--debug", "--metrics", r.metrics)
	if err := waitListening(context.Background(), r.addr); err != nil {
		t.Fatalf("relay run: %v\n%s", err, r.proc.stderr)
	}
	l.waitFetch(t, socks["exit-1"], "through the relay restarted with the control plane down")
	// The control plane back: the exit and the relay reconnect (within
	// their backoff, up to 10 s) before the next step measures a revocation.
	const back = "control plane reachable again"
	seen := strings.Count(l.exits[0].proc.stderr.String(), back)
	l.startControl(t)
	waitLogCount(t, r.proc, "the relay", back, 0)
	waitLogCount(t, l.exits[0].proc, "exit-1", back, seen)

	// The relay node revoked: exit-1 cuts it and refuses it.
	exits, err := loadFleetExits(r.data)
	if err != nil || len(exits) != 1 {
		t.Fatalf("the relay keeps %d exits (%v), want 1", len(exits), err)
	}
	tok, err := relaylink.ParseToken(exits[0])
	if err != nil {
		t.Fatal(err)
	}
	if err := relayHandshake(tok); err != nil {
		t.Fatalf("exit-1 refuses the relay before its revocation: %v", err)
	}
	at = time.Now()
	runCmd(t, "control", "node-token", "relay-1", "--revoke", "--data", l.ctlData)
	e1 := l.exits[0]
	waitLog(t, e1.proc, "exit-1", `relay revoked: its links are cut" relay=relay-1`)
	t.Logf("relay revoked: exit-1 cut it after %v", time.Since(at).Round(time.Millisecond))
	if d := time.Since(at); d > 2*time.Second {
		t.Errorf("a revocation took %v to reach the exit, want at most 2 s", d)
	}
	if err := relayHandshake(tok); !errors.Is(err, camo.ErrNotReality) {
		t.Errorf("exit-1 after the relay's revocation: handshake with the relay's credential = %v, want the cover (camo.ErrNotReality)", err)
	}
	// The relay may learn of its revocation (its last sync answer) and drop
	// the exit, or be cut from the control plane first and find the exit
	// refusing it.
	r.waitMetrics(t, "exit-1 gone or down at the relay", func(m string) bool {
		return !strings.Contains(m, e1.addr) || strings.Contains(m, fmt.Sprintf("burrow_relay_exit_up{exit=%q} 0", e1.addr))
	})
	if err := l.fetchVia(t, socks["exit-1"], 1<<10); err == nil {
		t.Error("a link through the revoked relay still works")
	}

	checkFleetRelayHoldsNoUser(t, r, u, user, exits...)
}

// relayHandshake opens a REALITY connection to the exit of tok as the
// relay does.
func relayHandshake(tok *relaylink.Token) error {
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", tok.Addr)
	if err != nil {
		return err
	}
	defer c.Close()
	tc, err := camo.Client(ctx, c, camo.ClientConfig{ServerName: tok.SNI, PublicKey: tok.PublicKey[:], ShortID: tok.ShortID[:], Fingerprint: tok.Fingerprint})
	if err != nil {
		return err
	}
	return tc.Close()
}

// checkFleetRelayHoldsNoUser searches the relay's data dir, its debug log,
// its metrics and its configuration as it runs for the user.
func checkFleetRelayHoldsNoUser(t *testing.T, r *fleetRelayLab, uuid [16]byte, name string, kept ...string) {
	t.Helper()
	secrets := map[string][]byte{
		"user UUID":       []byte(access.FormatUUID(uuid)),
		"user UUID (hex)": []byte(hex.EncodeToString(uuid[:])),
		"user UUID (raw)": uuid[:],
		"user name":       []byte(name),
	}
	cfg, err := relay.LoadConfig(r.data)
	if err != nil {
		t.Fatal(err)
	}
	exits, err := loadFleetExits(r.data)
	if err != nil {
		t.Fatal(err)
	}
	run := cfg.WithExits(append(exits, kept...))
	toks, err := run.Tokens()
	if err != nil {
		t.Fatal(err)
	}
	log := r.proc.stderr.String()
	if !strings.Contains(log, "level=DEBUG") {
		t.Fatalf("the relay logged nothing at debug level; the search would prove nothing:\n%s", log)
	}
	places := map[string][]byte{
		"relay log (debug)":       []byte(log),
		"relay metrics":           []byte(scrapeText(t, r.metrics)),
		"relay config, in memory": fmt.Appendf(nil, "%#v %#v", run, toks),
	}
	filepath.WalkDir(r.data, func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			b, _ := os.ReadFile(p)
			places["relay file "+p] = b
		}
		return nil
	})
	for what, b := range secrets {
		for where, in := range places {
			if bytes.Contains(in, b) {
				t.Errorf("the %s is in the %s", what, where)
			}
		}
	}
}

// TestRelayStatusHealth: a fleet relay reports how many exits it has up.
func TestRelayStatusHealth(t *testing.T) {
	cfg := &relay.Config{Listen: loopbackAddr(t), PublicAddr: "127.0.0.1", Join: "burrow-node://x"}
	cfg.Defaults()
	r, err := relay.New(cfg.WithExits(nil), relay.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if h := relayStatus(r).Health; !strings.HasPrefix(h, "no exits") {
		t.Errorf("health with no exits = %q, want no exits", h)
	}
	tok := relaylink.Token{Name: "r1", Addr: loopbackAddr(t), SNI: "cover.test", Cover: "127.0.0.1:1"} // nothing listens
	if err := r.Reload(cfg.WithExits([]string{tok.String()})); err != nil {
		t.Fatal(err)
	}
	if h := relayStatus(r).Health; h != "ok" {
		t.Errorf("health with a new exit (up until a probe says otherwise) = %q, want ok", h)
	}
	start := time.Now()
	for relayStatus(r).Health != "0 of 1 exits up" {
		if time.Since(start) > 30*time.Second {
			t.Fatalf("health with the exit down for 30 s = %q, want 0 of 1 exits up", relayStatus(r).Health)
		}
		time.Sleep(50 * time.Millisecond) // polled: probes run every second
	}
}
