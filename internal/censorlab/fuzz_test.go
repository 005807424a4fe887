package censorlab

import (
	"net/netip"
	"testing"
)

// FuzzMiddleboxes feeds arbitrary bytes, cut into arbitrary segments and
// alternating directions, through every stream middlebox: none may panic,
// and a verdict is always a known action.
func FuzzMiddleboxes(f *testing.F) {
	f.Add(chromeHello(f), uint8(7), uint8(3))
	f.Add(goHello(f, "cover.test"), uint8(100), uint8(1))
	f.Add(append(record(0x16, 300), record(0x17, 53)...), uint8(0), uint8(0))
	f.Add([]byte("CONNECT a:1 HTTP/1.1\r\n\r\n"), uint8(5), uint8(2))
	f.Fuzz(func(t *testing.T, p []byte, seg, flip uint8) {
		fuzzBoxes(t, p, seg, flip)
	})
}

func fuzzBoxes(t *testing.T, p []byte, seg, flip uint8) {
	{
		if len(p) > 4096 { // boxes re-read the stream per piece: keep one-byte pieces cheap
			p = p[:4096]
		}
		boxes := []Middlebox{
			&Signatures{}, &FullyEncrypted{},
			&ClientHelloBox{BlockSNI: []string{".example"}, AllowJA4: BrowserJA4},
			&ClientHelloBox{Whitelist: []WhitelistEntry{{SNI: "cover.test", Networks: []netip.Prefix{CoverNet}}}},
			&TLSInTLS{}, &ByteBudget{Networks: []netip.Prefix{ServerNet}, Limit: 100},
		}
		for _, network := range []string{"tcp", "udp"} {
			f := tcpFlow(1, "127.0.2.1:443")
			f.Network = network
			n := int(seg) + 1
			dir := Up
			for i, off := 0, 0; off < len(p); i, off = i+1, off+n {
				piece := p[off:min(off+n, len(p))]
				if flip > 0 && i%(int(flip)+1) == int(flip) {
					dir = 1 - dir
				}
				f.add(dir, piece)
				for _, b := range boxes {
					if v := b.Data(f, dir, piece); v.Action > Reset || v.Keep < 0 || v.Keep > len(piece) {
						t.Fatalf("%s: verdict %+v for a %d-byte piece", b.Name(), v, len(piece))
					}
				}
			}
			for _, b := range boxes {
				b.Close(f)
			}
		}
	}
}
