package main

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/burrow-vpn/burrow/internal/links"
	"github.com/burrow-vpn/burrow/internal/metrics"
	"github.com/burrow-vpn/burrow/internal/subscribe"
)

// TestAccessSubscriptions: with --subscribe, `user show` prints the
// subscription URL, with --transport xhttp too; each format, chosen by
// ?format= or by User-Agent, parses back with our parser: base64 and clash
// with the tcp and the xhttp link, sing-box with the tcp link only; and
// each link in it carries traffic through the server. A wrong token gets
// the very bytes of any missing page.
func TestAccessSubscriptions(t *testing.T) {
	site := testSite(t)
	sp, _ := freePort()
	subAddr := "127.0.0.1:" + sp
	e := deployServer(t, true, "--subscribe", subAddr, "--subscribe-url-base", "http://"+subAddr+"/sub/", "--subscribe-title", "Семья")
	e.addUser(t, "erin", "--quota", "1GB", "--expires", "2099-01-01")
	var subURL string
	for _, args := range [][]string{{"show", "erin"}, {"show", "erin", "--transport", "xhttp"}} {
		out, err := e.user(args...)
		if err != nil {
			t.Fatal(err)
		}
		var got string
		for _, line := range strings.Split(out, "\n") {
			if u, ok := strings.CutPrefix(line, "subscription: "); ok {
				got = u
			}
		}
		if !strings.HasPrefix(got, "http://"+subAddr+"/sub/") || len(got) != len("http://"+subAddr+"/sub/")+43 ||
			subURL != "" && got != subURL {
			t.Fatalf("user %s:\n%s\nwant a subscription: line with http://%s/sub/TOKEN (the same for tcp and xhttp)", strings.Join(args, " "), out, subAddr)
		}
		subURL = got
	}
	target := fmt.Sprintf("http://%s/data?n=300000", site)
	want := streamSum(300000)
	for _, tc := range []struct {
		query, ua string
		parse     func([]byte) ([]*links.VLESS, error)
		xhttp     bool // the xhttp link is in this format
	}{
		{"?format=base64", "", subscribe.ParseBase64, true},
		{"?format=sing-box", "", subscribe.ParseSingBox, false},
		{"?format=clash", "", subscribe.ParseClash, true},
		{"", "v2rayNG/1.9.16", subscribe.ParseBase64, true},
		{"", "Happ/1.11", subscribe.ParseBase64, true},
		{"", "SFA/1.11.4 (Android; sing-box 1.11.4)", subscribe.ParseSingBox, false},
		{"", "clash-verge/v1.7.7", subscribe.ParseClash, true},
		{"", "mihomo/1.18", subscribe.ParseClash, true},
	} {
		req, _ := http.NewRequest("GET", subURL+tc.query, nil)
		req.Header.Set("User-Agent", tc.ua)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		what := tc.query + tc.ua
		if resp.StatusCode != 200 {
			t.Fatalf("%s: %s", what, resp.Status)
		}
		if got := resp.Header.Get("Subscription-Userinfo"); !strings.HasPrefix(got, "upload=") || !strings.Contains(got, "total=1000000000; expire=") {
			t.Errorf("%s: subscription-userinfo = %q", what, got)
		}
		wantTitle := "Семья"
		if !tc.xhttp {
			wantTitle += subscribe.TCPOnlySuffix
		}
		if title, err := subscribe.DecodeTitle(resp.Header.Get("Profile-Title")); err != nil || title != wantTitle {
			t.Errorf("%s: profile-title %q decodes to %q, %v; want %q", what, resp.Header.Get("Profile-Title"), title, err, wantTitle)
		}
		if resp.Header.Get("Profile-Update-Interval") == "" {
			t.Errorf("%s: no profile-update-interval", what)
		}
		ls, err := tc.parse(body)
		if wantN := map[bool]int{false: 1, true: 2}[tc.xhttp]; err != nil || len(ls) != wantN {
			t.Fatalf("%s: parse: %v, %v; want %d links\n%s", what, ls, err, wantN, body)
		}
		if ls[0].Name != "erin" || ls[0].Type != links.TypeTCP {
			t.Errorf("%s: first link %q over %s, want erin over tcp", what, ls[0].Name, ls[0].Type)
		}
		if tc.xhttp && (ls[1].Name != "erin (xhttp)" || ls[1].Type != links.TypeXHTTP) {
			t.Errorf("%s: second link %q over %s, want \"erin (xhttp)\" over xhttp", what, ls[1].Name, ls[1].Type)
		}
		if tc.ua != "" {
			continue // the same bodies as the three ?format= cases, whose links carried traffic
		}
		for _, l := range ls {
			proxy := connect(t, l.String())
			if sum, n, err := get(proxy, target); err != nil || sum != want {
				t.Errorf("%s: download through the parsed %s link: %d bytes, %v; want the right 300000", what, l.Type, n, err)
			}
		}
	}

	// Revoked, wrong and missing: one identical 404.
	missing := rawGET(t, subAddr, "/favicon.ico")
	if !bytes.HasPrefix(missing, []byte("HTTP/1.1 404")) {
		t.Fatalf("missing page: %s", missing)
	}
	tok := subURL[strings.LastIndexByte(subURL, '/')+1:]
	wrong := []byte(tok)
	wrong[0] ^= 1
	for _, p := range []string{"/sub/" + string(wrong), "/" + strings.Repeat("A", 43), "/sub/"} {
		if got := rawGET(t, subAddr, p); !bytes.Equal(got, missing) {
			t.Errorf("GET %s:\n%q\nwant the bytes of any missing page:\n%q", p, got, missing)
		}
	}
	if _, err := e.user("revoke", "erin"); err != nil {
		t.Fatal(err)
	}
	if got := rawGET(t, subAddr, "/sub/"+tok); !bytes.Equal(got, missing) {
		t.Errorf("revoked user's subscription:\n%q\nwant the 404 of any missing page", got)
	}
}

