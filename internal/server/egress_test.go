package server

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"testing"
)

func TestEgressPolicyRefuses(t *testing.T) {
	p := NewEgressPolicy(false, netip.MustParseAddr("203.0.113.77"))
	tests := []struct {
		ip   string
		want bool
	}{
		{"127.0.0.1", true},
		{"127.255.0.9", true},
		{"10.1.2.3", true},
		{"172.16.0.1", true},
		{"172.31.255.255", true},
		{"172.32.0.1", false},
		{"192.168.1.1", true},
		{"169.254.169.254", true}, // cloud metadata
		{"100.64.0.1", true},      // CGNAT
		{"100.128.0.1", false},
		{"0.0.0.0", true},
		{"224.0.0.251", true},
		{"255.255.255.255", true},
		{"203.0.113.77", true}, // the server's own public address
		{"8.8.8.8", false},
		{"1.1.1.1", false},
		{"::1", true},
		{"::", true},
		{"fe80::1", true},
		{"fd00::1", true},
		{"ff02::1", true},
		{"::ffff:127.0.0.1", true}, // IPv4-mapped loopback
		{"::ffff:8.8.8.8", false},
		{"64:ff9b::a00:1", true}, // NAT64 of 10.0.0.1
		{"64:ff9b::808:808", false},
		{"2002:c0a8:101::1", true}, // 6to4 of 192.168.1.1
		{"2001:4860:4860::8888", false},
	}
	for _, tt := range tests {
		if got := p.Refuses(netip.MustParseAddr(tt.ip)); got != tt.want {
			t.Errorf("Refuses(%s) = %v, want %v", tt.ip, got, tt.want)
		}
	}
	open := NewEgressPolicy(true)
	if open.Refuses(netip.MustParseAddr("127.0.0.1")) {
		t.Errorf("AllowPrivate policy Refuses(127.0.0.1) = true, want false")
	}
}

func TestEgressDialRefusesNamesThatResolvePrivate(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	for _, addr := range []string{ln.Addr().String(), "localhost:" + port} {
		_, err := NewEgressPolicy(false).DialContext(context.Background(), "tcp", addr)
		if !errors.Is(err, ErrEgressRefused) {
			t.Errorf("DialContext(%s) without the flag: err = %v, want ErrEgressRefused", addr, err)
		}
		c, err := NewEgressPolicy(true).DialContext(context.Background(), "tcp", addr)
		if err != nil {
			t.Errorf("DialContext(%s) with the flag: %v", addr, err)
		} else {
			c.Close()
		}
	}
	if _, err := NewEgressPolicy(false).DialContext(context.Background(), "udp", "127.0.0.1:53"); !errors.Is(err, ErrEgressRefused) {
		t.Errorf("UDP dial to 127.0.0.1:53: err = %v, want ErrEgressRefused", err)
	}
}

// TestEgressRefusesInvalidNames: names under .invalid — where Burrow's
// reserved destinations live — are refused before any lookup, even with
// private egress allowed.
func TestEgressRefusesInvalidNames(t *testing.T) {
	p := NewEgressPolicy(true)
	for _, addr := range []string{"telemetry.burrow.invalid:0", "status.burrow.invalid:0", "x.INVALID.:443", "invalid:80"} {
		c, err := p.DialContext(context.Background(), "tcp", addr)
		if err == nil {
			c.Close()
		}
		if !errors.Is(err, ErrEgressRefused) {
			t.Errorf("DialContext(%s) = %v, want ErrEgressRefused", addr, err)
		}
	}
	if isInvalidName("invalid.example.com") {
		t.Error("isInvalidName(invalid.example.com) = true, want false")
	}
}
