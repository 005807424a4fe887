package main

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"testing"
	"time"
)

// socksConnect runs a SOCKS5 CONNECT to target through the proxy at socks
// and returns the reply code.
func socksConnect(t *testing.T, socks, target string) byte {
	t.Helper()
	ap, err := netip.ParseAddrPort(target)
	if err != nil {
		t.Fatal(err)
	}
	c, err := net.DialTimeout("tcp", socks, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(30 * time.Second))
	ip := ap.Addr().As4()
	req := append([]byte{5, 1, 0, 5, 1, 0, 1}, ip[:]...)
	req = append(req, byte(ap.Port()>>8), byte(ap.Port()))
	if _, err := c.Write(req); err != nil {
		t.Fatal(err)
	}
	var resp [12]byte // method choice (2) + reply with an IPv4 address (10)
	if _, err := io.ReadFull(c, resp[:]); err != nil {
		t.Fatalf("SOCKS5 CONNECT %s: reply: %v", target, err)
	}
	return resp[3]
}

// TestAccessRefusalReachesUser: once a user's quota is used up, their
// client learns it from the server's refusal: its log says "quota used up",
// a SOCKS5 CONNECT gets reply 2 (not allowed) instead of a success and an
// empty stream, the HTTP proxy answers 403 naming the reason. Raising the
// quota lets the next connection through, and the client says so.
func TestAccessRefusalReachesUser(t *testing.T) {
	site := testSite(t)
	e := deployServer(t, true)
	link := e.addUser(t, "erin", "--quota", "1MiB")
	client := startClient(t, link, true)
	socks, httpAddr := client.socks, client.http
	proxy := "socks5://" + socks
	if _, n, err := get(proxy, fmt.Sprintf("http://%s/data?n=%d", site, 8<<20)); err == nil {
		t.Fatalf("download of 8 MiB with a 1 MiB quota completed (%d bytes)", n)
	}
	// The next connection is refused by the server with a reason; the
	// client learns it from this one (which may fail as an empty stream).
	get(proxy, fmt.Sprintf("http://%s/data?n=10", site))

	if code := socksConnect(t, socks, site); code != 2 {
		t.Errorf("SOCKS5 CONNECT over quota: reply %d, want 2 (connection not allowed)", code)
	}
	hu, _ := url.Parse("http://" + httpAddr)
	hc := &http.Client{Transport: &http.Transport{Proxy: http.ProxyURL(hu)}, Timeout: time.Minute}
	resp, err := hc.Get(fmt.Sprintf("http://%s/data?n=10", site))
	if err != nil {
		t.Fatalf("GET through the HTTP proxy over quota: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden || !strings.Contains(string(body), "quota used up") {
		t.Errorf("HTTP proxy over quota: %d %q, want 403 saying \"quota used up\"", resp.StatusCode, body)
	}
	if log := client.stderr.String(); !strings.Contains(log, "quota used up") {
		t.Errorf("client log does not say the quota is used up:\n%s", log)
	}

	if _, err := e.user("set", "erin", "--quota", "100MiB"); err != nil {
		t.Fatal(err)
	}
	if _, n, err := get(proxy, fmt.Sprintf("http://%s/data?n=1000", site)); err != nil || n != 1000 {
		t.Errorf("download after raising the quota: %d bytes, %v; want 1000", n, err)
	}
	if log := client.stderr.String(); !strings.Contains(log, "accepts this link again") {
		t.Errorf("client log does not say the server accepts the link again:\n%s", log)
	}
}

// TestAccessRefusalRevoked: a revoked user's client is told "access revoked".
func TestAccessRefusalRevoked(t *testing.T) {
	site := testSite(t)
	e := deployServer(t, true)
	link := e.addUser(t, "frank")
	if _, err := e.user("revoke", "frank"); err != nil {
		t.Fatal(err)
	}
	client := startClient(t, link, false)
	socks := client.socks
	get("socks5://"+socks, fmt.Sprintf("http://%s/data?n=10", site))
	if code := socksConnect(t, socks, site); code != 2 {
		t.Errorf("SOCKS5 CONNECT of a revoked user: reply %d, want 2 (connection not allowed)", code)
	}
	if log := client.stderr.String(); !strings.Contains(log, "access revoked") {
		t.Errorf("client log does not say access was revoked:\n%s", log)
	}
}
