package subscribe

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/burrow-vpn/burrow/internal/access"
	"github.com/burrow-vpn/burrow/internal/links"
)

const testLink = "vless://0f3c0a7e-3f8a-4b6c-9d2e-5a1b2c3d4e5f@203.0.113.9:443?encryption=none&security=reality&sni=www.example.com&fp=chrome&pbk=7Rb6r7sTSaPl3y6RWuV5b0rTqMdcVbHiBrWlTnc6iH4&sid=0123456789abcdef&flow=xtls-rprx-vision&type=tcp#%D0%9C%D0%B0%D0%BC%D0%B0%20home"

func template(t testing.TB) links.VLESS {
	l, err := links.ParseVLESS(testLink)
	if err != nil {
		t.Fatal(err)
	}
	l.Name = ""
	return *l
}

type users map[string]*access.User

func (u users) UserBySubToken(_ context.Context, tok string) (*access.User, error) {
	if x := u[tok]; x != nil {
		return x, nil
	}
	return nil, access.ErrNotFound
}

func TestFormatFor(t *testing.T) {
	cases := map[string]Format{
		"v2rayN/6.45":                         FormatBase64,
		"v2rayNG/1.9.16":                      FormatBase64,
		"Streisand/1.6":                       FormatBase64,
		"Happ/1.11.0":                         FormatBase64,
		"":                                    FormatBase64,
		"curl/8.5":                            FormatBase64,
		"sing-box 1.11.4":                     FormatSingBox,
		"SFA/1.11.4 (Android; sing-box 1.11)": FormatSingBox,
		"SFI/1.10 (iOS)":                      FormatSingBox,
		"HiddifyNext/2.5.7 (android) like ClashMeta v2ray sing-box": FormatSingBox,
		"ClashforWindows/0.20.39":                                   FormatClash,
		"clash-verge/v1.7.7":                                        FormatClash,
		"mihomo/1.18.5":                                             FormatClash,
		"Stash/2.4.7 Clash/1.9.0":                                   FormatClash,
		"ClashMetaForAndroid/2.10.1.Meta":                           FormatClash,
	}
	for ua, want := range cases {
		if got := FormatFor(ua); got != want {
			t.Errorf("FormatFor(%q) = %s, want %s", ua, got, want)
		}
	}
	for in, want := range map[string]Format{"base64": FormatBase64, "SING-BOX": FormatSingBox, "clash": FormatClash, "yaml": FormatClash} {
		if got, err := ParseFormat(in); err != nil || got != want {
			t.Errorf("ParseFormat(%q) = %s, %v; want %s", in, got, err, want)
		}
	}
	if _, err := ParseFormat("xml"); err == nil {
		t.Error("ParseFormat(xml) succeeded")
	}
}

func TestRoundTrip(t *testing.T) {
	a := template(t)
	a.Name = "Мама home"
	b := template(t)
	b.Name = "second"
	b.ShortID = nil
	b.Host = "2001:db8::1"
	ls := []*links.VLESS{&a, &b}
	sb, err := EncodeSingBox(ls)
	if err != nil {
		t.Fatal(err)
	}
	cl, err := EncodeClash(ls)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range []struct {
		name  string
		parse func([]byte) ([]*links.VLESS, error)
		body  []byte
	}{{"base64", ParseBase64, EncodeBase64(ls)}, {"sing-box", ParseSingBox, sb}, {"clash", ParseClash, cl}} {
		got, err := f.parse(f.body)
		if err != nil {
			t.Errorf("%s: parse: %v\n%s", f.name, err, f.body)
			continue
		}
		if len(got) != len(ls) {
			t.Errorf("%s: %d links, want %d", f.name, len(got), len(ls))
			continue
		}
		for i := range ls {
			if got[i].String() != ls[i].String() {
				t.Errorf("%s: link %d = %s, want %s", f.name, i, got[i], ls[i])
			}
		}
	}
}

// xhttpTemplate is template's server as Burrow's `user show --transport
// xhttp` link (packet-up, rotation budget), without a name.
func xhttpTemplate(t testing.TB) links.VLESS {
	l := template(t)
	l.Type, l.Flow = links.TypeXHTTP, ""
	l.XHTTP = &links.XHTTP{Mode: links.ModePacketUp, Path: "/assets/0a1b2c3d4e5f", Budget: 12288}
	got, err := links.ParseVLESS(l.String())
	if err != nil {
		t.Fatal(err)
	}
	return *got
}

