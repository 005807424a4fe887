package censorlab

import (
	"bytes"
	"encoding/binary"
	"sync"
)

// Signatures blocks flows whose first client bytes match a VPN or proxy
// protocol: WireGuard handshake initiation, OpenVPN hard reset (TCP and
// UDP), SOCKS4 and SOCKS5 greetings, HTTP CONNECT and absolute-URI proxy
// requests. It looks at the reassembled start of the TCP stream (until the
// first 512 bytes or the third read) and at the first datagram of a UDP flow.
type Signatures struct {
	mu      sync.Mutex
	decided map[uint64]bool // guarded by mu; flows past inspection
}

func (*Signatures) Name() string { return "signatures" }

func (*Signatures) Open(*Flow) Verdict { return Verdict{} }

func (s *Signatures) Close(f *Flow) {
	s.mu.Lock()
	delete(s.decided, f.ID)
	s.mu.Unlock()
}

func (s *Signatures) Data(f *Flow, dir Dir, p []byte) Verdict {
	if dir != Up {
		return Verdict{}
	}
	s.mu.Lock()
	if s.decided == nil {
		s.decided = map[uint64]bool{}
	}
	done := s.decided[f.ID]
	s.mu.Unlock()
	if done {
		return Verdict{}
	}
	var name string
	var final bool
	if f.Network == "udp" {
		name, final = MatchDatagram(p), true
	} else {
		seen := f.Seen(Up)
		name = MatchStream(seen)
		final = len(seen) >= 512 || f.Pieces(Up) >= 3
	}
	if name != "" || final {
		s.mu.Lock()
		s.decided[f.ID] = true
		s.mu.Unlock()
	}
	if name == "" {
		return Verdict{}
	}
	return Verdict{Action: Reset, Reason: name + " signature"}
}

// OpenVPN opcodes (the high 5 bits of the first byte; key id in the low 3).
const (
	ovpnHardResetClientV1 = 1
	ovpnHardResetClientV2 = 7
	ovpnHardResetClientV3 = 10
)

// MatchDatagram names the protocol whose first datagram p looks like, or "".
//
//	WireGuard initiation: 01 00 00 00 | sender(4) | ephemeral(32) | static(48) | timestamp(28) | mac1(16) | mac2(16)  = 148 bytes
//	OpenVPN UDP reset:    opcode<<3|key(1) | session id(8) | [hmac, packet id, time] | ack len(1) ... (14+ bytes)
func MatchDatagram(p []byte) string {
	switch {
	case len(p) == 148 && bytes.Equal(p[:4], []byte{1, 0, 0, 0}):
		return "WireGuard handshake initiation"
	case len(p) == 92 && bytes.Equal(p[:4], []byte{2, 0, 0, 0}):
		return "WireGuard handshake response"
	case isOpenVPNReset(p):
		return "OpenVPN UDP P_CONTROL_HARD_RESET_CLIENT"
	}
	return ""
}

func isOpenVPNReset(p []byte) bool {
	if len(p) < 14 || len(p) > 1500 || p[0]&7 != 0 {
		return false
	}
	switch p[0] >> 3 {
	case ovpnHardResetClientV1, ovpnHardResetClientV2, ovpnHardResetClientV3:
		return true
	}
	return false
}

// MatchStream names the protocol the start of a client's TCP stream looks
// like, or "".
//
//	OpenVPN TCP:  length(2, big endian) | a UDP-style reset packet of that length
//	SOCKS5:       05 | nmethods | methods...   [05 cmd 00 atyp ...]
//	SOCKS4(a):    04 | 01/02 | port(2) | ip(4) | user id | 00
//	HTTP proxy:   CONNECT host:port HTTP/1.x   or   METHOD http://host/... HTTP/1.x
func MatchStream(p []byte) string {
	if len(p) >= 2+14 {
		if n := int(binary.BigEndian.Uint16(p)); n >= 14 && len(p) >= 2+n && isOpenVPNReset(p[2:2+n]) {
			return "OpenVPN TCP P_CONTROL_HARD_RESET_CLIENT"
		}
	}
	if len(p) >= 3 && p[0] == 5 && p[1] >= 1 && p[1] <= 16 && len(p) >= 2+int(p[1]) {
		methods := p[2 : 2+int(p[1])]
		rest := p[2+int(p[1]):]
		okMethods := true
		for _, m := range methods {
			if m > 0x09 && m < 0x80 || m == 0xff {
				okMethods = false
			}
		}
		if okMethods && (len(rest) == 0 || len(rest) >= 4 && rest[0] == 5 && rest[1] >= 1 && rest[1] <= 3 && rest[2] == 0) {
			return "SOCKS5 greeting"
		}
	}
	if len(p) >= 9 && p[0] == 4 && (p[1] == 1 || p[1] == 2) && bytes.IndexByte(p[8:], 0) >= 0 {
		return "SOCKS4 request"
	}
	line, _, _ := bytes.Cut(p, []byte("\r\n"))
	if len(line) < len(p) || len(p) >= 512 { // a whole request line, or a long one
		method, rest, ok := bytes.Cut(line, []byte(" "))
		if ok && isToken(method) && (bytes.Contains(rest, []byte(" HTTP/1.")) || bytes.HasSuffix(rest, []byte(" HTTP/1.1"))) {
			if string(method) == "CONNECT" {
				return "HTTP CONNECT proxy request"
			}
			lower := bytes.ToLower(rest)
			if bytes.HasPrefix(lower, []byte("http://")) || bytes.HasPrefix(lower, []byte("https://")) {
				return "HTTP absolute-URI proxy request"
			}
		}
	}
	return ""
}

func isToken(b []byte) bool {
	if len(b) == 0 || len(b) > 16 {
		return false
	}
	for _, c := range b {
		if c < 'A' || c > 'Z' {
			return false
		}
	}
	return true
}
