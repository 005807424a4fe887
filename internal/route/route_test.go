package route

import (
	"net/netip"
	"strings"
	"testing"
	"time"
)

const sample = `
# exceptions first
domain   blocked.example   block
domain-suffix *.ru direct   # Russian names
domain-suffix рф   direct
keyword  bank      direct
cidr     10.0.0.0/8  direct
cidr     2001:db8::1 block
port     25        block
port     6881-6889 direct
default  proxy
`

func TestMatch(t *testing.T) {
	rs, err := Parse(strings.NewReader(sample))
	if err != nil {
		t.Fatal(err)
	}
	ip := netip.MustParseAddr
	tests := []struct {
		d    Dest
		want Action
	}{
		{Dest{Host: "blocked.example", Port: 443}, Block},
		{Dest{Host: "a.blocked.example", Port: 443}, Proxy},
		{Dest{Host: "ru", Port: 443}, Direct},
		{Dest{Host: "gosuslugi.ru", Port: 443}, Direct},
		{Dest{Host: "WWW.GOSUSLUGI.RU.", Port: 443}, Direct},
		{Dest{Host: "notru", Port: 443}, Proxy},
		{Dest{Host: "xn--p1ai", Port: 443}, Direct},
		{Dest{Host: "xn--80ak6aa92e.xn--p1ai", Port: 443}, Direct},
		{Dest{Host: "президент.рф", Port: 443}, Direct},
		{Dest{Host: "mybank.example", Port: 443}, Direct},
		{Dest{IP: ip("10.1.2.3"), Port: 443}, Direct},
		{Dest{IP: ip("::ffff:10.1.2.3"), Port: 443}, Direct},
		{Dest{IP: ip("11.1.2.3"), Port: 443}, Proxy},
		{Dest{IP: ip("2001:db8::1"), Port: 443}, Block},
		{Dest{IP: ip("2001:db8::2"), Port: 443}, Proxy},
		{Dest{Host: "mail.example", Port: 25}, Block},
		{Dest{IP: ip("1.1.1.1"), Port: 6885}, Direct},
		{Dest{IP: ip("1.1.1.1"), Port: 6890}, Proxy},
		{Dest{Host: "shop.ru", IP: ip("1.1.1.1"), Port: 25}, Direct},
		{Dest{}, Proxy},
	}
	for _, tt := range tests {
		if got := rs.Match(tt.d); got != tt.want {
			t.Errorf("Match(%+v) = %v, want %v", tt.d, got, tt.want)
		}
	}
	if !rs.HasDomainRules() {
		t.Error("HasDomainRules() = false, want true")
	}
	var nilRules *Rules
	if got := nilRules.Match(Dest{Host: "x.ru"}); got != Proxy {
		t.Errorf("nil.Match = %v, want proxy", got)
	}
}

func TestParseErrors(t *testing.T) {
	tests := []struct{ in, want string }{
		{"domian example.com direct", `line 1: unknown rule kind "domian"`},
		{"\ndomain example.com", "line 2: want"},
		{"domain example.com tunnel", `unknown action "tunnel"`},
		{"cidr 10.0.0/8 direct", "bad cidr"},
		{"port 0 direct", "bad port"},
		{"port 9-3 direct", "bad port"},
		{"port 70000 direct", "bad port"},
		{"default", "want \"default ACTION\""},
		{"preset nope", `unknown preset "nope"`},
		{"domain " + strings.Repeat("a", 300) + " direct", "bad domain"},
		{strings.Repeat("x", maxLineBytes+10), "longer than"},
	}
	for _, tt := range tests {
		_, err := Parse(strings.NewReader(tt.in))
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("Parse(%.40q) error = %v, want containing %q", tt.in, err, tt.want)
		}
	}
}

