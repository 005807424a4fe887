package interop

import (
	"bufio"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/net/proxy"
)

// Mux interop: Xray-core clients with "mux" enabled (as v2rayNG offers it)
// against `burrow server run`. With mux on, an Xray client carries every TCP
// connection as a session inside one VLESS Mux (command 3) stream, whatever
// the transport and flow. Xray's own server carries none of them on the
// setups Burrow serves (TestXrayMuxXrayServer): for a Vision user on plain
// REALITY it allows only UDP inside mux, and its XHTTP server forbids
// Mux.Cool except pure XUDP (#4128); it breaks the mux connection at the
// first TCP session. Burrow carries TCP sessions over XHTTP (a deliberate
// difference) and, on plain REALITY, answers each with End+error and keeps
// the UDP sessions.

// muxParallel is how many fetches run at once through one Xray client.
const muxParallel = 8

// withMux adds Xray's outbound "mux" setting to an Xray client config.
func withMux(t *testing.T, config string, concurrency int) string {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal([]byte(config), &m); err != nil {
		t.Fatalf("xray config: %v", err)
	}
	ob := m["outbounds"].([]any)[0].(map[string]any)
	ob["mux"] = map[string]any{"enabled": true, "concurrency": concurrency}
	return mustJSON(t, m)
}

// startBurrowServerLogged is startBurrowServer with destinations logged, so
// the test can see which VLESS commands reached the server.
func startBurrowServerLogged(t *testing.T, coverAddr string) (*burrowServer, *burrowProc) {
	t.Helper()
	data := t.TempDir()
	addr := "127.0.0.1:" + strconv.Itoa(freePort(t))
	stdout, stderr, err := runBurrow(t, "server", "init", "--data", data, "--listen", addr,
		"--cover", coverAddr, "--sni", coverSNI, "--public-addr", "127.0.0.1", "--allow-private-egress")
	if err != nil {
		if unknownCommand(stdout + stderr) {
			notReady(t, "burrow server init: not implemented yet: %s", firstLine(stdout+stderr))
		}
		t.Fatalf("burrow server init: %v\nstdout:\n%s\nstderr:\n%s", err, stdout, stderr)
	}
	raw := ""
	sc := bufio.NewScanner(strings.NewReader(stdout))
	for sc.Scan() {
		if line := strings.TrimSpace(sc.Text()); strings.HasPrefix(line, "vless://") {
			raw = line
			break
		}
	}
	link, err := parseVLESSLink(raw)
	if err != nil {
		t.Fatalf("parse the link burrow server init printed (%q): %v", raw, err)
	}
	p := startBurrow(t, "server", "run", "--data", data, "--debug-log-destinations")
	p.waitListening(t, addr)
	return &burrowServer{Addr: addr, Link: link, Raw: raw}, p
}

// countCommands counts the server's "proxy" log lines by VLESS command.
func countCommands(out string) map[string]int {
	n := map[string]int{}
	for _, line := range strings.Split(out, "\n") {
		if !strings.Contains(line, "msg=proxy") {
			continue
		}
		for _, f := range strings.Fields(line) {
			if c, ok := strings.CutPrefix(f, "cmd="); ok {
				n[c]++
			}
		}
	}
	return n
}

// parallelClient is an HTTP client through the SOCKS5 proxy at socksAddr
// that opens a new TCP connection (a new mux session) for every request.
func parallelClient(t *testing.T, socksAddr string, site *contentSite) *http.Client {
	t.Helper()
	d, err := proxy.SOCKS5("tcp", socksAddr, nil, &net.Dialer{Timeout: 10 * time.Second})
	if err != nil {
		t.Fatalf("socks5 dialer: %v", err)
	}
	tr := &http.Transport{
		DialContext:         d.(proxy.ContextDialer).DialContext,
		TLSClientConfig:     &tls.Config{RootCAs: site.Roots, ServerName: "site.test"},
		DisableCompression:  true,
		DisableKeepAlives:   true,
		TLSHandshakeTimeout: 15 * time.Second,
	}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 90 * time.Second}
}

