package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/dns/dnsmessage"

	"github.com/burrow-vpn/burrow/internal/access"
	"github.com/burrow-vpn/burrow/internal/bidi"
	"github.com/burrow-vpn/burrow/internal/camo"
	"github.com/burrow-vpn/burrow/internal/coversite"
	"github.com/burrow-vpn/burrow/internal/links"
	"github.com/burrow-vpn/burrow/internal/relay"
	"github.com/burrow-vpn/burrow/internal/server"
)

// relayLab is an exit (or several copies of one), a relay in front of
// them, and cover sites, all on loopback and run in-process.
type relayLab struct {
	exitCover, relayCover *coversite.Site
	exits                 []*labExit
	token                 []string // relay token per exit
	relayData, relayAddr  string
	relayMetrics          string
	relay                 *proc
}

type labExit struct {
	data, addr, metrics string
	proc                *proc
}

// runCmd runs `burrow ARGS` to completion and returns its stdout.
func runCmd(t *testing.T, args ...string) string {
	t.Helper()
	var out, errOut bytes.Buffer
	if err := run(context.Background(), args, &out, &errOut); err != nil {
		t.Fatalf("burrow %s: %v\n%s", strings.Join(args, " "), err, errOut.String())
	}
	return out.String()
}

func loopbackAddr(t *testing.T) string {
	t.Helper()
	p, err := freePort()
	if err != nil {
		t.Fatal(err)
	}
	return "127.0.0.1:" + p
}

// newRelayLab makes exits copies of one server (same key and users),
// each with a token for relay "r1", and a relay (with its own cover when
// ownCover) in front of them. Nothing runs yet but the cover sites.
func newRelayLab(t *testing.T, exits int, ownCover bool) *relayLab {
	t.Helper()
	l := &relayLab{}
	var err error
	if l.exitCover, err = coversite.Start("127.0.0.1:0", "cover.test"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.exitCover.Close() })
	first := &labExit{data: t.TempDir() + "/exit0", addr: loopbackAddr(t)}
	runCmd(t, "server", "init", "--data", first.data, "--listen", first.addr, "--cover", l.exitCover.Addr, "--sni", "cover.test",
		"--public-addr", "127.0.0.1", "--allow-private-egress")
	tok := strings.TrimSpace(runCmd(t, "server", "relay-token", "r1", "--data", first.data))
	l.exits, l.token = append(l.exits, first), append(l.token, tok)
	for i := 1; i < exits; i++ {
		e := &labExit{data: fmt.Sprintf("%s/exit%d", t.TempDir(), i), addr: loopbackAddr(t)}
		copyServerDir(t, first.data, e.data, e.addr)
		l.exits = append(l.exits, e)
		l.token = append(l.token, strings.TrimSpace(runCmd(t, "server", "relay-token", "r1", "--data", e.data)))
	}
	l.relayData, l.relayAddr = t.TempDir()+"/relay", loopbackAddr(t)
	args := []string{"relay", "init", "--data", l.relayData, "--listen", l.relayAddr, "--public-addr", "127.0.0.1"}
	for _, tok := range l.token {
		args = append(args, "--exit", tok)
	}
	if ownCover {
		if l.relayCover, err = coversite.Start("127.0.0.1:0", "relaycover.test"); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { l.relayCover.Close() })
		args = append(args, "--cover", l.relayCover.Addr, "--sni", "relaycover.test")
	}
	runCmd(t, args...)
	return l
}

// copyServerDir makes dst a copy of the server in src listening on addr.
func copyServerDir(t *testing.T, src, dst, addr string) {
	t.Helper()
	if err := os.MkdirAll(dst, 0o700); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{server.ConfigFile, server.StoreFile} {
		b, err := os.ReadFile(filepath.Join(src, f))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dst, f), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	cfg, err := server.LoadConfig(dst)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Listen = addr
	if err := server.WriteConfig(dst, cfg); err != nil {
		t.Fatal(err)
	}
}

