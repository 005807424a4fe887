package route

import (
	"net/netip"
	"testing"
)

// BenchmarkMatch matches destinations against the ru-direct preset (the
// longest shipped rule list), once per new connection in the client.
func BenchmarkMatch(b *testing.B) {
	rs, err := Preset("ru-direct")
	if err != nil {
		b.Fatal(err)
	}
	dests := []struct {
		name string
		d    Dest
	}{
		{"name matched early", Dest{Host: "yandex.ru", Port: 443}},
		{"name unmatched", Dest{Host: "www.example.com", Port: 443}},
		{"address unmatched", Dest{IP: netip.MustParseAddr("203.0.113.7"), Port: 443}},
	}
	for _, tt := range dests {
		b.Run(tt.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				rs.Match(tt.d)
			}
		})
	}
}
