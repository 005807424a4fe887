package mux

import (
	"bytes"
	"net/netip"
	"testing"
)

// BenchmarkFrame encodes mux.cool data frames (a TCP stream's and an XUDP
// datagram's with its source address) and decodes them again.
func BenchmarkFrame(b *testing.B) {
	cases := []struct {
		name string
		src  netip.AddrPort
		size int
	}{
		{"tcp 8KiB", netip.AddrPort{}, 8 << 10},
		{"udp 1200B", netip.MustParseAddrPort("192.0.2.1:53"), 1200},
	}
	for _, tc := range cases {
		b.Run(tc.name, func(b *testing.B) {
			data := make([]byte, tc.size)
			var buf []byte
			var r bytes.Reader
			fr := &frameReader{r: &r}
			b.SetBytes(int64(tc.size))
			b.ReportAllocs()
			for b.Loop() {
				buf = appendFrame(buf[:0], 7, statusKeep, optData, tc.src, data)
				r.Reset(buf)
				f, err := fr.read()
				if err != nil || len(f.data) != tc.size {
					b.Fatalf("read = %v, %v", f, err)
				}
			}
		})
	}
}