// TestXHTTPSubscription: a server with a tcp and an xhttp template gives
// the user both links in base64, both proxies and a fallback group in
// Clash/Mihomo, and only the tcp outbound in sing-box, whose profile title
// says so.
func TestXHTTPSubscription(t *testing.T) {
	u := &access.User{ID: 1, Name: "alice", UUID: access.NewUUID(), SubToken: access.NewSubToken()}
	h, err := NewHandler(Config{Users: users{u.SubToken: u}, Servers: []links.VLESS{template(t), xhttpTemplate(t)}, Title: "Burrow"})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	defer srv.Close()
	get := func(format string) ([]byte, http.Header) {
		t.Helper()
		resp, err := http.Get(srv.URL + "/" + u.SubToken + "?format=" + format)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != 200 {
			t.Fatalf("?format=%s: %s", format, resp.Status)
		}
		return body, resp.Header
	}
	wantX := xhttpTemplate(t)
	wantX.UUID, wantX.Name = u.UUID, "alice (xhttp)"

	body, hd := get("base64")
	ls, err := ParseBase64(body)
	if err != nil || len(ls) != 2 {
		t.Fatalf("base64: %v, %v; want 2 links", ls, err)
	}
	if ls[0].Type != links.TypeTCP || ls[0].Name != "alice" || ls[1].String() != wantX.String() {
		t.Errorf("base64 links:\n%s\n%s\nwant alice's tcp link, then\n%s", ls[0], ls[1], &wantX)
	}
	if hd.Get("Profile-Title") != "Burrow" {
		t.Errorf("base64: profile-title %q, want Burrow", hd.Get("Profile-Title"))
	}

	body, _ = get("clash")
	var cfg clash
	if err := yaml.Unmarshal(body, &cfg); err != nil {
		t.Fatal(err)
	}
	if len(cfg.Proxies) != 2 {
		t.Fatalf("clash: %d proxies, want 2:\n%s", len(cfg.Proxies), body)
	}
	x := cfg.Proxies[1]
	if x.Name != "alice (xhttp)" || x.Network != "xhttp" || x.Flow != "" || !x.TLS || x.RealityOpts == nil ||
		x.XHTTPOpts == nil || *x.XHTTPOpts != (clashXHTTP{Path: "/assets/0a1b2c3d4e5f", Mode: "packet-up"}) {
		t.Errorf("clash xhttp proxy = %+v (opts %+v), want network xhttp, no flow, REALITY, xhttp-opts path and packet-up", x, x.XHTTPOpts)
	}
	wantGroups := []clashGroup{
		{Name: "PROXY", Type: "select", Proxies: []string{"AUTO", "alice", "alice (xhttp)"}},
		{Name: "AUTO", Type: "fallback", Proxies: []string{"alice", "alice (xhttp)"}, URL: "https://www.gstatic.com/generate_204", Interval: 300},
	}
	if fmt.Sprint(cfg.ProxyGroups) != fmt.Sprint(wantGroups) || fmt.Sprint(cfg.Rules) != "[MATCH,PROXY]" {
		t.Errorf("clash groups %+v, rules %v; want %+v and [MATCH,PROXY]", cfg.ProxyGroups, cfg.Rules, wantGroups)
	}
	ls, err = ParseClash(body)
	wantX.XHTTP.Budget = 0 // Burrow's own parameter: Mihomo has no such field
	if err != nil || len(ls) != 2 || ls[1].String() != wantX.String() {
		t.Errorf("ParseClash = %v, %v; want the tcp link and %s", ls, err, &wantX)
	}

	body, hd = get("sing-box")
	ls, err = ParseSingBox(body)
	if err != nil || len(ls) != 1 || ls[0].Type != links.TypeTCP {
		t.Errorf("sing-box: %v, %v; want only the tcp link", ls, err)
	}
	if bytes.Contains(body, []byte("xhttp")) {
		t.Errorf("sing-box config mentions xhttp:\n%s", body)
	}
	if got := hd.Get("Profile-Title"); got != "Burrow (tcp only)" {
		t.Errorf("sing-box: profile-title %q, want %q", got, "Burrow (tcp only)")
	}
	x1 := xhttpTemplate(t)
	if _, err := EncodeSingBox([]*links.VLESS{&x1}); err == nil {
		t.Error("EncodeSingBox(only an xhttp link) succeeded, want an error")
	}
}

