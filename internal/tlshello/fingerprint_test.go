package tlshello

import (
	"os"
	"regexp"
	"testing"
)

// helloFrom builds a ClientHello with the given fields; extensions carry no
// data because the fingerprints look only at their types.
func helloFrom(version uint16, ciphers, exts, groups, sigs, versions []uint16, alpn []string, points []byte) *ClientHello {
	h := &ClientHello{
		Version:             version,
		CipherSuites:        ciphers,
		SupportedGroups:     groups,
		SignatureAlgorithms: sigs,
		SupportedVersions:   versions,
		ALPN:                alpn,
		ECPointFormats:      points,
	}
	for _, e := range exts {
		h.Extensions = append(h.Extensions, Extension{Type: e})
		if e == extServerName {
			h.ServerName = "example.com"
		}
	}
	return h
}

var chromeSigs = []uint16{0x0403, 0x0804, 0x0401, 0x0503, 0x0805, 0x0501, 0x0806, 0x0601}

// TestJA4Vectors checks JA4 against the worked examples of the FoxIO JA4
// specification (technical_details/JA4.md) and a published Chrome 143
// capture (browserleaks.com output: ja4 with its ja4_r and ja3 text).
func TestJA4Vectors(t *testing.T) {
	tests := []struct {
		name     string
		hello    *ClientHello
		wantJA4  string
		wantJA4R string
	}{
		{
			name: "foxio spec example",
			hello: helloFrom(0x0303,
				[]uint16{0x1301, 0x1302, 0x1303, 0xc02b, 0xc02f, 0xc02c, 0xc030, 0xcca9, 0xcca8, 0xc013, 0xc014, 0x009c, 0x009d, 0x002f, 0x0035},
				[]uint16{0x001b, 0x0000, 0x0033, 0x0010, 0x4469, 0x0017, 0x002d, 0x000d, 0x0005, 0x0023, 0x0012, 0x002b, 0xff01, 0x000b, 0x000a, 0x0015},
				nil, chromeSigs, []uint16{0x0304, 0x0303}, []string{"h2", "http/1.1"}, nil),
			wantJA4:  "t13d1516h2_8daaf6152771_e5627efa2ab1",
			wantJA4R: "t13d1516h2_002f,0035,009c,009d,1301,1302,1303,c013,c014,c02b,c02c,c02f,c030,cca8,cca9_0005,000a,000b,000d,0012,0015,0017,001b,0023,002b,002d,0033,4469,ff01_0403,0804,0401,0503,0805,0501,0806,0601",
		},
		{
			name: "chrome 143 with grease",
			hello: helloFrom(0x0303,
				[]uint16{0x3a3a, 0x1301, 0x1302, 0x1303, 0xc02b, 0xc02f, 0xc02c, 0xc030, 0xcca9, 0xcca8, 0xc013, 0xc014, 0x009c, 0x009d, 0x002f, 0x0035},
				[]uint16{0x0a0a, 45, 51, 16, 65037, 23, 17613, 0, 11, 10, 43, 65281, 35, 18, 5, 13, 27, 0xfafa},
				[]uint16{0x1a1a, 4588, 29, 23, 24}, chromeSigs, []uint16{0x2a2a, 0x0304, 0x0303}, []string{"h2", "http/1.1"}, []byte{0}),
			wantJA4:  "t13d1516h2_8daaf6152771_d8a2da3f94cd",
			wantJA4R: "t13d1516h2_002f,0035,009c,009d,1301,1302,1303,c013,c014,c02b,c02c,c02f,c030,cca8,cca9_0005,000a,000b,000d,0012,0017,001b,0023,002b,002d,0033,44cd,fe0d,ff01_0403,0804,0401,0503,0805,0501,0806,0601",
		},
		{
			name:     "no sni no alpn no sigalgs tls12",
			hello:    helloFrom(0x0303, []uint16{0xc02f}, []uint16{0x000a}, nil, nil, nil, nil, nil),
			wantJA4:  "t12i0101" + "00_" + ja4Hash("c02f") + "_" + ja4Hash("000a"),
			wantJA4R: "t12i010100_c02f_000a",
		},
		{
			name:     "no extensions",
			hello:    helloFrom(0x0301, []uint16{0x002f}, nil, nil, nil, nil, nil, nil),
			wantJA4:  "t10i010000_" + ja4Hash("002f") + "_000000000000",
			wantJA4R: "t10i010000_002f_",
		},
		{
			name:     "non-alphanumeric alpn uses hex",
			hello:    helloFrom(0x0303, []uint16{0x1301}, []uint16{0x0010, 0x002b}, nil, nil, []uint16{0x0304}, []string{"\xabx\xcd"}, nil),
			wantJA4R: "t13i0102ad_1301_002b",
		},
		{
			name:     "single character alpn",
			hello:    helloFrom(0x0303, []uint16{0x1301}, []uint16{0x0010}, nil, nil, nil, []string{"h"}, nil),
			wantJA4R: "t12i0101hh_1301_",
		},
		{
			name:     "unknown version",
			hello:    helloFrom(0x7f00, nil, nil, nil, nil, nil, nil, nil),
			wantJA4:  "t00i000000_000000000000_000000000000",
			wantJA4R: "t00i000000__",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.wantJA4 != "" {
				if got := tt.hello.JA4(); got != tt.wantJA4 {
					t.Errorf("JA4() = %s, want %s", got, tt.wantJA4)
				}
			}
			if got := tt.hello.JA4R(); got != tt.wantJA4R {
				t.Errorf("JA4R() = %s, want %s", got, tt.wantJA4R)
			}
		})
	}
}