func TestPresets(t *testing.T) {
	names := Presets()
	if strings.Join(names, ",") != "ru-direct,ru-whitelist" {
		t.Fatalf("Presets() = %v, want [ru-direct ru-whitelist]", names)
	}
	ru, err := Preset("ru-direct")
	if err != nil {
		t.Fatal(err)
	}
	wl, err := Preset("ru-whitelist")
	if err != nil {
		t.Fatal(err)
	}
	ip := netip.MustParseAddr
	tests := []struct {
		rs   *Rules
		name string
		d    Dest
		want Action
	}{
		{ru, "ru", Dest{Host: "www.gosuslugi.ru", Port: 443}, Direct},
		{ru, "ru", Dest{Host: "xn--90adear.xn--p1ai", Port: 443}, Direct},
		{ru, "ru", Dest{Host: "old.site.su", Port: 80}, Direct},
		{ru, "ru", Dest{Host: "vk.com", Port: 443}, Direct},
		{ru, "ru", Dest{IP: ip("77.88.8.8"), Port: 53}, Direct},
		{ru, "ru", Dest{IP: ip("2a02:6b8::feed:0ff"), Port: 443}, Direct},
		{ru, "ru", Dest{Host: "www.youtube.com", Port: 443}, Proxy},
		{ru, "ru", Dest{IP: ip("8.8.8.8"), Port: 443}, Proxy},
		{wl, "wl", Dest{Host: "www.gosuslugi.ru", Port: 443}, Direct},
		{wl, "wl", Dest{Host: "random.ru", Port: 443}, Proxy},
		{wl, "wl", Dest{Host: "www.youtube.com", Port: 443}, Proxy},
	}
	for _, tt := range tests {
		if got := tt.rs.Match(tt.d); got != tt.want {
			t.Errorf("%s.Match(%+v) = %v, want %v", tt.name, tt.d, got, tt.want)
		}
	}
	// A file can include a preset and put exceptions before it.
	rs, err := Parse(strings.NewReader("domain-suffix blocked.ru block\npreset ru-direct\ndefault direct\n"))
	if err != nil {
		t.Fatal(err)
	}
	if got := rs.Match(Dest{Host: "x.blocked.ru"}); got != Block {
		t.Errorf("include: Match(x.blocked.ru) = %v, want block", got)
	}
	if got := rs.Match(Dest{Host: "a.ru"}); got != Direct {
		t.Errorf("include: Match(a.ru) = %v, want direct", got)
	}
	if rs.Default != Direct {
		t.Errorf("include: Default = %v, want direct (the file's, not the preset's)", rs.Default)
	}
}

func TestNameMap(t *testing.T) {
	m := NewNameMap()
	m.Max = 2
	now := time.Unix(1000, 0)
	a, b, c := netip.MustParseAddr("10.0.0.1"), netip.MustParseAddr("10.0.0.2"), netip.MustParseAddr("fd00::3")
	m.Record("Site.Example.", a, time.Second, now)
	m.Record("two.example", b, time.Hour, now)
	if got, ok := m.Lookup(netip.MustParseAddr("::ffff:10.0.0.1"), now); !ok || got != "site.example" {
		t.Errorf("Lookup(a) = %q, %v, want site.example, true", got, ok)
	}
	// MinTTL keeps a one-second answer for 10 minutes.
	if _, ok := m.Lookup(a, now.Add(5*time.Minute)); !ok {
		t.Error("Lookup(a) after 5m = miss, want hit (MinTTL)")
	}
	if _, ok := m.Lookup(a, now.Add(11*time.Minute)); ok {
		t.Error("Lookup(a) after 11m = hit, want miss")
	}
	// Full: the entry closest to expiry (a) makes room.
	m.Record("three.example", c, time.Hour, now)
	if m.Len() != 2 {
		t.Errorf("Len() = %d, want 2", m.Len())
	}
	if _, ok := m.Lookup(a, now); ok {
		t.Error("Lookup(a) after eviction = hit, want miss")
	}
	if got, _ := m.Lookup(c, now); got != "three.example" {
		t.Errorf("Lookup(c) = %q, want three.example", got)
	}
}

func FuzzParse(f *testing.F) {
	f.Add(sample)
	for _, p := range Presets() {
		b, _ := presetBytes(p)
		f.Add(string(b))
	}
	f.Add("preset ru-direct\nport 1-65535 block\n")
	f.Fuzz(func(t *testing.T, s string) {
		rs, err := Parse(strings.NewReader(s))
		if err != nil {
			return
		}
		// Whatever parsed must match without panicking.
		rs.Match(Dest{Host: "a.b.example", IP: netip.MustParseAddr("10.0.0.1"), Port: 443})
		rs.Match(Dest{IP: netip.MustParseAddr("2001:db8::1")})
		for _, r := range rs.List {
			if r.Action > Block || r.Kind < Domain || r.Kind > Port {
				t.Fatalf("Parse produced rule %+v", r)
			}
		}
	})
}

func TestMatchName(t *testing.T) {
	rs, err := Parse(strings.NewReader("port 53 block\ncidr 0.0.0.0/0 block\ndomain-suffix ads.example block\nkeyword ru direct\ndefault block\n"))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		want Action
		ok   bool
	}{
		{"x.ads.example.", Block, true},
		{"shop.ru", Direct, true},
		{"site.example", Proxy, false},
	}
	for _, tt := range tests {
		if a, ok := rs.MatchName(tt.name); a != tt.want || ok != tt.ok {
			t.Errorf("MatchName(%q) = %v, %v, want %v, %v", tt.name, a, ok, tt.want, tt.ok)
		}
	}
}