// setBudget sets the relay's leg budget in relay.json.
func (l *relayLab) setBudget(t *testing.T, budget int64) {
	t.Helper()
	cfg, err := relay.LoadConfig(l.relayData)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Budget = budget
	if err := relay.WriteConfig(l.relayData, cfg); err != nil {
		t.Fatal(err)
	}
}

// startExit runs exit i (with --debug and metrics).
func (l *relayLab) startExit(t *testing.T, i int) {
	t.Helper()
	e := l.exits[i]
	e.metrics = loopbackAddr(t)
	e.proc = start(t, "server", "run", "--data", e.data, "--debug", "--metrics", e.metrics)
	if err := waitListening(context.Background(), e.addr); err != nil {
		t.Fatalf("exit %d: %v\n%s", i, err, e.proc.stderr)
	}
}

// startRelay runs the relay (with --debug and metrics).
func (l *relayLab) startRelay(t *testing.T) {
	t.Helper()
	l.relayMetrics = loopbackAddr(t)
	l.relay = start(t, "relay", "run", "--data", l.relayData, "--debug", "--metrics", l.relayMetrics)
	if err := waitListening(context.Background(), l.relayMetrics); err != nil {
		t.Fatalf("relay: %v\n%s", err, l.relay.stderr)
	}
}

// link is `burrow user show owner --via RELAY` on exit 0, after waiting
// until the relay has announced itself to the exit when it has a cover
// of its own (the link then carries the relay's server name).
func (l *relayLab) link(t *testing.T, transport string) *links.VLESS {
	t.Helper()
	if l.relayCover != nil {
		l.waitAnnounced(t)
	}
	out := runCmd(t, "user", "show", "owner", "--data", l.exits[0].data, "--via", l.relayAddr, "--transport", transport)
	for _, line := range strings.Split(out, "\n") {
		if strings.HasPrefix(line, "vless://") {
			v, err := links.ParseVLESS(line)
			if err != nil {
				t.Fatal(err)
			}
			return v
		}
	}
	t.Fatalf("user show --via printed no link:\n%s", out)
	return nil
}

// waitAnnounced waits until exit 0's store holds the relay's address.
func (l *relayLab) waitAnnounced(t *testing.T) {
	t.Helper()
	st, err := access.OpenSQLite(filepath.Join(l.exits[0].data, server.StoreFile))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	deadline := time.Now().Add(30 * time.Second)
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		rl, err := st.RelayByName(context.Background(), "r1")
		if err == nil && rl.AnnouncedAddr == l.relayAddr {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the relay did not announce itself to the exit within 30s (%v, %+v)\nrelay:\n%s", err, rl, l.relay.stderr)
		}
		<-tick.C
	}
}

// connect runs `burrow connect` with link and returns its SOCKS and HTTP addresses.
func connectLink(t *testing.T, link string) (socks, httpAddr string) {
	t.Helper()
	c := startClient(t, link, true)
	return c.socks, c.http
}

// scrapeText returns the metrics text at addr.
func scrapeText(t *testing.T, addr string) string {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

// clientIP is the loopback address test clients reach the relay from
// (through fromClientIP), so the exit's logs and metrics can be searched
// for it.
const clientIP = "127.0.0.9"

// fromClientIP forwards connections to addr, dialing from clientIP, and
// returns its own address.
func fromClientIP(t *testing.T, addr string) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(clientIP)}}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				up, err := d.Dial("tcp", addr)
				if err != nil {
					return
				}
				defer up.Close()
				bidi.Copy(context.Background(), c, up)
			}()
		}
	}()
	return ln.Addr().String()
}

