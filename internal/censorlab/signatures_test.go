package censorlab

import (
	"bytes"
	"testing"
)

func wgInit() []byte {
	p := bytes.Repeat([]byte{0xa5}, 148)
	copy(p, []byte{1, 0, 0, 0})
	return p
}

func ovpnReset(opcode byte) []byte {
	p := make([]byte, 14)
	p[0] = opcode << 3
	copy(p[1:9], "\x11\x22\x33\x44\x55\x66\x77\x88")
	return p
}

func TestMatchDatagram(t *testing.T) {
	tests := []struct {
		name string
		in   []byte
		want string
	}{
		{"wireguard init", wgInit(), "WireGuard handshake initiation"},
		{"wireguard init 147 bytes", wgInit()[:147], ""},
		{"wireguard response", append([]byte{2, 0, 0, 0}, make([]byte, 88)...), "WireGuard handshake response"},
		{"openvpn v2 reset", ovpnReset(7), "OpenVPN UDP P_CONTROL_HARD_RESET_CLIENT"},
		{"openvpn v3 reset", ovpnReset(10), "OpenVPN UDP P_CONTROL_HARD_RESET_CLIENT"},
		{"openvpn data", ovpnReset(9), ""},
		{"openvpn key id 1", append([]byte{7<<3 | 1}, make([]byte, 13)...), ""},
		{"dns query", []byte{0x12, 0x34, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 3, 'w', 'w', 'w', 0, 0, 1, 0, 1}, ""},
	}
	for _, tt := range tests {
		if got := MatchDatagram(tt.in); got != tt.want {
			t.Errorf("MatchDatagram(%s) = %q, want %q", tt.name, got, tt.want)
		}
	}
}

func TestMatchStream(t *testing.T) {
	ovpnTCP := append([]byte{0, 14}, ovpnReset(7)...)
	tests := []struct {
		name string
		in   string
		want string
	}{
		{"openvpn tcp", string(ovpnTCP), "OpenVPN TCP P_CONTROL_HARD_RESET_CLIENT"},
		{"openvpn tcp truncated", string(ovpnTCP[:10]), ""},
		{"socks5 greeting", "\x05\x01\x00", "SOCKS5 greeting"},
		{"socks5 greeting two methods", "\x05\x02\x00\x02", "SOCKS5 greeting"},
		{"socks5 greeting and request", "\x05\x01\x00\x05\x01\x00\x03\x07example\x01\xbb", "SOCKS5 greeting"},
		{"socks5 junk after", "\x05\x01\x00zzzz", ""},
		{"socks4", "\x04\x01\x00\x50\x0a\x00\x00\x01user\x00", "SOCKS4 request"},
		{"connect", "CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n", "HTTP CONNECT proxy request"},
		{"absolute uri", "GET http://example.com/ HTTP/1.1\r\nHost: example.com\r\n\r\n", "HTTP absolute-URI proxy request"},
		{"origin form", "GET / HTTP/1.1\r\nHost: example.com\r\n\r\n", ""},
		{"incomplete connect line", "CONNECT example.com:443 HTT", ""},
		{"tls", "\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", ""},
	}
	for _, tt := range tests {
		if got := MatchStream([]byte(tt.in)); got != tt.want {
			t.Errorf("MatchStream(%s) = %q, want %q", tt.name, got, tt.want)
		}
	}
}

// A request split into one-byte segments is still matched: the box sees
// the reassembled stream.
func TestSignaturesSplit(t *testing.T) {
	req := []byte("CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n")
	s := &Signatures{}
	// Pieces counts reads, so three one-byte reads would end inspection;
	// split into two halves as TCP segments would arrive.
	v, at := feed(tcpFlow(1, "127.0.2.1:443"), s, Up, req, len(req)/2+1)
	if v.Action != Reset || at != len(req) {
		t.Fatalf("Signatures on a split CONNECT = %v at %d, want reset at %d", v, at, len(req))
	}
	// UDP: only the first datagram counts.
	f := udpFlow(2, "127.0.2.1:51820")
	if v, _ := feed(f, s, Up, []byte("hello"), 0); v.Action != Pass {
		t.Fatalf("first datagram %q: %v, want pass", "hello", v)
	}
	if v, _ := feed(f, s, Up, wgInit(), 0); v.Action != Pass {
		t.Fatalf("second datagram WireGuard init: %v, want pass (only the first is inspected)", v)
	}
	if v, _ := feed(udpFlow(3, "127.0.2.1:51820"), s, Up, wgInit(), 0); v.Action != Reset {
		t.Fatalf("first datagram WireGuard init: %v, want reset", v)
	}
}

func FuzzMatch(f *testing.F) {
	f.Add(wgInit())
	f.Add(append([]byte{0, 14}, ovpnReset(7)...))
	f.Add([]byte("\x05\x01\x00\x05\x01\x00\x03\x07example\x01\xbb"))
	f.Add([]byte("CONNECT a:1 HTTP/1.1\r\n\r\n"))
	f.Fuzz(func(t *testing.T, p []byte) {
		MatchStream(p)
		MatchDatagram(p)
		Exemption(p)
		var s recordScanner
		s.feed(p, func(byte, int) {})
		PeekHello(p)
	})
}