func TestParseErrors(t *testing.T) {
	cases := []struct {
		name  string
		parse func([]byte) ([]*links.VLESS, error)
		in    string
	}{
		{"base64 junk", ParseBase64, "!!!"},
		{"base64 no links", ParseBase64, "c3M6Ly94eHg="},
		{"base64 bad link", ParseBase64, "dmxlc3M6Ly9ub3BlQGE6MQ=="},
		{"sing-box junk", ParseSingBox, "{"},
		{"sing-box no vless", ParseSingBox, `{"outbounds":[{"type":"direct","tag":"d"}]}`},
		{"sing-box no reality", ParseSingBox, `{"outbounds":[{"type":"vless","tag":"x","server":"a.b","server_port":1,"uuid":"0f3c0a7e-3f8a-4b6c-9d2e-5a1b2c3d4e5f"}]}`},
		{"sing-box bad key", ParseSingBox, `{"outbounds":[{"type":"vless","tag":"x","server":"a.b","server_port":1,"uuid":"0f3c0a7e-3f8a-4b6c-9d2e-5a1b2c3d4e5f","tls":{"enabled":true,"reality":{"enabled":true,"public_key":"short"}}}]}`},
		{"clash junk", ParseClash, "proxies: [\n"},
		{"clash no vless", ParseClash, "proxies:\n  - {name: a, type: ss}\n"},
		{"clash ws", ParseClash, "proxies:\n  - {name: a, type: vless, network: ws, tls: true, reality-opts: {public-key: x}}\n"},
		{"clash xhttp flow", ParseClash, "proxies:\n  - {name: a, type: vless, network: xhttp, server: a.b, port: 1, uuid: 0f3c0a7e-3f8a-4b6c-9d2e-5a1b2c3d4e5f, flow: xtls-rprx-vision, tls: true, reality-opts: {public-key: 7Rb6r7sTSaPl3y6RWuV5b0rTqMdcVbHiBrWlTnc6iH4}}\n"},
		{"clash xhttp mode", ParseClash, "proxies:\n  - {name: a, type: vless, network: xhttp, server: a.b, port: 1, uuid: 0f3c0a7e-3f8a-4b6c-9d2e-5a1b2c3d4e5f, tls: true, reality-opts: {public-key: 7Rb6r7sTSaPl3y6RWuV5b0rTqMdcVbHiBrWlTnc6iH4}, xhttp-opts: {mode: sideways}}\n"},
	}
	for _, c := range cases {
		if got, err := c.parse([]byte(c.in)); err == nil {
			t.Errorf("%s: parse(%q) = %v, want an error", c.name, c.in, got)
		}
	}
}

func serve(t *testing.T, title string) (*httptest.Server, *access.User, *access.User) {
	t.Helper()
	u := &access.User{ID: 1, Name: "alice", UUID: access.NewUUID(), SubToken: access.NewSubToken(), Quota: 50e9,
		BytesUp: 123, BytesDown: 4567, ExpiresAt: time.Unix(1800000000, 0)}
	revoked := &access.User{ID: 2, Name: "bob", UUID: access.NewUUID(), SubToken: access.NewSubToken(), Revoked: true}
	h, err := NewHandler(Config{Users: users{u.SubToken: u, revoked.SubToken: revoked}, Servers: []links.VLESS{template(t)}, Title: title})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv, u, revoked
}

func TestHandler(t *testing.T) {
	srv, u, _ := serve(t, "Семья")
	for _, tc := range []struct {
		query, ua string
		parse     func([]byte) ([]*links.VLESS, error)
	}{
		{"", "v2rayNG/1.9", ParseBase64},
		{"", "SFA/1.11", ParseSingBox},
		{"", "clash-verge/1.7", ParseClash},
		{"?format=clash", "v2rayNG/1.9", ParseClash},
		{"?format=sing-box", "", ParseSingBox},
		{"?format=base64", "mihomo", ParseBase64},
	} {
		req, _ := http.NewRequest("GET", srv.URL+"/some/prefix/"+u.SubToken+tc.query, nil)
		req.Header.Set("User-Agent", tc.ua)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("GET %s (UA %s) = %d", tc.query, tc.ua, resp.StatusCode)
		}
		ls, err := tc.parse(body)
		if err != nil || len(ls) != 1 || ls[0].UUID != u.UUID || ls[0].Name != "alice" {
			t.Errorf("GET %s (UA %s): links %v, %v; want alice's one link", tc.query, tc.ua, ls, err)
		}
		if got, want := resp.Header.Get("Subscription-Userinfo"), "upload=123; download=4567; total=50000000000; expire=1800000000"; got != want {
			t.Errorf("subscription-userinfo = %q, want %q", got, want)
		}
		if got := resp.Header.Get("Profile-Title"); !strings.HasPrefix(got, "base64:") {
			t.Errorf("profile-title = %q, want the base64: form for a non-ASCII title", got)
		} else if dec, err := DecodeTitle(got); err != nil || dec != "Семья" {
			t.Errorf("DecodeTitle(%q) = %q, %v; want Семья", got, dec, err)
		}
		if got := resp.Header.Get("Profile-Update-Interval"); got != "12" {
			t.Errorf("profile-update-interval = %q, want 12", got)
		}
	}
	resp, err := http.Get(srv.URL + "/" + u.SubToken + "?format=xml")
	if err != nil || resp.StatusCode != 400 {
		t.Errorf("?format=xml: %v, %v; want 400", resp.Status, err)
	}
	srv2, u2, _ := serve(t, "Plain Title")
	resp, err = http.Get(srv2.URL + "/" + u2.SubToken)
	if err != nil || resp.Header.Get("Profile-Title") != "Plain Title" {
		t.Errorf("ASCII title header = %q, want it plain", resp.Header.Get("Profile-Title"))
	}
	if _, err := NewHandler(Config{Users: users{}, Servers: []links.VLESS{template(t)}, Title: strings.Repeat("x", 26)}); err == nil {
		t.Error("NewHandler with a 26-character title succeeded")
	}
	if _, err := NewHandler(Config{Users: users{}, Servers: []links.VLESS{template(t)}, Title: "a\nb"}); err == nil {
		t.Error("NewHandler with a newline in the title succeeded")
	}
}