// TestRelayEndToEnd: burrow connect with a link from `user show --via`
// works through a relay (with its own cover) for TCP and UDP, on tcp and
// xhttp links; what the relay holds and writes names no user, no
// destination and not the exit's key; the exit's logs and metrics name no
// client address.
func TestRelayEndToEnd(t *testing.T) {
	site := testSite(t)
	dns := udpDNS(t)
	l := newRelayLab(t, 1, true)
	// The relay's links do not rotate here (nothing freezes them; -1 also
	// turns off the learning); TestRelayFailover and TestRelayCheck run
	// with the default, learned budget, and TestRelayLegLearnsFreeze
	// (internal/censorlab/tunnels) rotates the leg behind a real freeze.
	l.setBudget(t, -1)
	l.startExit(t, 0)
	l.startRelay(t)
	viaClientIP := fromClientIP(t, l.relayAddr)
	var uuid [16]byte
	for _, transport := range []string{"tcp", "xhttp"} {
		t.Run(transport, func(t *testing.T) {
			link := l.link(t, transport)
			if got := fmt.Sprintf("%s:%d", link.Host, link.Port); got != l.relayAddr || link.SNI != "relaycover.test" {
				t.Fatalf("link via the relay: address %s, sni %s; want %s, relaycover.test", got, link.SNI, l.relayAddr)
			}
			uuid = link.UUID
			host, port, _ := net.SplitHostPort(viaClientIP)
			link.Host = host
			p, _ := strconv.Atoi(port)
			link.Port = uint16(p)
			socks, httpAddr := connectLink(t, link.String())
			const size = 8 << 20
			want := streamSum(size)
			_, sitePort, _ := net.SplitHostPort(site)
			for _, proxy := range []string{"socks5://" + socks, "http://" + httpAddr} {
				sum, n, err := get(proxy, fmt.Sprintf("http://localhost:%s/data?n=%d", sitePort, size))
				if err != nil || n != size || sum != want {
					t.Errorf("GET via %s through the relay: %d bytes, sha256 %s, err %v; want %d bytes, sha256 %s\nrelay:\n%s", proxy, n, sum, err, size, want, l.relay.stderr)
				}
			}
			if err := socksDNS(socks, dns); err != nil {
				t.Errorf("UDP through the relay: %v", err)
			}
		})
	}
	m := scrapeText(t, l.relayMetrics)
	for _, want := range []string{`burrow_relay_exit_up{exit="` + l.exits[0].addr + `"} 1`, `burrow_relay_connections_total{result="exit"}`} {
		if !strings.Contains(m, want) {
			t.Errorf("relay metrics lack %q:\n%s", want, m)
		}
	}
	// The clients rode trunks: a relay that fell back to a session per
	// client (as with an exit from before trunks) shows none.
	trunks := `burrow_relay_trunks{exit="` + l.exits[0].addr + `"} `
	if !strings.Contains(m, trunks) || strings.Contains(m, trunks+"0\n") {
		t.Errorf("the relay's clients rode no trunk:\n%s", m)
	}
	exitMetrics := scrape(t, l.exits[0].metrics)
	if exitMetrics["burrow_relay_links_active"] < 1 || exitMetrics[`burrow_relay_streams_total{result="accepted"}`] < 1 {
		t.Errorf("the exit's metrics show no relay link or relayed stream: %v", exitMetrics)
	}
	checkSplitKnowledge(t, l, uuid, site, dns, m)
}

