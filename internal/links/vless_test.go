package links

import (
	"encoding/base64"
	"errors"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

const (
	testUUID = "1ec1499c-c255-4d67-9d12-c5cd6c2a9a53"
	testPBK  = "yhMUYkD9g0SfXB7htfXbbCpsBDGX3qyQkzyBX8a0VHk" // as `xray x25519` prints it
)

func mustKey(t testing.TB, s string) []byte {
	t.Helper()
	k, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func TestParseVLESSReal(t *testing.T) {
	tests := []struct {
		name string
		link string
		want VLESS
	}{
		{
			"canonical form (ECOSYSTEM 1c)",
			"vless://" + testUUID + "@example.com:443?encryption=none&security=reality&sni=www.microsoft.com&fp=chrome&pbk=" + testPBK +
				"&sid=e5c4d84fb339fb92&spx=%2F&flow=xtls-rprx-vision&type=tcp#%D0%9C%D0%B0%D0%BC%D0%B0%20phone",
			VLESS{Host: "example.com", Port: 443, SNI: "www.microsoft.com", Fingerprint: "chrome",
				ShortID: []byte{0xe5, 0xc4, 0xd8, 0x4f, 0xb3, 0x39, 0xfb, 0x92}, SpiderX: "/", Flow: FlowVision,
				Type: "tcp", Name: "Мама phone", Security: "reality", Encryption: "none"},
		},
		{
			"pony docs: grpc leftovers on a tcp link, empty headerType",
			"vless://" + testUUID + "@127.0.0.1:2053?security=reality&flow=xtls-rprx-vision&type=tcp&headerType=&serviceName=xyz&mode=gun" +
				"&sni=discordapp.com&fp=chrome&pbk=" + testPBK + "&sid=e5c4d84fb339fb92#TEST-Vless-XTLS",
			VLESS{Host: "127.0.0.1", Port: 2053, SNI: "discordapp.com", Fingerprint: "chrome",
				ShortID: []byte{0xe5, 0xc4, 0xd8, 0x4f, 0xb3, 0x39, 0xfb, 0x92}, Flow: FlowVision, Type: "tcp",
				Name: "TEST-Vless-XTLS", Security: "reality", Encryption: "none",
				Extra: url.Values{"headerType": {""}, "serviceName": {"xyz"}, "mode": {"gun"}}},
		},
		{
			"3x-ui order, IPv6 host, one-byte sid, uppercase scheme, trailing slash",
			"VLESS://" + strings.ToUpper(testUUID) + "@[2001:db8::1]:8443/?type=tcp&security=reality&pbk=" + testPBK +
				"&fp=Firefox&sni=yahoo.com&sid=1d&spx=%2Fsearch%3Fq%3D1&headerType=none#de-1",
			VLESS{Host: "2001:db8::1", Port: 8443, SNI: "yahoo.com", Fingerprint: "firefox", ShortID: []byte{0x1d},
				SpiderX: "/search?q=1", Type: "tcp", Name: "de-1", Security: "reality", Encryption: "none",
				Extra: url.Values{"headerType": {"none"}}},
		},
		{
			"minimal: no sid, fp, flow, type, name; type raw",
			"vless://" + testUUID + "@vpn.example.org:443?security=reality&sni=www.apple.com&pbk=" + testPBK + "&type=raw",
			VLESS{Host: "vpn.example.org", Port: 443, SNI: "www.apple.com", Type: "raw", Security: "reality", Encryption: "none"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tc.want.PublicKey = mustKey(t, testPBK)
			copy(tc.want.UUID[:], []byte{0x1e, 0xc1, 0x49, 0x9c, 0xc2, 0x55, 0x4d, 0x67, 0x9d, 0x12, 0xc5, 0xcd, 0x6c, 0x2a, 0x9a, 0x53})
			got, err := ParseVLESS(tc.link)
			if err != nil {
				t.Fatalf("ParseVLESS(%q) = %v", tc.link, err)
			}
			if !reflect.DeepEqual(*got, tc.want) {
				t.Errorf("ParseVLESS(%q) =\n%+v\nwant\n%+v", tc.link, *got, tc.want)
			}
			again, err := ParseVLESS(got.String())
			if err != nil || !reflect.DeepEqual(again, got) {
				t.Errorf("ParseVLESS(String() = %q) = %+v, %v, want %+v", got.String(), again, err, got)
			}
		})
	}
}

func TestStringCanonical(t *testing.T) {
	link := "vless://" + testUUID + "@[2001:db8::1]:443?encryption=none&security=reality&sni=www.microsoft.com&fp=chrome&pbk=" +
		testPBK + "&sid=0123abcd&spx=%2F&flow=xtls-rprx-vision&type=tcp&headerType=none&x=a+b#Anna%27s%20phone%20%F0%9F%87%A9%F0%9F%87%AA"
	l, err := ParseVLESS(link)
	if err != nil {
		t.Fatal(err)
	}
	if l.Name != "Anna's phone 🇩🇪" {
		t.Errorf("Name = %q", l.Name)
	}
	if got := l.String(); got != link {
		t.Errorf("String() = %q, want %q", got, link)
	}
	r := l.Redacted()
	if strings.Contains(r, testUUID) || strings.Contains(r, "0123abcd") || !strings.Contains(r, "xxxxxxxx-xxxx") {
		t.Errorf("Redacted() = %q, want no uuid or sid", r)
	}
	// A struct built by hand (as the server does) gets the defaults.
	built := &VLESS{UUID: l.UUID, Host: "203.0.113.7", Port: 443, SNI: "www.microsoft.com", Fingerprint: "chrome",
		PublicKey: l.PublicKey, Flow: FlowVision, Name: "owner"}
	want := "vless://" + testUUID + "@203.0.113.7:443?encryption=none&security=reality&sni=www.microsoft.com&fp=chrome&pbk=" +
		testPBK + "&flow=xtls-rprx-vision&type=tcp#owner"
	if got := built.String(); got != want {
		t.Errorf("String() = %q, want %q", got, want)
	}
}

func TestParseVLESSErrors(t *testing.T) {
	base := "vless://" + testUUID + "@example.com:443"
	q := "?security=reality&sni=www.microsoft.com&pbk=" + testPBK
	tests := []struct{ link, want string }{
		{"", "link: must start with vless://"},
		{"vmess://abc", "link: must start with vless://"},
		{"vless://" + strings.Repeat("a", 9000), "link: 9008 bytes is too long (at most 8192)"},
		{"vless://example.com:443" + q, "link: uuid: missing (want vless://UUID@host:port)"},
		{"vless://abc@example.com:443" + q, "link: uuid: want 36 characters in the 8-4-4-4-12 hex form, got 3 (free-form Xray ids are not supported)"},
		{"vless://" + testUUID + ":pw@example.com:443" + q, "link: uuid: must be the UUID alone, without a password"},
		{"vless://1ec1499cxc255-4d67-9d12-c5cd6c2a9a53@example.com:443" + q, "link: uuid: want the 8-4-4-4-12 hex form with dashes"},
		{"vless://zec1499c-c255-4d67-9d12-c5cd6c2a9a53@example.com:443" + q, "link: uuid: not hexadecimal"},
		{"vless://" + testUUID + "@example.com" + q, "link: port: missing (want host:port)"},
		{"vless://" + testUUID + "@example.com:" + q, `link: port: "" is not a number`},
		{"vless://" + testUUID + "@example.com:0" + q, `link: port: "0" is not in 1..65535`},
		{"vless://" + testUUID + "@example.com:65536" + q, `link: port: "65536" is not in 1..65535`},
		{"vless://" + testUUID + "@example.com:-1" + q, `link: port: "-1" is not a number`},
		{"vless://" + testUUID + "@:443" + q, "link: host: empty"},
		{"vless://" + testUUID + "@2001:db8::1:443" + q, "link: host: an IPv6 address must be in brackets, like [2001:db8::1]:443"},
		{"vless://" + testUUID + "@[2001:db8::1:443" + q, "link: host: missing ] after IPv6 address"},
		{"vless://" + testUUID + "@[2001:db8::1]443" + q, "link: port: missing (want [IPv6]:port)"},
		{"vless://" + testUUID + "@[1.2.3.4]:443" + q, `link: host: "1.2.3.4" in brackets is not an IPv6 address`},
		{"vless://" + testUUID + "@[fe80::1%25eth0]:443" + q, `link: host: "fe80::1%25eth0" in brackets is not an IPv6 address`},
		{"vless://" + testUUID + "@exa%mple.com:443" + q, `link: host: "exa%mple.com" is neither an IP address nor a domain name`},
		{"vless://" + testUUID + "@999.1.1.1:443" + q, `link: host: "999.1.1.1" is neither an IP address nor a domain name`},
		{base + "/path" + q, "link: path: must be empty or /"},
		{base + q + "&sni=x.com", "link: sni: given 2 times"},
		{base + "?sni=a.com&pbk=" + testPBK, "link: security: missing; want security=reality"},
		{base + "?security=tls&sni=a.com&pbk=" + testPBK, `link: security: "tls" is not supported; want reality`},
		{base + q + "&encryption=mlkem768x25519plus.native.0rtt.abc", `link: encryption: "mlkem768x25519plus.native.0rtt.abc" is not supported; want none`},
		{base + "?security=reality&pbk=" + testPBK, "link: sni: missing; REALITY needs the cover site's server name"},
		{base + "?security=reality&sni=1.2.3.4&pbk=" + testPBK, `link: sni: "1.2.3.4" is not a domain name`},
		{base + "?security=reality&sni=a.com", "link: pbk: missing; want the server's X25519 public key"},
		{base + "?security=reality&sni=a.com&pbk=yhMUYkD9g0Sf", "link: pbk: must be 43 characters of base64url (a 32-byte X25519 key), got 12"},
		{base + "?security=reality&sni=a.com&pbk=" + testPBK + "%3D", "link: pbk: must be 43 characters of base64url (a 32-byte X25519 key), got 44"},
		{base + "?security=reality&sni=a.com&pbk=yhMUYkD9g0SfXB7htfXbbCpsBDGX3qyQkzyBX8a0VH%2B", "link: pbk: not base64url (want A-Z a-z 0-9 - _ as xray x25519 prints the key)"},
		{base + "?security=reality&sni=a.com&pbk=" + strings.Repeat("A", 43), "link: pbk: is all zeros"},
		{base + q + "&sid=abc", "link: sid: must be an even number of hex digits, at most 16, got 3"},
		{base + q + "&sid=0123456789abcdef01", "link: sid: must be an even number of hex digits, at most 16, got 18"},
		{base + q + "&sid=zz", "link: sid: not hexadecimal"},
		{base + q + "&spx=search", "link: spx: must start with /"},
		{base + q + "&spx=%2F%0A", "link: spx: contains control character U+000A"},
		{base + q + "&flow=xtls-rprx-direct", `link: flow: "xtls-rprx-direct" is not supported; want xtls-rprx-vision or none`},
		{base + q + "&type=ws", `link: type: "ws" transport is not supported yet; want tcp (or raw) or xhttp`},
		{base + q + "&type=grpc", `link: type: "grpc" transport is not supported yet; want tcp (or raw) or xhttp`},
		{base + q + "&headerType=http", "link: headerType: only none is supported (HTTP header obfuscation changes the wire format)"},
		{base + q + "&x=%zz", `link: query: invalid URL escape "%zz"`},
		{base + q + "&x=%00", "link: x: contains control character U+0000"},
		{base + q + "#bad%zz", "link: name: bad percent-encoding"},
		{base + q + "#line%0Abreak", "link: name: contains control character U+000A"},
		{base + q + "#" + strings.Repeat("n", 300), "link: name: 300 bytes is too long (at most 256)"},
		{base + q + "#%FF", "link: name: not valid UTF-8"},
		{base + " " + q, "link: space or control character at byte 60"},
	}
	for _, tc := range tests {
		got, err := ParseVLESS(tc.link)
		var le *Error
		if err == nil || err.Error() != tc.want || !errors.As(err, &le) {
			t.Errorf("ParseVLESS(%.90q) = %v, %v, want error %q", tc.link, got, err, tc.want)
		}
		if err != nil && strings.Contains(err.Error(), testUUID) {
			t.Errorf("ParseVLESS(%.90q) error %q repeats the UUID", tc.link, err)
		}
	}
}

func TestLoadVLESS(t *testing.T) {
	link := "vless://" + testUUID + "@example.com:443?security=reality&sni=a.com&pbk=" + testPBK + "#file"
	dir := t.TempDir()
	good := filepath.Join(dir, "link.txt")
	if err := os.WriteFile(good, []byte("\xef\xbb\xbf\r\n  \n"+link+"\r\nvless://second\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	empty := filepath.Join(dir, "empty.txt")
	os.WriteFile(empty, []byte("\n \n"), 0o600)
	broken := filepath.Join(dir, "broken.txt")
	os.WriteFile(broken, []byte("vless://nope\n"), 0o600)

	for _, arg := range []string{link, "  " + link + "\n", good} {
		l, err := LoadVLESS(arg)
		if err != nil || l.Name != "file" || l.SNI != "a.com" {
			t.Errorf("LoadVLESS(%.40q) = %+v, %v, want the link", arg, l, err)
		}
	}
	bad := []struct{ arg, want string }{
		{filepath.Join(dir, "missing.txt"), "is neither a vless:// link nor an existing file"},
		{empty, "holds no link"},
		{broken, broken + ": link: uuid: missing"},
		{dir, "is a directory"},
		{"vles://" + testUUID + "@example.com:443", "link: must start with vless://"},
	}
	for _, tc := range bad {
		l, err := LoadVLESS(tc.arg)
		if err == nil || !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), testUUID) {
			t.Errorf("LoadVLESS(%q) = %v, %v, want error containing %q (and not the UUID)", tc.arg, l, err, tc.want)
		}
	}
}

func FuzzParseVLESS(f *testing.F) {
	q := "?encryption=none&security=reality&sni=www.microsoft.com&fp=chrome&pbk=" + testPBK
	for _, s := range []string{
		"vless://" + testUUID + "@example.com:443" + q + "&sid=e5c4d84fb339fb92&spx=%2F&flow=xtls-rprx-vision&type=tcp#name",
		"vless://" + testUUID + "@example.com:443" + q + "&flow=xtls-rprx-vision&type=tcp&tcpmux=1",
		"vless://" + testUUID + "@[2001:db8::1]:443" + q + "&headerType=none&serviceName=x#%F0%9F%87%A9%F0%9F%87%AA",
		"vless://" + testUUID + "@1.2.3.4:1" + q + "&type=raw&x=a+b&x=c#a b",
		"vless://" + testUUID + "@host:443/?security=reality&sni=a.com&pbk=" + testPBK,
		"vless://abc@host:99999?sid=zz",
		"vless://" + testUUID + "@example.com:443" + q + "&type=xhttp&path=%2Fapi%2Fv1&host=cdn.example.com&mode=packet-up&budget=12288#x",
		"vless://" + testUUID + "@example.com:443" + q + "&type=xhttp&mode=auto&extra=%7B%22xPaddingBytes%22%3A%22100-1000%22%7D",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		l, err := ParseVLESS(s)
		if err != nil {
			var le *Error
			if !errors.As(err, &le) {
				t.Fatalf("ParseVLESS(%q) error %v is not an *Error", s, err)
			}
			return
		}
		out := l.String()
		again, err := ParseVLESS(out)
		if err != nil {
			t.Fatalf("ParseVLESS(%q).String() = %q does not parse: %v", s, out, err)
		}
		if !reflect.DeepEqual(again, l) {
			t.Fatalf("parse→String→parse changed %q:\n%+v\n%+v", s, l, again)
		}
		if again.String() != out {
			t.Fatalf("String not stable: %q then %q", out, again.String())
		}
		if len(l.PublicKey) != 32 || len(l.ShortID) > 8 || l.Port == 0 || l.Security != SecurityReality {
			t.Fatalf("ParseVLESS(%q) accepted invalid fields: %+v", s, l)
		}
	})
}

func TestTCPMux(t *testing.T) {
	q := "?security=reality&sni=www.microsoft.com&pbk=" + testPBK
	base := "vless://" + testUUID + "@example.com:443" + q
	l, err := ParseVLESS(base + "&flow=xtls-rprx-vision&tcpmux=1")
	if err != nil || !l.TCPMux {
		t.Fatalf("ParseVLESS(tcpmux=1) = %+v, %v, want TCPMux", l, err)
	}
	if s := l.String(); !strings.Contains(s, "&tcpmux=1") {
		t.Errorf("String() = %q, want tcpmux=1 in it", s)
	}
	l, err = ParseVLESS(base + "&flow=xtls-rprx-vision&tcpmux=0")
	if err != nil || l.TCPMux || strings.Contains(l.String(), "tcpmux") {
		t.Errorf("ParseVLESS(tcpmux=0) = %+v, %v, want TCPMux off and not written back", l, err)
	}
	for _, tc := range []struct{ link, want string }{
		{base + "&tcpmux=1", "tcpmux: only applies to type=tcp with flow=xtls-rprx-vision"},
		{base + "&type=xhttp&tcpmux=1", "tcpmux: only applies"},
		{base + "&flow=xtls-rprx-vision&tcpmux=yes", "tcpmux: want 1 or 0"},
		{base + "&flow=xtls-rprx-vision&tcpmux=1&tcpmux=1", "tcpmux: given 2 times"},
	} {
		if _, err := ParseVLESS(tc.link); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("ParseVLESS(%q) error = %v, want %q", tc.link, err, tc.want)
		}
	}
}
