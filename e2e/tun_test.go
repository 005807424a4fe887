package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

const (
	clientAddr4 = "10.200.1.2"
	serverAddr4 = "10.200.2.2"
	serverAddr6 = "fd00:200:2::2"
	cidrAddr4   = "10.200.3.4" // sent around the tunnel by a cidr rule
	serverName  = "burrow-server.test"
)

// rulesFile is a ru-direct-style rule file: Russian names and one network
// direct, everything else through the tunnel.
const rulesFile = `# e2e rules
domain-suffix ru direct
cidr 10.200.3.4/32 direct
default proxy
`

// tunLab is a lab with the site, a running server and its link.
type tunLab struct {
	*lab
	bin, link, rules string
	serverData       string
	serverProc       *proc
}

func newTUNLab(t *testing.T) *tunLab {
	needRoot(t)
	if _, err := exec.LookPath("curl"); err != nil {
		t.Skip("e2e: curl is missing; install curl")
	}
	bin := burrowBinary(t)
	l := newLab(t)
	tl := &tunLab{lab: l, bin: bin}
	l.in(l.site, "ip", "addr", "add", cidrAddr4+"/24", "dev", "t0")
	l.startHelper("site", l.site, "site")
	l.startHelper("cover", l.server, "cover")
	tl.serverData = filepath.Join(t.TempDir(), "server")
	out := l.in(l.server, bin, "server", "init", "--data", tl.serverData, "--listen", serverAddr,
		"--cover", "127.0.0.1:8443", "--sni", "cover.test", "--public-addr", serverName, "--allow-private-egress")
	for _, line := range strings.Split(out, "\n") {
		if strings.HasPrefix(line, "vless://") {
			tl.link = strings.TrimSpace(line)
		}
	}
	if tl.link == "" {
		t.Fatalf("server init printed no link:\n%s", out)
	}
	// The link names the server; the client finds it in its hosts file and
	// must resolve it before routing everything into the TUN.
	if err := os.WriteFile(filepath.Join("/etc/netns", l.client, "hosts"), []byte("127.0.0.1 localhost\n"+serverAddr4+" "+serverName+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	tl.startServer()
	tl.rules = filepath.Join(t.TempDir(), "rules.txt")
	if err := os.WriteFile(tl.rules, []byte(rulesFile), 0o644); err != nil {
		t.Fatal(err)
	}
	return tl
}

func (tl *tunLab) startServer() {
	tl.serverProc = tl.start("server", tl.server, "burrow server running", tl.bin, "server", "run", "--data", tl.serverData)
}

func (tl *tunLab) startClient() *proc {
	return tl.start("client", tl.client, "full-device mode", tl.bin, "connect", tl.link, "--tun",
		"--dns", siteAddr4+":53", "--rules", tl.rules, "--socks", "127.0.0.1:1080", "--http", "")
}

// curl fetches url from the client namespace with no proxy settings.
func (tl *tunLab) curl(args ...string) (string, error) {
	return tl.curlIn(tl.client, args...)
}

func (tl *tunLab) curlIn(ns string, args ...string) (string, error) {
	return tl.try(ns, append([]string{"curl", "-sS", "--noproxy", "*", "-m", "10"}, args...)...)
}

// captureOK says whether a capture line is allowed on the client–router
// link: TCP between the client and the server port, link-layer control
// (ARP, IPv6 neighbour discovery and multicast listener reports), and, when direct is set, TCP to
// the destinations the rules send around the tunnel.
func captureOK(line string, direct bool) bool {
	f := strings.Fields(line)
	if len(f) == 0 {
		return true
	}
	switch f[0] {
	case "ready", "arp":
		return true
	case "ip4":
		if len(f) < 6 {
			return false
		}
		proto, src, dst, sp, dp := f[1], f[2], f[3], f[4], f[5]
		if proto != "6" {
			return false
		}
		if src == clientAddr4 && dst == serverAddr4 && dp == "443" || src == serverAddr4 && dst == clientAddr4 && sp == "443" {
			return true
		}
		if direct {
			for _, d := range []string{directAddr4, cidrAddr4} {
				if src == clientAddr4 && dst == d && dp == "80" || src == d && dst == clientAddr4 && sp == "80" {
					return true
				}
			}
		}
	case "ip6":
		// MLDv2 reports: hop-by-hop header, from link-local (or ::) to
		// link-scope multicast.
		if len(f) >= 4 && f[1] == "0" && (f[2] == "::" || strings.HasPrefix(f[2], "fe80:")) && strings.HasPrefix(f[3], "ff02:") {
			return true
		}
		if len(f) >= 5 && f[1] == "58" {
			switch f[4] { // ICMPv6 type: MLD 130-132, 143; ND 133-136
			case "130", "131", "132", "133", "134", "135", "136", "143":
				return true
			}
		}
	}
	return false
}

// checkCapture checks the capture lines printed since offset from and
// returns the new offset. wantTunnel and wantDirect require that tunnel
// frames, and frames to the direct-routed destinations, were seen at all
// (so an empty capture cannot pass).
func (tl *tunLab) checkCapture(t *testing.T, phase string, c *proc, from int, direct, wantTunnel bool) int {
	t.Helper()
	lines, next := tl.captureUntilMark(t, phase, c, from)
	bad, tunnel, around := 0, 0, 0
	for _, line := range lines {
		switch {
		case captureOK(line, false):
			if strings.HasPrefix(line, "ip4 6 ") {
				tunnel++
			}
		case captureOK(line, direct):
			around++
		default:
			if bad < 20 {
				t.Errorf("%s: capture on the client–router link saw %q; want only TCP to the server port %s", phase, line, serverAddr)
			}
			bad++
		}
	}
	if bad > 0 {
		t.Errorf("%s: %d frames outside the tunnel (of %d)", phase, bad, len(lines))
	}
	if wantTunnel && tunnel == 0 {
		t.Errorf("%s: the capture saw no tunnel frames at all; is it capturing?", phase)
	}
	if direct && around == 0 {
		t.Errorf("%s: the capture saw no frames to the direct-routed destinations", phase)
	}
	t.Logf("%s: capture saw %d frames: %d tunnel, %d direct by rule, %d outside", phase, len(lines), tunnel, around, bad)
	return next
}

// captureUntilMark sends a marker frame over the client–router link and waits
// until the capture has printed it: the capture prints the link's frames in
// order, so by then it has printed every frame of the phase. It returns the
// lines printed since offset from, before the marker's, and the offset just
// past the marker's line (frames after it belong to the next phase).
func (tl *tunLab) captureUntilMark(t *testing.T, phase string, c *proc, from int) ([]string, int) {
	t.Helper()
	token := strconv.Itoa(from) // offsets only grow: each phase's marker is its own
	if out, err := tl.helper(tl.client, "mark", "c0", token); err != nil {
		t.Fatalf("%s: send the capture's marker frame: %v\n%s", phase, err, out)
	}
	mark := "mark " + token + "\n"
	deadline := time.Now().Add(30 * time.Second)
	for {
		rest := c.Output()[from:]
		if i := strings.Index("\n"+rest, "\n"+mark); i >= 0 {
			var lines []string
			if before := strings.TrimSuffix(rest[:i], "\n"); before != "" {
				lines = strings.Split(before, "\n")
			}
			return lines, from + i + len(mark)
		}
		select {
		case <-c.done:
			t.Fatalf("%s: the capture exited before it saw the marker frame: %v\n%s", phase, c.err, rest)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: the capture did not print the marker frame within 30s", phase)
		}
		time.Sleep(20 * time.Millisecond) // polling interval
	}
}

func TestTUN(t *testing.T) {
	tl := newTUNLab(t)
	before := tl.netState()
	resolvBefore, _ := os.ReadFile(tl.resolvPath())
	if !strings.Contains(string(resolvBefore), siteAddr4) {
		t.Fatalf("the client namespace's resolv.conf = %q, want it to name %s", resolvBefore, siteAddr4)
	}

	// Without the tunnel the site is reachable directly (so a leak would show).
	if out, err := tl.curl("http://" + siteAddr4 + "/plain"); err != nil || !strings.Contains(out, "from="+clientAddr4) {
		t.Fatalf("direct fetch before the tunnel: %q, %v", out, err)
	}

	capture := tl.startHelper("capture", tl.client, "capture", "c0")
	mark := len(capture.Output())
	client := tl.startClient()

	// TCP through the TUN, by name and by address, IPv4 and IPv6: the site
	// sees the server's address.
	fetches := []struct {
		name string
		args []string
		from string
	}{
		{"name v4", []string{"-4", "http://" + siteName + "/a"}, serverAddr4},
		{"addr v4", []string{"http://" + siteAddr4 + "/b"}, serverAddr4},
		{"name v6", []string{"-6", "http://" + siteName + "/c"}, serverAddr6},
		{"addr v6", []string{"http://[" + siteAddr6 + "]/d"}, serverAddr6},
	}
	for _, f := range fetches {
		path := f.args[len(f.args)-1]
		path = path[strings.LastIndex(path, "/"):]
		want := fmt.Sprintf("burrow-site path=%s from=%s\n", path, f.from)
		out, err := tl.curl(f.args...)
		if err != nil || out != want {
			t.Errorf("curl %s (%s) = %q, %v; want %q\nclient log:\n%s", f.name, strings.Join(f.args, " "), out, err, want, client.Output())
		}
	}

	// UDP through the tunnel: a DNS query straight at the site's server
	// (hijacked, relayed through the tunnel) and a small echo, v4 and v6.
	if out, err := tl.helper(tl.client, "dnsq", siteName, "A", siteAddr4+":53"); err != nil || !strings.Contains(out, siteAddr4) {
		t.Errorf("DNS A %s via %s = %q, %v; want %s", siteName, siteAddr4, out, err, siteAddr4)
	}
	if out, err := tl.helper(tl.client, "dnsq", siteName, "AAAA", "[2001:db8::53]:53"); err != nil || !strings.Contains(out, siteAddr6) {
		t.Errorf("DNS AAAA %s via an unreachable resolver = %q, %v; want %s (every query is relayed)", siteName, out, err, siteAddr6)
	}
	for _, e := range []struct{ addr, from string }{
		{siteAddr4 + ":7", serverAddr4},
		{"[" + siteAddr6 + "]:7", serverAddr6},
	} {
		want := "echo from=" + e.from + " burrow-udp"
		if out, err := tl.helper(tl.client, "udp", e.addr, "burrow-udp"); err != nil || strings.TrimSpace(out) != want {
			t.Errorf("UDP echo %s = %q, %v; want %q", e.addr, out, err, want)
		}
	}
	// The SOCKS5 frontend keeps working alongside, by the same rules.
	if out, err := tl.curl("--socks5", "127.0.0.1:1080", "http://"+siteAddr4+"/socks"); err != nil || !strings.Contains(out, "from="+serverAddr4) {
		t.Errorf("curl via SOCKS5 = %q, %v; want from=%s", out, err, serverAddr4)
	}
	mark = tl.checkCapture(t, "tunnel up", capture, mark, false, true)

	// Split routing: a .ru name and a cidr-ruled address go around the
	// tunnel (the site sees the client's own address); the rest through it.
	splits := []struct {
		name string
		args []string
		from string
	}{
		{"domain-suffix rule (TUN)", []string{"http://" + directName + "/ru"}, clientAddr4},
		{"cidr rule (TUN)", []string{"http://" + cidrAddr4 + "/cidr"}, clientAddr4},
		{"no rule (TUN)", []string{"-4", "http://" + siteName + "/other"}, serverAddr4},
		{"domain-suffix rule (SOCKS5)", []string{"--socks5-hostname", "127.0.0.1:1080", "http://" + directName + "/sru"}, clientAddr4},
		{"cidr rule (SOCKS5)", []string{"--socks5", "127.0.0.1:1080", "http://" + cidrAddr4 + "/scidr"}, clientAddr4},
	}
	for _, s := range splits {
		out, err := tl.curl(s.args...)
		if err != nil || !strings.Contains(out, "from="+s.from) {
			t.Errorf("%s: curl %s = %q, %v; want from=%s", s.name, strings.Join(s.args, " "), out, err, s.from)
		}
	}
	mark = tl.checkCapture(t, "split routing", capture, mark, true, true)

	// Outage: the server stops; nothing is sent around the tunnel (kill
	// switch), and the tunnel comes back when the server does.
	if err := tl.serverProc.stop(syscall.SIGTERM); err != nil {
		t.Fatalf("stop server: %v", err)
	}
	for _, u := range []string{"http://" + siteAddr4 + "/down", "http://" + siteName + "/down", "http://[" + siteAddr6 + "]/down"} {
		if out, err := tl.curl("-m", "4", u); err == nil {
			t.Errorf("curl %s during the outage = %q, want a failure", u, out)
		}
	}
	if out, err := tl.helper(tl.client, "udp", siteAddr4+":7", "outage"); err == nil {
		t.Errorf("UDP echo during the outage = %q, want no answer", out)
	}
	mark = tl.checkCapture(t, "outage", capture, mark, false, false)
	tl.startServer()
	var out string
	var err error
	for range 20 {
		if out, err = tl.curl("-4", "http://"+siteName+"/back"); err == nil {
			break
		}
		time.Sleep(500 * time.Millisecond)
	}
	if err != nil || !strings.Contains(out, "from="+serverAddr4) {
		t.Errorf("curl after the server came back = %q, %v; want from=%s", out, err, serverAddr4)
	}
	mark = tl.checkCapture(t, "reconnected", capture, mark, false, true)

	// Clean exit: routes, rules and resolver as they were.
	if err := client.stop(syscall.SIGTERM); err != nil {
		t.Errorf("client exit after SIGTERM: %v\n%s", err, client.Output())
	}
	if after := tl.netState(); after != before {
		t.Errorf("after exit the client namespace differs:\n--- before\n%s\n--- after\n%s", before, after)
	}
	tl.checkClean(t, "after SIGTERM", resolvBefore)

	// Stop from the terminal (Ctrl-C): the same.
	stopped := tl.startClient()
	if got, _ := os.ReadFile(tl.resolvPath()); !strings.Contains(string(got), "written by burrow") {
		t.Errorf("resolv.conf while the tunnel is up = %q, want burrow's", got)
	}
	if err := stopped.stop(syscall.SIGINT); err != nil {
		t.Errorf("client exit after SIGINT: %v\n%s", err, stopped.Output())
	}
	tl.checkClean(t, "after SIGINT", resolvBefore)

	// Crash: kill -9 leaves the kill switch in place (no traffic leaves in
	// the clear), and the next start undoes it first, then comes up.
	crashed := tl.startClient()
	if out, err := tl.curl("http://" + siteAddr4 + "/pre-crash"); err != nil || !strings.Contains(out, "from="+serverAddr4) {
		t.Errorf("curl with the second client = %q, %v", out, err)
	}
	crashed.stop(syscall.SIGKILL)
	if out, err := tl.curl("-m", "3", "http://"+siteAddr4+"/crashed"); err == nil {
		t.Errorf("curl after the client was killed = %q, want a failure (kill switch)", out)
	}
	mark = tl.checkCapture(t, "after crash", capture, mark, false, true)
	restarted := tl.startClient()
	if out, err := tl.curl("http://" + siteAddr4 + "/restarted"); err != nil || !strings.Contains(out, "from="+serverAddr4) {
		t.Errorf("curl after a restart over a crashed run = %q, %v; want from=%s\n%s", out, err, serverAddr4, restarted.Output())
	}
	// --tun-restore leaves a running burrow's settings alone.
	if out, err := tl.try(tl.client, tl.bin, "connect", "--tun-restore"); err == nil || !strings.Contains(out, "running") {
		t.Errorf("connect --tun-restore while a client runs: %v\n%s\nwant an error saying one is running", err, out)
	}
	if err := restarted.stop(syscall.SIGTERM); err != nil {
		t.Errorf("restarted client exit after SIGTERM: %v\n%s", err, restarted.Output())
	}
	tl.checkClean(t, "after kill -9, restart and SIGTERM", resolvBefore)

	// Crash again, and undo it with --tun-restore instead of a start.
	crashed = tl.startClient()
	crashed.stop(syscall.SIGKILL)
	tl.checkCapture(t, "after the second crash", capture, mark, false, false)
	capture.stop(syscall.SIGTERM)
	if out, err := tl.try(tl.client, tl.bin, "connect", "--tun-restore"); err != nil {
		t.Fatalf("connect --tun-restore: %v\n%s", err, out)
	}
	if after := tl.netState(); after != before {
		t.Errorf("after --tun-restore the client namespace differs:\n--- before\n%s\n--- after\n%s", before, after)
	}
	tl.checkClean(t, "after kill -9 and --tun-restore", resolvBefore)
	if out, err := tl.curl("http://" + siteAddr4 + "/restored"); err != nil || !strings.Contains(out, "from="+clientAddr4) {
		t.Errorf("direct fetch after restore = %q, %v; want from=%s", out, err, clientAddr4)
	}
}

// TestTUNSetns: a burrow that entered the client's network namespace by
// setns alone (nsenter --net, no mount namespace) sees the machine's
// /etc/resolv.conf. It must leave that file alone — DNS is still carried,
// since the TUN answers every query to port 53 — and its state must be the
// namespace's, so stopping it leaves nothing behind.
func TestTUNSetns(t *testing.T) {
	if _, err := exec.LookPath("nsenter"); err != nil {
		t.Skip("e2e: nsenter (util-linux) is missing")
	}
	tl := newTUNLab(t)
	resolvBefore, _ := os.ReadFile(tl.resolvPath())
	host := fileSnapshot(hostResolv)
	// The machine's hosts file does not name the server: give its address.
	link := strings.Replace(tl.link, "@"+serverName+":", "@"+serverAddr4+":", 1)
	client := tl.startCommand("client", "full-device mode", "nsenter", "--net=/run/netns/"+tl.client,
		tl.bin, "connect", link, "--tun", "--dns", siteAddr4+":53", "--socks", "", "--http", "")
	if got := fileSnapshot(hostResolv); got != host {
		t.Errorf("the machine's %s while a setns client runs = %s, want %s as before", hostResolv, got, host)
	}
	if !strings.Contains(client.Output(), "left alone") {
		t.Errorf("client log says nothing about leaving the resolver alone:\n%s", client.Output())
	}
	if out, err := tl.helper(tl.client, "dnsq", siteName, "A", "[2001:db8::53]:53"); err != nil || !strings.Contains(out, siteAddr4) {
		t.Errorf("DNS A %s via an unreachable resolver = %q, %v; want %s (the TUN answers every query)", siteName, out, err, siteAddr4)
	}
	if out, err := tl.curl("-4", "http://"+siteName+"/setns"); err != nil || !strings.Contains(out, "from="+serverAddr4) {
		t.Errorf("curl through the setns client = %q, %v; want from=%s\n%s", out, err, serverAddr4, client.Output())
	}
	if err := client.stop(syscall.SIGTERM); err != nil {
		t.Errorf("client exit after SIGTERM: %v\n%s", err, client.Output())
	}
	tl.checkClean(t, "after SIGTERM of the setns client", resolvBefore)
	if got := fileSnapshot(hostResolv); got != host {
		t.Errorf("the machine's %s after the setns client = %s, want %s", hostResolv, got, host)
	}
}

// TestTUNTwoNamespaces: two clients, each with its own burrow0 in its own
// network namespace, run at once; stopping one leaves the other's routes,
// resolver and state alone, and stopping both leaves neither namespace
// changed (their state files are not one shared file).
func TestTUNTwoNamespaces(t *testing.T) {
	tl := newTUNLab(t)
	ns2 := tl.addClient()
	tl.writeNSFile(ns2, "hosts", "127.0.0.1 localhost\n"+serverAddr4+" "+serverName+"\n")
	nss := []string{tl.client, ns2}
	var before [2][]byte
	var clients [2]*proc
	for i, ns := range nss {
		before[i], _ = os.ReadFile(filepath.Join("/etc/netns", ns, "resolv.conf"))
		clients[i] = tl.start("client "+ns, ns, "full-device mode", tl.bin, "connect", tl.link, "--tun",
			"--dns", siteAddr4+":53", "--socks", "", "--http", "")
	}
	fetch := func(phase string, i int) {
		t.Helper()
		if out, err := tl.curlIn(nss[i], "-4", "http://"+siteName+"/"+nss[i]); err != nil || !strings.Contains(out, "from="+serverAddr4) {
			t.Errorf("%s: curl in %s = %q, %v; want from=%s\n%s", phase, nss[i], out, err, serverAddr4, clients[i].Output())
		}
		if got, _ := os.ReadFile(filepath.Join("/etc/netns", nss[i], "resolv.conf")); !strings.Contains(string(got), "written by burrow") {
			t.Errorf("%s: resolv.conf of %s = %q, want burrow's", phase, nss[i], got)
		}
	}
	fetch("both up", 0)
	fetch("both up", 1)
	if err := clients[0].stop(syscall.SIGTERM); err != nil {
		t.Errorf("first client exit after SIGTERM: %v\n%s", err, clients[0].Output())
	}
	tl.checkCleanIn(t, nss[0], "first client stopped", before[0])
	fetch("first client stopped", 1)
	if err := clients[1].stop(syscall.SIGTERM); err != nil {
		t.Errorf("second client exit after SIGTERM: %v\n%s", err, clients[1].Output())
	}
	tl.checkCleanIn(t, nss[1], "both stopped", before[1])
}

// TestTUNErrors: the user-facing failures are plain.
func TestTUNErrors(t *testing.T) {
	needRoot(t)
	bin := burrowBinary(t)
	l := newLab(t)
	link := "vless://00000000-0000-4000-8000-000000000001@10.200.2.2:443?security=reality&sni=cover.test&pbk=" +
		"Z84J2IelR9ch3k8VtlVhhs5ycBUlXA7wHBWcBrjqnAw&sid=&fp=chrome&type=tcp&flow=xtls-rprx-vision&encryption=none#x"
	// The interface name is taken.
	l.in(l.client, "ip", "tuntap", "add", "burrow0", "mode", "tun")
	out, err := l.try(l.client, bin, "connect", link, "--tun", "--socks", "", "--http", "")
	if err == nil || !strings.Contains(out, "already exists") {
		t.Errorf("connect --tun with burrow0 taken: %v\n%s\nwant an error saying the interface exists", err, out)
	}
	// The routing table is taken by someone else.
	l.in(l.client, "ip", "route", "add", "blackhole", "10.99.0.0/16", "table", fmt.Sprint(0x4255))
	out, err = l.try(l.client, bin, "connect", link, "--tun", "--tun-name", "burrow1", "--socks", "", "--http", "")
	if err == nil || !strings.Contains(out, "already in use") {
		t.Errorf("connect --tun with table taken: %v\n%s\nwant an error saying the table is in use", err, out)
	}
	if _, err := l.try(l.client, "ip", "link", "show", "burrow1"); err == nil {
		t.Error("burrow1 left behind after a failed start")
	}
	// Not root: a plain message, not an ioctl error.
	if _, err := exec.LookPath("setpriv"); err == nil {
		out, err = l.try(l.client, "setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
			bin, "connect", link, "--tun", "--tun-name", "burrow2", "--socks", "", "--http", "")
		if err == nil || !strings.Contains(out, "needs root") {
			t.Errorf("connect --tun as nobody: %v\n%s\nwant an error saying it needs root", err, out)
		}
	}
}