// checkSplitKnowledge searches everything the relay holds and wrote for
// the user's UUID, the destinations and the exit's private key, and the
// exit's logs and metrics for the client's address.
func checkSplitKnowledge(t *testing.T, l *relayLab, uuid [16]byte, site, dns, relayMetrics string) {
	t.Helper()
	exitCfg, err := server.LoadConfig(l.exits[0].data)
	if err != nil {
		t.Fatal(err)
	}
	priv, err := server.DecodeKey(exitCfg.PrivateKey)
	if err != nil {
		t.Fatal(err)
	}
	_, sitePort, _ := net.SplitHostPort(site)
	secrets := map[string][]byte{
		"user UUID":              []byte(access.FormatUUID(uuid)),
		"user UUID (hex)":        []byte(hex.EncodeToString(uuid[:])),
		"user UUID (raw)":        uuid[:],
		"destination name":       []byte("localhost:" + sitePort),
		"destination address":    []byte(site),
		"DNS server":             []byte(dns),
		"queried name":           []byte("example.org"),
		"exit private key":       []byte(exitCfg.PrivateKey),
		"exit private key (raw)": priv,
		"exit private key (hex)": []byte(hex.EncodeToString(priv)),
		"exit private key (b64)": []byte(base64.StdEncoding.EncodeToString(priv)),
		"user name":              []byte("owner"),
	}
	relayCfg, err := relay.LoadConfig(l.relayData)
	if err != nil {
		t.Fatal(err)
	}
	toks, err := relayCfg.Tokens()
	if err != nil {
		t.Fatal(err)
	}
	places := map[string][]byte{
		"relay log (debug)":       []byte(l.relay.stderr.String()),
		"relay metrics":           []byte(relayMetrics),
		"relay config, in memory": fmt.Appendf(nil, "%#v %#v", relayCfg, toks),
	}
	filepath.WalkDir(l.relayData, func(p string, d os.DirEntry, err error) error {
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
	exitLog := l.exits[0].proc.stderr.String()
	for who, log := range map[string]string{"exit": exitLog, "relay": l.relay.stderr.String()} {
		if !strings.Contains(log, "level=DEBUG") {
			t.Fatalf("the %s logged nothing at debug level; the searches would prove nothing:\n%s", who, log)
		}
	}
	for where, in := range map[string]string{"exit log (debug)": exitLog, "exit metrics": scrapeText(t, l.exits[0].metrics), "relay log (debug)": l.relay.stderr.String()} {
		if strings.Contains(in, clientIP) {
			t.Errorf("the client's address %s is in the %s", clientIP, where)
		}
	}
}

// socksDNS asks dns, a DNS server, for example.org through the SOCKS5
// proxy's UDP ASSOCIATE and checks the answer.
func socksDNS(socks, dns string) error {
	ctrl, err := net.Dial("tcp", socks)
	if err != nil {
		return err
	}
	defer ctrl.Close()
	ctrl.SetDeadline(time.Now().Add(30 * time.Second))
	ctrl.Write([]byte{5, 1, 0})
	var sel [2]byte
	if _, err := io.ReadFull(ctrl, sel[:]); err != nil || sel != [2]byte{5, 0} {
		return fmt.Errorf("greeting reply %v, %v", sel, err)
	}
	ctrl.Write([]byte{5, 3, 0, 1, 0, 0, 0, 0, 0, 0})
	var rep [10]byte
	if _, err := io.ReadFull(ctrl, rep[:]); err != nil || rep[1] != 0 || rep[3] != 1 {
		return fmt.Errorf("UDP ASSOCIATE reply %v, %v", rep, err)
	}
	return dnsOverSocksUDP(rep, dns)
}

// dnsOverSocksUDP sends a DNS query to dns through the SOCKS5 UDP relay
// named in rep (an ASSOCIATE reply) and checks the answer (A 192.0.2.7).
func dnsOverSocksUDP(rep [10]byte, dns string) error {
	relay := &net.UDPAddr{IP: net.IP(rep[4:8]), Port: int(binary.BigEndian.Uint16(rep[8:10]))}
	uc, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		return err
	}
	defer uc.Close()
	q := dnsmessage.Message{Header: dnsmessage.Header{ID: 0x4243, RecursionDesired: true},
		Questions: []dnsmessage.Question{{Name: dnsmessage.MustNewName("example.org."), Type: dnsmessage.TypeA, Class: dnsmessage.ClassINET}}}
	query, _ := q.Pack()
	host, port, _ := net.SplitHostPort(dns)
	p, _ := strconv.Atoi(port)
	hdr := append([]byte{0, 0, 0, 1}, net.ParseIP(host).To4()...)
	hdr = binary.BigEndian.AppendUint16(hdr, uint16(p))
	buf := make([]byte, 2048)
	for range 10 {
		uc.WriteTo(append(hdr, query...), relay)
		uc.SetReadDeadline(time.Now().Add(3 * time.Second))
		n, _, err := uc.ReadFrom(buf)
		if err != nil {
			continue
		}
		var answer dnsmessage.Message
		if n < 10 || answer.Unpack(buf[10:n]) != nil {
			return fmt.Errorf("bad SOCKS UDP reply % x", buf[:n])
		}
		if answer.Header.ID != 0x4243 || len(answer.Answers) != 1 {
			return fmt.Errorf("DNS answer %+v, want one answer for id 0x4243", answer.Header)
		}
		if a, ok := answer.Answers[0].Body.(*dnsmessage.AResource); !ok || a.A != [4]byte{192, 0, 2, 7} {
			return fmt.Errorf("DNS answer %v, want A 192.0.2.7", answer.Answers[0].Body)
		}
		return nil
	}
	return fmt.Errorf("no DNS answer through the SOCKS5 UDP relay")
}

// startExitProcess runs exit i as a separate process of the real binary,
// so the test can kill it (SIGKILL: every socket of it reset at once).
func (l *relayLab) startExitProcess(t *testing.T, i int) *exec.Cmd {
	t.Helper()
	e := l.exits[i]
	cmd := exec.Command(burrowBinary(t), "server", "run", "--data", e.data)
	cmd.Stderr = &syncBuffer{}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	if err := waitListening(context.Background(), e.addr); err != nil {
		t.Fatalf("exit %d: %v", i, err)
	}
	return cmd
}

// getOnce fetches n bytes of the test stream through proxy and checks them.
func getOnce(proxy, site string, n int64) error {
	sum, got, err := get(proxy, fmt.Sprintf("http://%s/data?n=%d", site, n))
	if err != nil {
		return err
	}
	if got != n || sum != streamSum(n) {
		return fmt.Errorf("%d bytes, sha256 %s; want %d bytes of the test stream", got, sum, n)
	}
	return nil
}

// probeCover completes a TLS handshake with addr for sni and returns the
// certificate it got.
func probeCover(addr, sni string) ([]byte, error) {
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: 10 * time.Second}, "tcp", addr, &tls.Config{ServerName: sni, InsecureSkipVerify: true})
	if err != nil {
		return nil, err
	}
	defer c.Close()
	return c.ConnectionState().PeerCertificates[0].Raw, nil
}

