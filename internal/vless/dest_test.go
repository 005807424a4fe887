package vless

import (
	"errors"
	"net/netip"
	"strings"
	"testing"
)

func TestDestAddr(t *testing.T) {
	label63 := strings.Repeat("a", 63)
	name253 := strings.Repeat(label63+".", 3) + strings.Repeat("b", 61) // 3*64 + 61 = 253
	for _, tt := range []struct {
		host string
		want Addr
	}{
		{"example.com", Addr{Host: "example.com", Port: 443}},
		{"example.com.", Addr{Host: "example.com.", Port: 443}},
		{"_srv.x-y.Z9", Addr{Host: "_srv.x-y.Z9", Port: 443}},
		{label63 + ".com", Addr{Host: label63 + ".com", Port: 443}},
		{name253, Addr{Host: name253, Port: 443}},
		{"1.2.3.4", Addr{IP: netip.MustParseAddr("1.2.3.4"), Port: 443}},
		{"::ffff:1.2.3.4", Addr{IP: netip.MustParseAddr("1.2.3.4"), Port: 443}},
		{"2001:db8::1", Addr{IP: netip.MustParseAddr("2001:db8::1"), Port: 443}},
	} {
		got, err := DestAddr(tt.host, 443)
		if err != nil || got != tt.want {
			t.Errorf("DestAddr(%q) = %+v, %v, want %+v", tt.host, got, err, tt.want)
			continue
		}
		// What DestAddr accepts, a server accepts: it encodes and reads back the same.
		b, err := appendAddrPort(nil, got)
		if err != nil {
			t.Errorf("appendAddrPort(%+v): %v", got, err)
			continue
		}
		if back, err := readAddrPort(strings.NewReader(string(b))); err != nil || back != got {
			t.Errorf("readAddrPort(appendAddrPort(%+v)) = %+v, %v", got, back, err)
		}
	}
	for _, tt := range []struct {
		host, want string
		zone       bool
	}{
		{"fe80::1%v0", `IPv6 zone "%v0"`, true},
		{"::1%lo", `IPv6 zone "%lo"`, true},
		{"", "empty name", false},
		{".", "empty name", false},
		{"a..b", "empty label", false},
		{".example.com", "empty label", false},
		{"a\x01b", `character '\x01'`, false},
		{"a b", `character ' '`, false},
		{"exa\nmple.com", `character '\n'`, false},
		{"münchen.de", "non-ASCII name", false},
		{"[::1]", `character '['`, false},
		{strings.Repeat("a", 64) + ".com", "label of 64 bytes", false},
		{name253 + "c", "name of 254 bytes", false},
	} {
		_, err := DestAddr(tt.host, 443)
		if !errors.Is(err, ErrAddress) || errors.Is(err, ErrZone) != tt.zone || err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("DestAddr(%q) error = %v, want ErrAddress (zone %v) saying %q", tt.host, err, tt.zone, tt.want)
		}
	}
}