// getSum GETs url and returns an error unless the body is the blob.
func getSum(c *http.Client, url string, want [32]byte) error {
	resp, err := c.Get(url)
	if err != nil {
		return fmt.Errorf("GET %s: %w", url, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: status %s", url, resp.Status)
	}
	h := sha256.New()
	n, err := io.Copy(h, resp.Body)
	if err != nil {
		return fmt.Errorf("GET %s: read body after %d bytes: %w", url, n, err)
	}
	if got := h.Sum(nil); n != blobSize || !equal32(got, want) {
		return fmt.Errorf("GET %s: %d bytes, sha256 %s, want %d bytes, %s", url, n, hex.EncodeToString(got), blobSize, hex.EncodeToString(want[:]))
	}
	return nil
}

// fetchParallel fetches the blob muxParallel times at once, over HTTP and
// HTTPS alternately, and checks every SHA-256.
func fetchParallel(t *testing.T, socksAddr string, site *contentSite) {
	t.Helper()
	c := parallelClient(t, socksAddr, site)
	start := time.Now()
	var wg sync.WaitGroup
	errs := make(chan error, muxParallel)
	for i := range muxParallel {
		url := "http://" + site.HTTPAddr + "/blob"
		if i%2 == 1 {
			url = "https://" + site.HTTPSAddr + "/blob"
		}
		wg.Go(func() {
			if err := getSum(c, url, site.Sum); err != nil {
				errs <- err
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if !t.Failed() {
		t.Logf("%d parallel fetches of %d bytes, sha256 ok, %v", muxParallel, blobSize, time.Since(start).Round(time.Millisecond))
	}
}

// TestXrayMuxBurrowServer: an Xray client with mux enabled (concurrency 8).
//   - over XHTTP (flow empty): parallel HTTP and HTTPS fetches arrive whole,
//     and UDP travels in the same mux; the server saw Mux requests only.
//   - over plain REALITY with flow empty: TCP sessions inside mux are
//     refused, as Xray's server refuses them for a Vision user.
//   - over plain REALITY with Vision (Xray's client sends TCP in mux with
//     Vision; Xray's server breaks such connections): plain-text sessions
//     are carried, as for Burrow's own client; a session that starts with a
//     TLS record (HTTPS) is refused, since it would be TLS in TLS without
//     Vision's padding; UDP sessions in that mux are carried.
func TestXrayMuxBurrowServer(t *testing.T) {
	cover := startCover(t)
	site := startContent(t)
	echo := startUDPEcho(t)
	bs, proc := startBurrowServerLogged(t, cover.Addr)

	t.Run("xhttp", func(t *testing.T) {
		for _, mode := range []string{"stream-up", "packet-up"} {
			t.Run(mode, func(t *testing.T) {
				before := countCommands(proc.out.String())
				socksPort := freePort(t)
				cfg := xrayXHTTPClientConfig(t, xrayClientFromLink(socksPort, bs.Link), "/mux/"+mode, mode)
				startXray(t, withMux(t, cfg, muxParallel))
				socksAddr := "127.0.0.1:" + strconv.Itoa(socksPort)
				waitTCP(t, socksAddr, 5*time.Second)
				fetchParallel(t, socksAddr, site)

				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				defer cancel()
				got, err := socksUDPExchange(ctx, socksAddr, echo, []byte("mux udp"))
				if err != nil || string(got) != "echo:mux udp" {
					t.Errorf("udp through mux = %q, %v, want %q", got, err, "echo:mux udp")
				}

				after := countCommands(proc.out.String())
				if tcp := after["1"] - before["1"]; tcp != 0 {
					t.Errorf("server saw %d plain TCP requests, want 0 (all in mux)", tcp)
				}
				mux := after["3"] - before["3"]
				if mux < 1 || mux > muxParallel {
					t.Errorf("server saw %d Mux requests for %d parallel fetches, want 1..%d", mux, muxParallel, muxParallel)
				}
				t.Logf("VLESS Mux requests: %d", mux)
			})
		}
	})

	t.Run("reality flow empty", func(t *testing.T) {
		l := bs.Link
		l.Flow = ""
		socksPort := freePort(t)
		startXray(t, withMux(t, xrayClientConfig(t, xrayClientFromLink(socksPort, l)), muxParallel))
		socksAddr := "127.0.0.1:" + strconv.Itoa(socksPort)
		waitTCP(t, socksAddr, 5*time.Second)
		expectNoTunnel(t, socksAddr, "http://"+site.HTTPAddr+"/blob")
	})

	t.Run("reality vision", func(t *testing.T) {
		socksPort := freePort(t)
		startXray(t, withMux(t, xrayClientConfig(t, xrayClientFromLink(socksPort, bs.Link)), muxParallel))
		socksAddr := "127.0.0.1:" + strconv.Itoa(socksPort)
		waitTCP(t, socksAddr, 5*time.Second)
		c := parallelClient(t, socksAddr, site)
		if err := getSum(c, "http://"+site.HTTPAddr+"/blob", site.Sum); err != nil {
			t.Errorf("plain HTTP through an Xray mux with Vision: %v", err)
		}
		c.Timeout = 30 * time.Second
		if resp, err := c.Get("https://" + site.HTTPSAddr + "/blob"); err == nil {
			n, _ := io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			t.Errorf("HTTPS through an Xray mux with Vision = %s with %d body bytes, want refused (TLS in TLS)", resp.Status, n)
		} else {
			t.Logf("HTTPS through an Xray mux with Vision refused as it should: %v", err)
		}
		// UDP sessions in the same Vision mux are carried, as by Xray's server.
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		got, err := socksUDPExchange(ctx, socksAddr, echo, []byte("vision mux udp"))
		if err != nil || string(got) != "echo:vision mux udp" {
			t.Errorf("udp through vision mux = %q, %v, want %q", got, err, "echo:vision mux udp")
		}
	})
}

// TestXrayMuxXrayServer is the reference for TestXrayMuxBurrowServer: the
// same Xray mux clients against Xray's own servers (a Vision user on plain
// REALITY, a user without flow on XHTTP). Xray's server carries TCP inside
// mux on neither; Burrow, deliberately, carries it over XHTTP, and its
// plain-text sessions (not TLS ones) on plain REALITY with Vision.
func TestXrayMuxXrayServer(t *testing.T) {
	cover := startCover(t)
	site := startContent(t)
	echo := startUDPEcho(t)
	keys := newRealityKeys(t)
	raw := xrayServer{
		Port: freePort(t), UUID: newUUID(t), PrivateKey: keys.Private, ShortID: newShortID(t),
		Target: cover.Addr, SNI: coverSNI,
	}
	startXray(t, xrayServerConfig(t, raw))
	xh := raw
	xh.Port = freePort(t)
	xh.UUID = newUUID(t) // a user of its own: Xray's servers in one process share users by id
	startXray(t, xrayXHTTPServerConfig(t, xh, "/mux"))
	waitTCP(t, "127.0.0.1:"+strconv.Itoa(raw.Port), 5*time.Second)
	waitTCP(t, "127.0.0.1:"+strconv.Itoa(xh.Port), 5*time.Second)
	link := func(s xrayServer, flow string) vlessLink {
		return vlessLink{
			UUID: s.UUID, Host: "127.0.0.1", Port: s.Port, Flow: flow, Security: "reality", Type: "tcp",
			SNI: coverSNI, Fingerprint: "chrome", PublicKey: keys.Public, ShortID: raw.ShortID,
		}
	}
	client := func(t *testing.T, cfg string) string {
		startXray(t, withMux(t, cfg, muxParallel))
		return cfg
	}

	t.Run("xhttp", func(t *testing.T) {
		// Xray's XHTTP server forbids TCP inside Mux.Cool ("XHTTP server:
		// Forbid Mux.Cool except pure XUDP", Xray-core #4128): it breaks
		// the mux connection, while its UDP sessions are carried.
		socksPort := freePort(t)
		client(t, xrayXHTTPClientConfig(t, xrayClientFromLink(socksPort, link(xh, "")), "/mux", "stream-up"))
		socksAddr := "127.0.0.1:" + strconv.Itoa(socksPort)
		waitTCP(t, socksAddr, 5*time.Second)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		got, err := socksUDPExchange(ctx, socksAddr, echo, []byte("xhttp mux udp"))
		if err != nil || string(got) != "echo:xhttp mux udp" {
			t.Errorf("udp through xhttp mux = %q, %v, want %q", got, err, "echo:xhttp mux udp")
		}
		expectNoTunnel(t, socksAddr, "http://"+site.HTTPAddr+"/blob")
	})
	t.Run("reality flow empty", func(t *testing.T) {
		socksPort := freePort(t)
		client(t, xrayClientConfig(t, xrayClientFromLink(socksPort, link(raw, ""))))
		socksAddr := "127.0.0.1:" + strconv.Itoa(socksPort)
		waitTCP(t, socksAddr, 5*time.Second)
		expectNoTunnel(t, socksAddr, "http://"+site.HTTPAddr+"/blob")
	})
	t.Run("reality vision", func(t *testing.T) {
		socksPort := freePort(t)
		client(t, xrayClientConfig(t, xrayClientFromLink(socksPort, link(raw, flowVision))))
		socksAddr := "127.0.0.1:" + strconv.Itoa(socksPort)
		waitTCP(t, socksAddr, 5*time.Second)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		got, err := socksUDPExchange(ctx, socksAddr, echo, []byte("vision mux udp"))
		if err != nil || string(got) != "echo:vision mux udp" {
			t.Errorf("udp through vision mux = %q, %v, want %q", got, err, "echo:vision mux udp")
		}
		expectNoTunnel(t, socksAddr, "http://"+site.HTTPAddr+"/blob")
	})
}
