package censorlab

import (
	"slices"
	"testing"
)

// record returns a TLS record header and n bytes of body.
func record(typ byte, n int) []byte {
	return append([]byte{typ, 3, 3, byte(n >> 8), byte(n)}, make([]byte, n)...)
}

type step struct {
	dir  Dir
	recs []int // application-data record lengths; 0 = the outer ClientHello / ServerHello
}

func TestTLSInTLS(t *testing.T) {
	outer := []step{{Up, []int{0}}, {Down, []int{0, 2800}}, {Up, []int{53}}}
	tests := []struct {
		name  string
		steps []step
		want  Action
	}{
		{"outer handshake alone", outer, Pass},
		{"inner handshake (Go TLS proxy)", append(outer, step{Up, []int{1560}}, step{Down, []int{240, 1100}}, step{Up, []int{86}}), Reset},
		{"inner handshake after 20 exchanges", append(append(outer, slices.Repeat([]step{{Up, []int{124}}, {Down, []int{1022}}}, 20)...),
			step{Up, []int{60, 1400}}, step{Down, []int{2000}}, step{Up, []int{95}}), Reset},
		{"HTTP/2 page (a benign control's flag before calibration)", append(outer, step{Up, []int{120, 337}}, step{Down, []int{16625}}, step{Up, []int{26}}), Pass},
		{"HTTP/2 page, a preload request mid-document (a benign control's flag)", append(outer, step{Up, []int{87, 337}}, step{Down, []int{16401, 8543}}, step{Up, []int{53}}), Pass},
		{"HTTP/2 page over 32 KiB", append(outer, step{Up, []int{90, 556}}, step{Down, []int{16401, 16401, 16401, 16401, 12808}}, step{Up, []int{60}}), Pass},
		{"CCS alone is not Finished-sized", append(outer, step{Up, []int{1560}}, step{Down, []int{240, 1100}}, step{Up, []int{23, 75}}), Pass},
		{"inner handshake after a small preamble", append(outer, step{Up, []int{40}}, step{Down, []int{30}}, step{Up, []int{560}}, step{Down, []int{1400}}, step{Up, []int{86}}), Reset},
		{"Vision pads the inner Finished", append(outer, step{Up, []int{1700}}, step{Down, []int{1900}}, step{Up, []int{1180}}), Pass},
		{"Vision padded, then a request-sized flight, a handshake-sized answer and a small record", append(outer,
			step{Up, []int{1700}}, step{Down, []int{1900}}, step{Up, []int{1180}}, step{Down, []int{16401}}, step{Up, []int{60}}), Reset},
		{"plain HTTPS: small request, big answer", append(outer, step{Up, []int{120}}, step{Down, []int{16401}}, step{Up, []int{90}}), Pass},
		{"upload first", append(outer, step{Up, []int{16401, 16401}}, step{Down, []int{30}}, step{Up, []int{60}}), Pass},
	}
	for _, tt := range tests {
		for _, seg := range []int{0, 1, 1000} {
			m := &TLSInTLS{}
			f := tcpFlow(1, "127.0.2.1:443")
			var got Verdict
			for _, s := range tt.steps {
				var b []byte
				for _, n := range s.recs {
					if n == 0 {
						b = append(b, record(0x16, 200)...)
					} else {
						b = append(b, record(0x17, n)...)
					}
				}
				if v, _ := feed(f, m, s.dir, b, seg); v.Action != Pass && got.Action == Pass {
					got = v
				}
			}
			if got.Action != tt.want {
				t.Errorf("TLSInTLS(%s, %d-byte segments) = %v (%s), want %v", tt.name, seg, got.Action, got.Reason, tt.want)
			}
		}
	}
}

func TestTLSInTLSIgnoresNonTLS(t *testing.T) {
	m := &TLSInTLS{}
	f := tcpFlow(1, "127.0.2.1:443")
	feed(f, m, Up, []byte("\x05\x01\x00"), 0)
	if v, _ := feed(f, m, Up, append(record(0x17, 53), record(0x17, 1500)...), 0); v.Action != Pass {
		t.Fatalf("records after a non-TLS start: %v, want pass", v)
	}
}