// realityThrough completes a REALITY handshake with the server at addr.
func realityThrough(addr string, cfg camo.ClientConfig) error {
	raw, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := camo.Client(ctx, raw, cfg)
	if err != nil {
		return err
	}
	return c.Close()
}

// TestRelayFailover: a relay in front of two copies of one exit. With exit
// 0 killed, new connections go to exit 1; with both killed, a client's
// REALITY handshake through the relay ends promptly (the cover answers:
// not hung), and a prober gets the cover's certificate.
func TestRelayFailover(t *testing.T) {
	site := testSite(t)
	l := newRelayLab(t, 2, false)
	exits := []*exec.Cmd{l.startExitProcess(t, 0), l.startExitProcess(t, 1)}
	l.startRelay(t)
	link := l.link(t, "tcp")
	socks, _ := connectLink(t, link.String())
	if err := getOnce("socks5://"+socks, site, 1<<20); err != nil {
		t.Fatalf("GET through the relay with both exits up: %v", err)
	}

	exits[0].Process.Kill()
	exits[0].Wait()
	killed := time.Now()
	reality := camo.ClientConfig{ServerName: link.SNI, PublicKey: link.PublicKey, ShortID: link.ShortID, Fingerprint: link.Fingerprint}
	var err error
	for attempt := 0; attempt < 100; attempt++ {
		if err = realityThrough(l.relayAddr, reality); err == nil {
			break
		}
	}
	if err != nil {
		t.Fatalf("REALITY handshake through the relay after exit 0 was killed: %v\nrelay:\n%s", err, l.relay.stderr)
	}
	t.Logf("failover: a REALITY handshake through the relay reached exit 1 %v after exit 0 was killed", time.Since(killed).Round(time.Millisecond))
	for attempt := 0; attempt < 20; attempt++ {
		if err = getOnce("socks5://"+socks, site, 1<<20); err == nil {
			break
		}
	}
	if err != nil {
		t.Fatalf("GET through the relay after exit 0 was killed: %v\nrelay:\n%s", err, l.relay.stderr)
	}

	exits[1].Process.Kill()
	exits[1].Wait()
	want, err := probeCover(l.exitCover.Addr, "cover.test")
	if err != nil {
		t.Fatal(err)
	}
	got, err := probeCover(l.relayAddr, "cover.test")
	if err != nil || !bytes.Equal(got, want) {
		t.Errorf("prober through the relay with every exit down: err %v, same certificate as the cover: %v; want the cover's certificate", err, bytes.Equal(got, want))
	}
	if err := realityThrough(l.relayAddr, reality); !errors.Is(err, camo.ErrNotReality) {
		t.Errorf("REALITY client through the relay with every exit down: %v, want %v (the cover answered, the handshake ended)", err, camo.ErrNotReality)
	}
	// The relay counts a connection shown the cover once its splice to the
	// cover has ended, which may be just after the prober saw the end.
	for deadline := time.Now().Add(30 * time.Second); ; {
		m := scrapeText(t, l.relayMetrics)
		if strings.Contains(m, `burrow_relay_connections_total{result="cover"}`) && !strings.Contains(m, `burrow_relay_connections_total{result="cover"} 0`) {
			break
		}
		if time.Now().After(deadline) {
			t.Errorf("relay metrics count no connection shown the cover:\n%s", m)
			break
		}
		time.Sleep(50 * time.Millisecond) // polling the relay's metrics: nothing to wait on
	}
}

