package main

import (
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"
)

// TestPanelThroughTunnel: with --panel-tunnel, the panel answers at
// http://panel.burrow.invalid/ inside the tunnel of a user named like an
// operator admin (who logs in there), and nowhere else: another user's
// tunnel is refused as for any .invalid name, and no TCP port serves it.
func TestPanelThroughTunnel(t *testing.T) {
	e := deployServer(t, false, "--panel-tunnel")
	if _, _, err := adminCmd(e.data, "correct horse battery\n", "add", "otto", "--role", "operator", "--password-stdin"); err != nil {
		t.Fatal(err)
	}
	if _, _, err := adminCmd(e.data, "correct horse battery\n", "add", "vera", "--role", "viewer", "--password-stdin"); err != nil {
		t.Fatal(err)
	}
	client := func(proxy string) *http.Client {
		pu, _ := url.Parse(proxy)
		jar, _ := cookiejar.New(nil)
		return &http.Client{Jar: jar, Timeout: time.Minute, Transport: &http.Transport{Proxy: http.ProxyURL(pu)}}
	}
	const base = "http://panel.burrow.invalid"
	otto := client(connect(t, e.addUser(t, "otto")))
	// The server learns of a new user within its refresh: try until then.
	var resp *http.Response
	var err error
	for deadline := time.Now().Add(30 * time.Second); ; {
		if resp, err = otto.Get(base + "/login"); err == nil || time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil {
		t.Fatalf("GET the panel through otto's tunnel: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	m := regexp.MustCompile(`name="csrf" value="([^"]+)"`).FindSubmatch(body)
	if resp.StatusCode != 200 || m == nil {
		t.Fatalf("login page through the tunnel: %d\n%.300s", resp.StatusCode, body)
	}
	resp, err = otto.PostForm(base+"/login", url.Values{"csrf": {string(m[1])}, "name": {"otto"}, "password": {"correct horse battery"}})
	if err != nil {
		t.Fatal(err)
	}
	body, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.Request.URL.Path != "/users" || !strings.Contains(string(body), "otto") {
		t.Errorf("after logging in through the tunnel: %s %d", resp.Request.URL, resp.StatusCode)
	}
	// Over XHTTP the request comes as a plain VLESS TCP request, not in mux.
	out, err := e.user("show", "otto", "--transport", "xhttp")
	if err != nil {
		t.Fatal(err)
	}
	var xlink string
	for _, line := range strings.Split(out, "\n") {
		if strings.HasPrefix(line, "vless://") {
			xlink = line
		}
	}
	xc := client(connect(t, xlink))
	if resp, err := xc.Get(base + "/login"); err != nil || resp.StatusCode != 200 {
		t.Errorf("the panel through otto's xhttp link: %v, %v", resp, err)
	} else {
		resp.Body.Close()
	}
	// A viewer's name, or no admin's, does not open it.
	for _, name := range []string{"vera", "bob"} {
		c := client(connect(t, e.addUser(t, name)))
		if resp, err := c.Get(base + "/login"); err == nil {
			resp.Body.Close()
			t.Errorf("%s reached the panel through their tunnel: %d", name, resp.StatusCode)
		}
	}
}
