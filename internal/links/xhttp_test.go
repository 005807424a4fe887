package links

import (
	"reflect"
	"strings"
	"testing"
)

func TestParseXHTTP(t *testing.T) {
	base := "vless://" + testUUID + "@example.com:443?security=reality&sni=www.microsoft.com&pbk=" + testPBK + "&type=xhttp"
	tests := []struct {
		link string
		want XHTTP
	}{
		{base, XHTTP{}},
		{base + "&mode=packet-up&path=%2Fassets%2Fa1&host=www.microsoft.com", XHTTP{Mode: ModePacketUp, Path: "/assets/a1", Host: "www.microsoft.com"}},
		{base + "&mode=stream-up&budget=12288", XHTTP{Mode: ModeStreamUp, Budget: 12288}},
		{base + "&mode=auto&budget=0", XHTTP{Mode: ModeAuto}},
		{base + `&extra=%7B%22xmux%22%3A%7B%7D%7D`, XHTTP{Extra: `{"xmux":{}}`}},
	}
	for _, tc := range tests {
		l, err := ParseVLESS(tc.link)
		if err != nil {
			t.Errorf("ParseVLESS(%q) error %v", tc.link, err)
			continue
		}
		if l.Type != TypeXHTTP || l.XHTTP == nil || *l.XHTTP != tc.want {
			t.Errorf("ParseVLESS(%q).XHTTP = %+v (type %q), want %+v", tc.link, l.XHTTP, l.Type, tc.want)
			continue
		}
		again, err := ParseVLESS(l.String())
		if err != nil || !reflect.DeepEqual(again, l) {
			t.Errorf("ParseVLESS(%q).String() = %q does not parse back the same: %v", tc.link, l.String(), err)
		}
	}
}

func TestParseXHTTPKeepsTCPLinksAlone(t *testing.T) {
	// mode= on a tcp link is a leftover (gRPC's "gun"): kept in Extra.
	l, err := ParseVLESS("vless://" + testUUID + "@example.com:443?security=reality&sni=a.com&pbk=" + testPBK + "&type=tcp&mode=gun&budget=9000")
	if err != nil {
		t.Fatal(err)
	}
	if l.XHTTP != nil || l.Extra.Get("mode") != "gun" || l.Extra.Get("budget") != "9000" {
		t.Errorf("tcp link: XHTTP = %+v, Extra = %v, want nil and mode, budget kept in Extra", l.XHTTP, l.Extra)
	}
}

func TestParseXHTTPErrors(t *testing.T) {
	base := "vless://" + testUUID + "@example.com:443?security=reality&sni=www.microsoft.com&pbk=" + testPBK + "&type=xhttp"
	tests := []struct{ link, want string }{
		{base + "&flow=xtls-rprx-vision", "link: flow: must be empty with type=xhttp (Vision needs type=tcp)"},
		{base + "&mode=gun", `link: mode: "gun" is not an xhttp mode; want auto, packet-up, stream-up or stream-one`},
		{base + "&path=api", "link: path: must start with /"},
		{base + "&path=%2Fa&path=%2Fb", "link: path: given 2 times"},
		{base + "&host=a%2Fb", "link: host: must be a host name"},
		{base + "&extra=%5B1%5D", "link: extra: must be a JSON object"},
		{base + "&budget=100", "link: budget: want bytes per connection between 4096 and 16777216, or 0 for off"},
		{base + "&budget=12k", "link: budget: want bytes per connection between 4096 and 16777216, or 0 for off"},
	}
	for _, tc := range tests {
		l, err := ParseVLESS(tc.link)
		if err == nil || err.Error() != tc.want || strings.Contains(err.Error(), testUUID) {
			t.Errorf("ParseVLESS(%q) = %v, %v, want error %q", tc.link, l, err, tc.want)
		}
	}
}