// raw sends one request over a fresh TCP connection and returns the whole
// response, bytes as sent.
func raw(t *testing.T, addr, method, path string) []byte {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	io.WriteString(c, method+" "+path+" HTTP/1.1\r\nHost: sub.example\r\nUser-Agent: v2rayNG/1.9\r\nConnection: close\r\n\r\n")
	b, _ := io.ReadAll(bufio.NewReader(c))
	return b
}

// TestNotFoundIdentical: a wrong token, a revoked user's token and any
// missing page get byte-identical answers.
func TestNotFoundIdentical(t *testing.T) {
	srv, u, rev := serve(t, "")
	addr := srv.Listener.Addr().String()
	want := raw(t, addr, "GET", "/favicon.ico")
	if !bytes.HasPrefix(want, []byte("HTTP/1.1 404 ")) || bytes.Contains(want, []byte("Date:")) {
		t.Fatalf("missing page answer:\n%s\nwant a 404 without Date", want)
	}
	wrong := []byte(u.SubToken)
	wrong[5] ^= 1
	revoked := rev.SubToken
	for _, p := range []string{"/", "/" + string(wrong), "/" + revoked, "/" + u.SubToken + "x", "/sub/" + strings.Repeat("A", 43), "/%00", "/" + strings.Repeat("a", 5000)} {
		if got := raw(t, addr, "GET", p); !bytes.Equal(got, want) {
			t.Errorf("GET %.60s:\n%s\nwant byte-identical to a missing page:\n%s", p, got, want)
		}
	}
	if got := raw(t, addr, "POST", "/"+u.SubToken); !bytes.Equal(got, want) {
		t.Errorf("POST with a valid token:\n%s\nwant the same 404", got)
	}
	if got := raw(t, addr, "GET", "/"+u.SubToken); !bytes.HasPrefix(got, []byte("HTTP/1.1 200 ")) {
		t.Errorf("GET with the valid token: %.100s, want 200", got)
	}
}

func FuzzParseBase64(f *testing.F) {
	l := template(f)
	f.Add(EncodeBase64([]*links.VLESS{&l}))
	f.Add([]byte("dmxlc3M6Ly8="))
	f.Fuzz(func(t *testing.T, b []byte) {
		ls, err := ParseBase64(b)
		if err == nil && len(ls) == 0 {
			t.Fatal("no error and no links")
		}
	})
}

func FuzzParseSingBox(f *testing.F) {
	l := template(f)
	b, _ := EncodeSingBox([]*links.VLESS{&l})
	f.Add(b)
	f.Fuzz(func(t *testing.T, b []byte) {
		ls, err := ParseSingBox(b)
		if err == nil && len(ls) == 0 {
			t.Fatal("no error and no links")
		}
	})
}

func FuzzParseClash(f *testing.F) {
	l, x := template(f), xhttpTemplate(f)
	b, _ := EncodeClash([]*links.VLESS{&l})
	f.Add(b)
	b, _ = EncodeClash([]*links.VLESS{&l, &x})
	f.Add(b)
	f.Fuzz(func(t *testing.T, b []byte) {
		ls, err := ParseClash(b)
		if err == nil && len(ls) == 0 {
			t.Fatal("no error and no links")
		}
	})
}
