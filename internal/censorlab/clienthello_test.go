package censorlab

import (
	"net/netip"
	"strings"
	"testing"
)

func TestClientHelloBox(t *testing.T) {
	chrome, goTLS := chromeHello(t), goHello(t, "cover.test")
	allow := &ClientHelloBox{AllowJA4: BrowserJA4}
	block := &ClientHelloBox{BlockSNI: []string{".torproject.org"}}
	white := &ClientHelloBox{Whitelist: []WhitelistEntry{{SNI: "cover.test", Networks: []netip.Prefix{CoverNet}}}}
	tests := []struct {
		name   string
		box    *ClientHelloBox
		server string
		hello  []byte
		want   Action
		reason string
	}{
		{"chrome passes the allow-list", allow, "127.0.2.1:443", chrome, Pass, ""},
		{"go crypto/tls is no browser", allow, "127.0.2.1:443", goTLS, Reset, "t13d131"},
		{"blocked SNI", block, "127.0.2.1:443", goHello(t, "www.torproject.org"), Reset, "block-list"},
		{"other SNI", block, "127.0.2.1:443", goTLS, Pass, ""},
		{"whitelisted name in its network", white, "127.0.1.1:443", goTLS, Pass, ""},
		{"whitelisted name elsewhere", white, "127.0.2.1:443", goTLS, Reset, "whitelist"},
		{"unlisted name", white, "127.0.1.1:443", goHello(t, "other.test"), Reset, "whitelist"},
		{"not TLS in whitelist mode", white, "127.0.1.1:443", []byte("GET / HTTP/1.1\r\n\r\n"), Reset, "not TLS"},
		{"not TLS otherwise", allow, "127.0.2.1:443", []byte("GET / HTTP/1.1\r\n\r\n"), Pass, ""},
	}
	for _, tt := range tests {
		for _, seg := range []int{0, 1, 7} {
			v, at := feed(tcpFlow(1, tt.server), &ClientHelloBox{BlockSNI: tt.box.BlockSNI, Whitelist: tt.box.Whitelist, AllowJA4: tt.box.AllowJA4}, Up, tt.hello, seg)
			if v.Action != tt.want || !strings.Contains(v.Reason, tt.reason) {
				t.Errorf("%s, %d-byte segments: %v (%s), want %v (%q)", tt.name, seg, v.Action, v.Reason, tt.want, tt.reason)
			}
			// A split hello is judged when its last byte arrives, not before.
			if tt.want == Reset && at != len(tt.hello) && tt.reason != "not TLS" {
				t.Errorf("%s, %d-byte segments: decided at byte %d, want %d", tt.name, seg, at, len(tt.hello))
			}
		}
	}
}

// The hello split across several TLS records is reassembled too.
func TestClientHelloBoxRecordSplit(t *testing.T) {
	rec := goHello(t, "cover.test")
	msg := rec[5:]
	var split []byte
	for off := 0; off < len(msg); off += 100 {
		part := msg[off:min(off+100, len(msg))]
		split = append(split, 0x16, 3, 1, byte(len(part)>>8), byte(len(part)))
		split = append(split, part...)
	}
	v, _ := feed(tcpFlow(1, "127.0.2.1:443"), &ClientHelloBox{AllowJA4: BrowserJA4}, Up, split, 3)
	if v.Action != Reset {
		t.Fatalf("Go hello in 100-byte records, 3-byte segments: %v, want reset", v)
	}
}