// TestRelayRevoked: `server relay-token NAME --revoke` on a running exit
// cuts the relay's live links (a download through it ends early) and
// refuses it afterwards (its health checks fail; clients get the cover).
func TestRelayRevoked(t *testing.T) {
	site := testSite(t)
	l := newRelayLab(t, 1, true)
	// Without rotation, the relay's pooled connections stay up: only the
	// exit's cutting them can end the download below.
	l.setBudget(t, -1)
	l.startExit(t, 0)
	l.startRelay(t)
	link := l.link(t, "tcp")
	socks, _ := connectLink(t, link.String())
	if err := getOnce("socks5://"+socks, site, 1<<20); err != nil {
		t.Fatalf("GET through the relay before the revocation: %v", err)
	}

	// A download of 1 GiB, read slowly: it is in flight when the relay is revoked.
	pu, _ := url.Parse("socks5://" + socks)
	tr := &http.Transport{Proxy: http.ProxyURL(pu)}
	defer tr.CloseIdleConnections()
	const size = 1 << 30
	resp, err := (&http.Client{Transport: tr}).Get(fmt.Sprintf("http://%s/data?n=%d", site, size))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if _, err := io.CopyN(io.Discard, resp.Body, 1<<20); err != nil {
		t.Fatalf("start of the download: %v", err)
	}
	out := runCmd(t, "server", "relay-token", "r1", "--revoke", "--data", l.exits[0].data)
	if !strings.Contains(out, "Revoked relay") {
		t.Errorf("relay-token --revoke printed %q", out)
	}
	done := make(chan int64, 1)
	go func() {
		n, _ := io.Copy(io.Discard, resp.Body)
		done <- n
	}()
	select {
	case n := <-done:
		if n+1<<20 >= size {
			t.Errorf("the download through the revoked relay completed (%d bytes); want it cut", n+1<<20)
		}
	case <-time.After(60 * time.Second):
		resp.Body.Close()
		t.Fatal("the download through the revoked relay still ran 60s after the revocation")
	}
	reality := camo.ClientConfig{ServerName: link.SNI, PublicKey: link.PublicKey, ShortID: link.ShortID, Fingerprint: link.Fingerprint}
	if err := realityThrough(l.relayAddr, reality); !errors.Is(err, camo.ErrNotReality) {
		t.Errorf("REALITY handshake through the revoked relay: %v, want %v (the cover answers)", err, camo.ErrNotReality)
	}
	if again := runCmdErr(t, "server", "relay-token", "r1", "--data", l.exits[0].data); !strings.Contains(again, "revoked") {
		t.Errorf("relay-token for the revoked name: %q, want a refusal saying it was revoked", again)
	}
}

// runCmdErr runs `burrow ARGS`, which must fail, and returns its error text.
func runCmdErr(t *testing.T, args ...string) string {
	t.Helper()
	err := run(context.Background(), args, io.Discard, io.Discard)
	if err == nil {
		t.Fatalf("burrow %s succeeded; want an error", strings.Join(args, " "))
	}
	return err.Error()
}