// TestJA3Vectors checks JA3 against a published Chrome 143 capture
// (browserleaks.com: ja3_text and ja3_hash) and an MD5 of the text alone.
func TestJA3Vectors(t *testing.T) {
	h := helloFrom(771,
		[]uint16{0x3a3a, 4865, 4866, 4867, 49195, 49199, 49196, 49200, 52393, 52392, 49171, 49172, 156, 157, 47, 53},
		[]uint16{0x0a0a, 45, 51, 16, 65037, 23, 17613, 0, 11, 10, 43, 65281, 35, 18, 5, 13, 27, 0xfafa},
		[]uint16{0x1a1a, 4588, 29, 23, 24}, chromeSigs, []uint16{0x2a2a, 0x0304, 0x0303}, []string{"h2", "http/1.1"}, []byte{0})
	wantFull := "771,4865-4866-4867-49195-49199-49196-49200-52393-52392-49171-49172-156-157-47-53,45-51-16-65037-23-17613-0-11-10-43-65281-35-18-5-13-27,4588-29-23-24,0"
	wantHash := "98487aa16281980e7d1120d399efb6a4"
	full, hash := h.JA3()
	if full != wantFull {
		t.Errorf("JA3() full = %s, want %s", full, wantFull)
	}
	if hash != wantHash {
		t.Errorf("JA3() hash = %s, want %s", hash, wantHash)
	}

	empty := &ClientHello{Version: 0x0301}
	if full, _ := empty.JA3(); full != "769,,,," {
		t.Errorf("JA3() of empty hello = %q, want %q", full, "769,,,,")
	}
}

func TestIsGREASE(t *testing.T) {
	for i := range 16 {
		v := uint16(i<<12 | 0x0a00 | i<<4 | 0x0a)
		if !isGREASE(v) {
			t.Errorf("isGREASE(%#04x) = false, want true", v)
		}
	}
	for _, v := range []uint16{0x0000, 0x0a0b, 0x1a2a, 0xfe0d, 0x44cd, 0x0aaa, 0xaa0a} {
		if isGREASE(v) {
			t.Errorf("isGREASE(%#04x) = true, want false", v)
		}
	}
}

// TestChromiumCapture parses the Chromium 156 ClientHello committed by the
// camo package and checks the JA4 recorded in the team's research notes.
func TestChromiumCapture(t *testing.T) {
	raw, err := os.ReadFile("../camo/testdata/chromium-156.hello")
	if err != nil {
		t.Skipf("no capture: %v", err)
	}
	h, err := Parse(raw)
	if err != nil {
		t.Fatalf("Parse(capture) error: %v", err)
	}
	const want = "t13d1517h2_8daaf6152771_cb7bf5808d99"
	if got := h.JA4(); got != want {
		t.Errorf("JA4(chromium 156) = %s, want %s (raw %s)", got, want, h.JA4R())
	}
}

var ja4Shape = regexp.MustCompile(`^t(13|12|11|10|s3|s2|s1|00)[di]\d\d\d\d[0-9A-Za-z]{2}_[0-9a-f]{12}_[0-9a-f]{12}$`)

// FuzzFingerprint feeds arbitrary bytes through Parse and both fingerprints:
// they must not panic, and JA4 must keep its shape.
func FuzzFingerprint(f *testing.F) {
	if raw, err := os.ReadFile("../camo/testdata/chromium-156.hello"); err == nil {
		f.Add(raw)
	}
	f.Add([]byte{1, 0, 0, 38, 3, 3, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0})
	f.Fuzz(func(t *testing.T, msg []byte) {
		h, err := Parse(msg)
		if err != nil {
			return
		}
		h.JA3()
		if got := h.JA4(); !ja4Shape.MatchString(got) {
			t.Errorf("JA4() = %q, want the t13d1517h2_<12 hex>_<12 hex> shape", got)
		}
		h.JA4R()
	})
}