func rawGET(t *testing.T, addr, path string) []byte {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: sub.example.org\r\nUser-Agent: v2rayNG/1.9\r\nConnection: close\r\n\r\n", path)
	b, _ := io.ReadAll(bufio.NewReader(c))
	return b
}

func scrape(t *testing.T, addr string) map[string]float64 {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	m, err := metrics.Parse(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// scrapeUntil scrapes addr until ok holds of the metrics, or a budget for a
// busy machine runs out, and returns the last scrape.
func scrapeUntil(t *testing.T, addr string, ok func(map[string]float64) bool) map[string]float64 {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		m := scrape(t, addr)
		if ok(m) || time.Now().After(deadline) {
			return m
		}
		time.Sleep(20 * time.Millisecond) // polling interval
	}
}

// TestAccessMetrics: the metrics endpoint counts bytes, authenticated
// handshakes, connections handed to the cover, egress refusals and active
// connections; per-user series only with --metrics-per-user.
func TestAccessMetrics(t *testing.T) {
	site := testSite(t)
	slow := slowSite(t)
	for _, perUser := range []bool{false, true} {
		mp, _ := freePort()
		maddr := "127.0.0.1:" + mp
		args := []string{"--metrics", maddr}
		if perUser {
			args = append(args, "--metrics-per-user")
		}
		// The first server refuses private egress (the test site is on
		// loopback): a refusal is counted. The second allows it: bytes.
		e := deployServer(t, perUser, args...)
		proxy := connect(t, e.addUser(t, "frank"))
		const size = 1 << 20
		_, n, err := get(proxy, fmt.Sprintf("http://%s/data?n=%d", site, size))
		if perUser && (err != nil || n != size) {
			t.Fatalf("download: %d, %v", n, err)
		}
		if perUser {
			s := openStream(t, proxy, "http://"+slow+"/slow")
			s.flowing(t, "frank", 1)
		}
		// A prober: TLS to the server gets the cover site.
		pc, err := tls.Dial("tcp", e.addr, &tls.Config{ServerName: "cover.test", InsecureSkipVerify: true})
		if err != nil {
			t.Fatalf("probe: %v", err)
		}
		pc.Close()
		// The counters settle after the events above (the prober handed to
		// the cover, the download's connection closed): scrape until they
		// read as wanted, or a budget runs out, rather than after a pause.
		var problems []string
		m := scrapeUntil(t, maddr, func(m map[string]float64) bool {
			problems = metricsProblems(m, perUser, size)
			return len(problems) == 0
		})
		t.Logf("perUser=%v metrics: %v", perUser, m)
		for _, p := range problems {
			t.Error(p)
		}
	}
}

// metricsProblems lists how the metrics m of TestAccessMetrics differ from
// what they should read after its traffic.
func metricsProblems(m map[string]float64, perUser bool, size float64) []string {
	var p []string
	if m[`burrow_handshakes_total{result="authenticated"}`] < 1 || m[`burrow_handshakes_total{result="cover"}`] < 1 {
		p = append(p, fmt.Sprintf("handshake counters %v, want >= 1 authenticated and >= 1 cover", m))
	}
	if !perUser {
		if m["burrow_egress_refused_total"] < 1 {
			p = append(p, fmt.Sprintf("egress refusals %v, want >= 1 (private egress is off)", m["burrow_egress_refused_total"]))
		}
		for k := range m {
			if strings.Contains(k, "user=") {
				p = append(p, fmt.Sprintf("series %s without --metrics-per-user", k))
			}
		}
		return p
	}
	if m[`burrow_bytes_total{direction="down"}`] < size || m[`burrow_bytes_total{direction="up"}`] < 50 {
		p = append(p, fmt.Sprintf("bytes %v, want >= %v down", m, size))
	}
	if m["burrow_connections_active"] != 1 || m[`burrow_user_connections_active{user="frank"}`] != 1 {
		p = append(p, fmt.Sprintf("active %v, want 1 (frank's stream)", m))
	}
	if got := m[`burrow_user_bytes{user="frank",direction="down"}`]; got < size {
		p = append(p, fmt.Sprintf("per-user bytes for frank = %v, want >= %v (unflushed bytes included)", got, size))
	}
	return p
}
