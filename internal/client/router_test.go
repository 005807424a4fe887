package client

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/dns/dnsmessage"

	"github.com/burrow-vpn/burrow/internal/route"
)

// fakeTunnel records what was dialled through it.
type fakeTunnel struct{ dials []string }

func (f *fakeTunnel) DialContext(ctx context.Context, network, address string) (net.Conn, error) {
	f.dials = append(f.dials, network+" "+address)
	a, b := net.Pipe()
	b.Close()
	return a, nil
}

func TestRouter(t *testing.T) {
	rules, err := route.Parse(strings.NewReader("domain-suffix ru direct\ncidr 127.0.0.0/8 direct\ndomain ads.example block\nport 25 block\n"))
	if err != nil {
		t.Fatal(err)
	}
	// The direct path: a local listener stands in for a domestic site.
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
	names := route.NewNameMap()
	names.Record("shop.ru", netip.MustParseAddr("192.0.2.10"), time.Minute, time.Now())
	tests := []struct {
		network, addr string
		want          string // "tunnel", "direct", "block"
	}{
		{"tcp", "example.com:443", "tunnel"},
		{"udp", "example.com:443", "tunnel"},
		{"tcp", ln.Addr().String(), "direct"},
		{"tcp", "ads.example:443", "block"},
		{"tcp", "mail.example:25", "block"},
		{"tcp", "192.0.2.10:443", "tunnel"}, // names only in TUN mode, below
	}
	for _, tt := range tests {
		ft := &fakeTunnel{}
		r := &Router{Rules: rules, Tunnel: ft}
		c, err := r.DialContext(context.Background(), tt.network, tt.addr)
		var got string
		var blocked *ErrBlocked
		switch {
		case errors.As(err, &blocked):
			got = "block"
		case err != nil:
			t.Errorf("DialContext(%s %s) error %v", tt.network, tt.addr, err)
			continue
		case len(ft.dials) == 1:
			got = "tunnel"
		default:
			got = "direct"
		}
		if c != nil {
			c.Close()
		}
		if got != tt.want {
			t.Errorf("DialContext(%s %s) went %s, want %s", tt.network, tt.addr, got, tt.want)
		}
	}

	// TUN mode: an address learned from DNS is matched by its name.
	ft := &fakeTunnel{}
	r := &Router{Rules: rules, Tunnel: ft, Names: names, Direct: &net.Dialer{Timeout: 50 * time.Millisecond}}
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	r.DialAddr(ctx, "tcp", netip.MustParseAddrPort("192.0.2.10:443")) // direct: fails, TEST-NET
	if len(ft.dials) != 0 {
		t.Errorf("DialAddr(192.0.2.10 = shop.ru) went through the tunnel %v, want direct", ft.dials)
	}
}

func TestRecordAnswers(t *testing.T) {
	c := &Client{tun: &tunMode{names: route.NewNameMap()}}
	name := dnsmessage.MustNewName("site.test.")
	m := dnsmessage.Message{
		Header:    dnsmessage.Header{ID: 1, Response: true},
		Questions: []dnsmessage.Question{{Name: name, Type: dnsmessage.TypeA, Class: dnsmessage.ClassINET}},
		Answers: []dnsmessage.Resource{
			{Header: dnsmessage.ResourceHeader{Name: name, Type: dnsmessage.TypeCNAME, Class: dnsmessage.ClassINET, TTL: 60},
				Body: &dnsmessage.CNAMEResource{CNAME: dnsmessage.MustNewName("cdn.example.")}},
			{Header: dnsmessage.ResourceHeader{Name: dnsmessage.MustNewName("cdn.example."), Type: dnsmessage.TypeA, Class: dnsmessage.ClassINET, TTL: 60},
				Body: &dnsmessage.AResource{A: [4]byte{192, 0, 2, 1}}},
			{Header: dnsmessage.ResourceHeader{Name: dnsmessage.MustNewName("cdn.example."), Type: dnsmessage.TypeAAAA, Class: dnsmessage.ClassINET, TTL: 60},
				Body: &dnsmessage.AAAAResource{AAAA: netip.MustParseAddr("2001:db8::1").As16()}},
		},
	}
	b, err := m.Pack()
	if err != nil {
		t.Fatal(err)
	}
	c.recordAnswers(b)
	c.recordAnswers(b[:len(b)/2]) // truncated: ignored, no panic
	for _, a := range []string{"192.0.2.1", "2001:db8::1"} {
		if got, _ := c.tun.names.Lookup(netip.MustParseAddr(a), time.Now()); got != "site.test" {
			t.Errorf("Lookup(%s) = %q, want site.test (the name asked, through the CNAME)", a, got)
		}
	}
	// A blocked name is answered NXDOMAIN without dialling.
	q := dnsmessage.Message{Header: dnsmessage.Header{ID: 9}, Questions: []dnsmessage.Question{
		{Name: dnsmessage.MustNewName("x.ads.example."), Type: dnsmessage.TypeA, Class: dnsmessage.ClassINET}}}
	qb, _ := q.Pack()
	rules, _ := route.Parse(strings.NewReader("domain-suffix ads.example block\n"))
	c.cfg.Rules = rules
	resp, err := c.exchangeDNS(context.Background(), qb)
	if err != nil {
		t.Fatal(err)
	}
	var rm dnsmessage.Message
	if err := rm.Unpack(resp); err != nil || rm.Header.RCode != dnsmessage.RCodeNameError || rm.Header.ID != 9 {
		t.Errorf("exchangeDNS(blocked) = rcode %v id %d (%v), want NXDOMAIN id 9", rm.Header.RCode, rm.Header.ID, err)
	}
}