// TestRelayBadTokens: malformed tokens are refused by relay init with a
// clear error, and so are tokens of different servers in one relay.
func TestRelayBadTokens(t *testing.T) {
	l := newRelayLab(t, 1, false)
	good := l.token[0]
	other := newRelayLab(t, 1, false).token[0]
	cases := []struct{ name, token, want string }{
		{"empty", "", "must start with burrow-relay://"},
		{"a vless link", "vless://x@h:1", "must start with burrow-relay://"},
		{"truncated", good[:len(good)/2], "not a valid relay token"},
		{"no credential", strings.Replace(good, "burrow-relay://", "burrow-relay://zz", 1), "credential"},
		{"bad key", strings.Replace(good, "pbk=", "pbk=AA", 1), "pbk"},
		{"unknown field", strings.Replace(good, "#", "&x=1#", 1), "unknown field"},
		{"no name", good[:strings.IndexByte(good, '#')], "name"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := runCmdErr(t, "relay", "init", "--data", t.TempDir()+"/r", "--listen", "127.0.0.1:1", "--public-addr", "127.0.0.1", "--exit", c.token)
			if !strings.Contains(err, c.want) {
				t.Errorf("relay init with a %s token: %q, want it to say %q", c.name, err, c.want)
			}
		})
	}
	err := runCmdErr(t, "relay", "init", "--data", t.TempDir()+"/r", "--listen", "127.0.0.1:1", "--public-addr", "127.0.0.1", "--exit", good, "--exit", other)
	if !strings.Contains(err, "another key") {
		t.Errorf("relay init with tokens of two servers: %q, want a refusal naming the other key", err)
	}
}

// TestRelayReload: an exit token added to relay.json while the relay runs
// is used without a restart (the relay watches the file).
func TestRelayReload(t *testing.T) {
	l := newRelayLab(t, 2, false)
	cfg, err := relay.LoadConfig(l.relayData)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Exits = cfg.Exits[:1] // exit 0, which is not started
	if err := relay.WriteConfig(l.relayData, cfg); err != nil {
		t.Fatal(err)
	}
	l.startExit(t, 1)
	l.startRelay(t)
	link := l.link(t, "tcp")
	reality := camo.ClientConfig{ServerName: link.SNI, PublicKey: link.PublicKey, ShortID: link.ShortID, Fingerprint: link.Fingerprint}
	if err := realityThrough(l.relayAddr, reality); !errors.Is(err, camo.ErrNotReality) {
		t.Fatalf("handshake through a relay whose only exit is down: %v, want %v", err, camo.ErrNotReality)
	}
	cfg.Exits = append(cfg.Exits, l.token[1])
	if err := relay.WriteConfig(l.relayData, cfg); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for realityThrough(l.relayAddr, reality) != nil {
		if time.Now().After(deadline) {
			t.Fatalf("the relay did not use the exit added to relay.json within 30s\nrelay:\n%s", l.relay.stderr)
		}
		<-tick.C
	}
	if !strings.Contains(l.relay.stderr.String(), "relay config reloaded") {
		t.Errorf("the relay did not log the reload:\n%s", l.relay.stderr)
	}
}

// TestRelayCheck: `burrow check` audits a relay as it does a server: with
// its exit up (probes cross to the exit, which splices them to the relay's
// cover) and with its exit down (the relay splices them itself), it looks
// like its cover.
func TestRelayCheck(t *testing.T) {
	l := newRelayLab(t, 1, true)
	l.startExit(t, 0)
	l.startRelay(t)
	l.waitAnnounced(t)
	check := func(when string) {
		var out bytes.Buffer
		err := run(context.Background(), []string{"check", l.relayAddr, "--sni", "relaycover.test", "--cover", l.relayCover.Addr, "--timeout", "1500ms"}, &out, &out)
		if err != nil || !strings.Contains(out.String(), "looks like its cover") {
			t.Errorf("burrow check against the relay %s: %v; want success\n%s", when, err, out.String())
		}
	}
	check("with its exit up")
	l.exits[0].proc.stop(t)
	check("with its exit down")
}
