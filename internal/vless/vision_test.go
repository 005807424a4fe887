package vless

import (
	"bytes"
	"math/rand/v2"
	"testing"
)

// parseBlocks splits a padded stream into its blocks, checking the UUID prefix, and returns
// them with whatever follows the final block.
type block struct {
	cmd     byte
	content []byte
	padding int
}

func parseBlocks(t *testing.T, s []byte) (blocks []block, rest []byte) {
	t.Helper()
	if !bytes.HasPrefix(s, testUUID[:]) {
		t.Fatalf("stream %x does not start with the UUID", s[:min(len(s), 32)])
	}
	s = s[16:]
	for {
		if len(s) < 5 {
			t.Fatalf("truncated block header %x", s)
		}
		c, p := int(s[1])<<8|int(s[2]), int(s[3])<<8|int(s[4])
		if len(s) < 5+c+p {
			t.Fatalf("block %x: content %d padding %d, only %d bytes", s[:5], c, p, len(s)-5)
		}
		blocks = append(blocks, block{s[0], s[5 : 5+c], p})
		if !bytes.Equal(s[5+c:5+c+p], make([]byte, p)) {
			t.Errorf("padding of block %d is not zeros", len(blocks)-1)
		}
		s = s[5+c+p:]
		if s := blocks[len(blocks)-1].cmd; s != cmdContinue {
			break
		}
		if len(s) == 0 {
			return blocks, nil
		}
	}
	return blocks, s
}

func TestEmptyBlockHidesHeader(t *testing.T) {
	for range 200 {
		w := padder{uuid: testUUID[:], padding: true}
		out, direct := w.encode(nil, nil, newTrafficState())
		blocks, rest := parseBlocks(t, out)
		if len(blocks) != 1 || len(rest) != 0 || direct {
			t.Fatalf("encode(nil) = %d blocks, %d bytes after, direct %v; want 1, 0, false", len(blocks), len(rest), direct)
		}
		b := blocks[0]
		if b.cmd != cmdContinue || len(b.content) != 0 || b.padding < 900 || b.padding >= 1400 {
			t.Fatalf("encode(nil) block = cmd %d content %d padding %d, want 0, 0, [900,1400)", b.cmd, len(b.content), b.padding)
		}
		if w.uuid != nil || !w.padding {
			t.Fatalf("after encode(nil): uuid %x padding %v, want nil, true", w.uuid, w.padding)
		}
	}
}

// tlsRecord returns a record of type typ with n bytes of body.
func tlsRecord(typ byte, n int) []byte {
	r := []byte{typ, 3, 3, byte(n >> 8), byte(n)}
	return append(r, bytes.Repeat([]byte{0xaa}, n)...)
}

// serverHello builds a ServerHello record; tls13 adds supported_versions = TLS 1.3.
func serverHello(cipher uint16, tls13 bool) []byte {
	body := []byte{3, 3}
	body = append(body, make([]byte, 32)...) // random
	body = append(body, 32)
	body = append(body, bytes.Repeat([]byte{7}, 32)...) // session id
	body = append(body, byte(cipher>>8), byte(cipher), 0)
	var ext []byte
	ext = append(ext, 0x00, 0x33, 0x00, 0x24) // key_share
	ext = append(ext, 0x00, 0x1d, 0x00, 0x20)
	ext = append(ext, make([]byte, 32)...)
	if tls13 {
		ext = append(ext, 0x00, 0x2b, 0x00, 0x02, 0x03, 0x04)
	}
	body = append(body, byte(len(ext)>>8), byte(len(ext)))
	body = append(body, ext...)
	hs := append([]byte{2, 0, byte(len(body) >> 8), byte(len(body))}, body...)
	return append([]byte{0x16, 3, 3, byte(len(hs) >> 8), byte(len(hs))}, hs...)
}

func clientHello() []byte {
	hs := append([]byte{1, 0, 0, 100}, make([]byte, 100)...)
	return append([]byte{0x16, 3, 1, 0, byte(len(hs))}, hs...)
}

func TestFilter(t *testing.T) {
	tests := []struct {
		name                 string
		pieces               [][]byte
		isTLS, tls12, direct bool
		toFilter             int
	}{
		{"tls13 aes128gcm", [][]byte{clientHello(), serverHello(0x1301, true)}, true, true, true, 0},
		{"tls13 chacha", [][]byte{serverHello(0x1303, true)}, true, true, true, 0},
		{"tls13 ccm8 stays padded", [][]byte{serverHello(0x1305, true)}, true, true, false, 0},
		{"tls12", [][]byte{serverHello(0xc02f, false)}, true, true, false, 0},
		{"client hello only", [][]byte{clientHello()}, true, false, false, 7},
		{"not tls", [][]byte{[]byte("GET / HTTP/1.1\r\n\r\n"), []byte("x")}, false, false, false, 6},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newTrafficState()
			s.filterLocked(tt.pieces...)
			if s.isTLS != tt.isTLS || s.isTLS12orAbove != tt.tls12 || s.enableDirect != tt.direct || s.toFilter != tt.toFilter {
				t.Errorf("filter = isTLS %v tls12 %v direct %v toFilter %d, want %v %v %v %d",
					s.isTLS, s.isTLS12orAbove, s.enableDirect, s.toFilter, tt.isTLS, tt.tls12, tt.direct, tt.toFilter)
			}
		})
	}
	// A ServerHello split across pieces is still recognised.
	s := newTrafficState()
	sh := serverHello(0x1302, true)
	s.filterLocked(sh[:90], sh[90:])
	if !s.enableDirect {
		t.Errorf("filter(ServerHello in two pieces): direct = false, want true")
	}
}

func TestIsCompleteRecords(t *testing.T) {
	two := append(tlsRecord(0x17, 100), tlsRecord(0x17, 3)...)
	tests := []struct {
		in   []byte
		want bool
	}{
		{tlsRecord(0x17, 100), true},
		{two, true},
		{two[:len(two)-1], false},
		{tlsRecord(0x16, 100), false},
		{append(tlsRecord(0x17, 10), tlsRecord(0x15, 2)...), false},
		{tlsRecord(0x17, 0), false},
		{nil, false},
	}
	for _, tt := range tests {
		if got := isCompleteRecords(tt.in); got != tt.want {
			t.Errorf("isCompleteRecords(%x...) = %v, want %v", tt.in[:min(8, len(tt.in))], got, tt.want)
		}
	}
}

// TestWriterInnerTLS13 drives the writer as Xray's client side: ClientHello (padded, long),
// the reader sees a TLS 1.3 ServerHello, then Finished flight (padded), then application data
// (cmdDirect, after which the conn must go direct).
func TestWriterInnerTLS13(t *testing.T) {
	s := newTrafficState()
	w := padder{uuid: testUUID[:], padding: true}
	ch := clientHello()
	out, direct := w.encode(nil, ch, s)
	blocks, rest := parseBlocks(t, out)
	if direct || len(blocks) != 1 || blocks[0].cmd != cmdContinue || !bytes.Equal(blocks[0].content, ch) || len(rest) != 0 {
		t.Fatalf("ClientHello: direct %v blocks %+v rest %d", direct, blocks, len(rest))
	}
	if total := len(ch) + blocks[0].padding; total < 900 || total >= 1400 {
		t.Errorf("ClientHello block content+padding = %d, want long padding [900,1400)", total)
	}
	s.filterLocked(serverHello(0x1301, true)) // what the reader saw
	fin := append([]byte{0x14, 3, 3, 0, 1, 1}, tlsRecord(0x17, 53)...)
	out, direct = w.encode(nil, fin, s)
	if direct || out[0] != cmdContinue || !w.padding {
		t.Fatalf("Finished: direct %v cmd %d padding %v, want false 0 true", direct, out[0], w.padding)
	}
	app := append(tlsRecord(0x17, 20000-5), tlsRecord(0x17, 300)...)
	out, direct = w.encode(nil, app, s)
	if !direct || w.padding {
		t.Fatalf("application data: direct %v padding %v, want true false", direct, w.padding)
	}
	// Pieces: 8192, 8192, 3921 → first two split by reshape; last block carries cmdDirect.
	var got []byte
	var cmds []byte
	for b := out; len(b) > 0; {
		c, p := int(b[1])<<8|int(b[2]), int(b[3])<<8|int(b[4])
		cmds = append(cmds, b[0])
		got = append(got, b[5:5+c]...)
		if c+p > maxBlockTotal {
			t.Errorf("block content %d + padding %d > %d", c, p, maxBlockTotal)
		}
		b = b[5+c+p:]
	}
	if !bytes.Equal(got, app) {
		t.Errorf("application data blocks carry %d bytes, want the %d written", len(got), len(app))
	}
	if cmds[len(cmds)-1] != cmdDirect || bytes.Count(cmds, []byte{cmdDirect}) != 1 {
		t.Errorf("block commands %v, want continues then one direct", cmds)
	}
}

// TestWriterNonTLS: traffic that is not TLS ends padding (cmdEnd) after the filter's packets,
// and the rest of that write follows unpadded.
func TestWriterNonTLS(t *testing.T) {
	s := newTrafficState()
	w := padder{uuid: testUUID[:], padding: true}
	var stream, want []byte
	for i := 0; w.padding; i++ {
		if i > 10 {
			t.Fatal("padding never ended")
		}
		p := bytes.Repeat([]byte{byte('a' + i)}, 3000)
		want = append(want, p...)
		out, direct := w.encode(nil, p, s)
		if direct {
			t.Fatal("direct for non-TLS traffic")
		}
		stream = append(stream, out...)
	}
	blocks, rest := parseBlocks(t, stream)
	if blocks[len(blocks)-1].cmd != cmdEnd || len(rest) != 0 {
		t.Errorf("last block cmd %d, %d bytes after, want cmdEnd and 0", blocks[len(blocks)-1].cmd, len(rest))
	}
	var got []byte
	for _, b := range blocks {
		got = append(got, b.content...)
		if b.padding >= 256 {
			t.Errorf("non-TLS block padding %d, want short padding < 256", b.padding)
		}
	}
	if !bytes.Equal(got, want) {
		t.Errorf("blocks carry %d bytes, want %d", len(got), len(want))
	}
}

// TestUnpadSegmentation feeds one padded stream to the unpadder cut every possible way:
// one byte at a time, and random cuts; the output must not depend on the cuts.
func TestUnpadSegmentation(t *testing.T) {
	s := newTrafficState()
	w := padder{uuid: testUUID[:], padding: true}
	var stream, want []byte
	add := func(p []byte) {
		out, _ := w.encode(nil, p, s)
		stream = append(stream, out...)
		want = append(want, p...)
	}
	add(nil)
	add(clientHello())
	s.filterLocked(serverHello(0x1301, true))
	add(bytes.Repeat([]byte{9}, 10000)) // not records: padded, continue
	add(append(tlsRecord(0x17, 5000), tlsRecord(0x17, 40)...))
	if w.padding {
		t.Fatal("padding did not end")
	}
	tail := []byte("direct bytes after the last block")
	stream = append(stream, tail...)
	want = append(want, tail...)

	cuts := map[string]func(int) int{
		"1 byte":  func(int) int { return 1 },
		"2 bytes": func(int) int { return 2 },
		"random":  func(n int) int { return 1 + rand.IntN(min(n, 3000)) },
		"whole":   func(n int) int { return n },
	}
	for name, cut := range cuts {
		t.Run(name, func(t *testing.T) {
			u := unpadder{uuid: testUUID}
			var got []byte
			emit := func(b []byte) { got = append(got, b...) }
			in := stream
			for len(in) > 0 {
				n := cut(len(in))
				rest := u.feed(in[:n], emit)
				in = in[n:]
				if u.state == upDirect {
					got = append(got, rest...)
					got = append(got, in...)
					break
				}
			}
			if u.state != upDirect {
				t.Fatalf("final state %d, want upDirect", u.state)
			}
			if !bytes.Equal(got, want) {
				t.Fatalf("unpadded %d bytes, want %d (equal prefix %d)", len(got), len(want), commonPrefix(got, want))
			}
		})
	}
}

func commonPrefix(a, b []byte) int {
	i := 0
	for i < len(a) && i < len(b) && a[i] == b[i] {
		i++
	}
	return i
}

func TestUnpadNotPadded(t *testing.T) {
	u := unpadder{uuid: testUUID}
	var got []byte
	rest := u.feed(append(testUUID[:5:5], 'x', 'y'), func(b []byte) { got = append(got, b...) })
	if u.state != upPlain || string(rest) != string(append(testUUID[:5:5], 'x', 'y')) || got != nil {
		t.Errorf("feed(unpadded) = state %d rest %x emitted %x, want plain, all bytes, none", u.state, rest, got)
	}
}

func BenchmarkVisionPad(b *testing.B) {
	p := tlsRecord(0x16, 1400)
	var dst []byte
	b.ReportAllocs()
	b.SetBytes(int64(len(p)))
	for b.Loop() {
		s := newTrafficState()
		s.toFilter = 0
		w := padder{padding: true}
		dst, _ = w.encode(dst[:0], p, s)
	}
}

func BenchmarkVisionUnpad(b *testing.B) {
	s := newTrafficState()
	s.toFilter = 0
	var stream []byte
	for range 16 {
		w := padder{padding: true}
		if len(stream) == 0 {
			w.uuid = testUUID[:]
		}
		out, _ := w.encode(nil, tlsRecord(0x16, 1400), s)
		stream = append(stream, out...)
	}
	b.ReportAllocs()
	b.SetBytes(int64(len(stream)))
	for b.Loop() {
		u := unpadder{uuid: testUUID}
		u.feed(stream, func([]byte) {})
	}
}

// FuzzUnpad: hostile padded streams never panic, and the decoded bytes do not depend on how
// the stream is cut.
func FuzzUnpad(f *testing.F) {
	s := newTrafficState()
	w := padder{uuid: testUUID[:], padding: true}
	seed, _ := w.encode(nil, clientHello(), s)
	f.Add(seed, uint8(1))
	f.Add(append(testUUID[:], 0, 0, 3, 0, 1, 'a', 'b', 'c', 0, 2, 0, 0, 0, 'x'), uint8(3))
	f.Add(append(testUUID[:], 2, 0xff, 0xff, 0xff, 0xff), uint8(7))
	f.Fuzz(func(t *testing.T, in []byte, cut uint8) {
		decode := func(step int) ([]byte, int) {
			u := unpadder{uuid: testUUID}
			var out []byte
			emit := func(b []byte) { out = append(out, b...) }
			for p := in; len(p) > 0; {
				n := min(step, len(p))
				rest := u.feed(p[:n], emit)
				p = p[n:]
				if u.state == upPlain || u.state == upDirect {
					out = append(append(out, rest...), p...)
					break
				}
			}
			return out, u.state
		}
		whole, st1 := decode(len(in) + 1)
		parts, st2 := decode(int(cut) + 1)
		if !bytes.Equal(whole, parts) || st1 != st2 {
			t.Fatalf("cut %d: got %x state %d, whole stream gives %x state %d", cut+1, parts, st2, whole, st1)
		}
		if len(whole) > len(in) {
			t.Fatalf("decoded %d bytes from %d", len(whole), len(in))
		}
	})
}

// TestWriterEndBlockSizes: a client pads the block that ends padding above any ClientHello's
// size (so the flight holding it cannot pass for an inner hello), more when it may start in
// the outer conn's second record; a server pads it as Xray does.
func TestWriterEndBlockSizes(t *testing.T) {
	fin := append([]byte{0x14, 3, 3, 0, 1, 1}, tlsRecord(0x17, 53)...)
	req := tlsRecord(0x17, 30)
	tests := []struct {
		name   string
		client bool
		before [][]byte // writes before the first application data
		lo, hi int      // content+padding of the block ending padding
	}{
		{"client, after hello and Finished", true, [][]byte{clientHello(), fin}, endPadMin, endPadMin + endPadRand},
		{"client, second write (no CCS before the Finished)", true, [][]byte{clientHello()}, endPadEarlyMin, endPadEarlyMin + endPadRand},
		{"server, as Xray", false, [][]byte{serverHello(0x1301, true)}, longPadBase, longPadBase + longPadRand},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for range 100 {
				s := newTrafficState()
				w := padder{uuid: testUUID[:], padding: true, endLong: tt.client}
				var stream []byte
				for _, p := range tt.before {
					out, _ := w.encode(nil, p, s)
					stream = append(stream, out...)
				}
				s.filterLocked(serverHello(0x1301, true))
				out, direct := w.encode(nil, req, s)
				stream = append(stream, out...)
				blocks, rest := parseBlocks(t, stream)
				end := blocks[len(blocks)-1]
				if !direct || end.cmd != cmdDirect || len(rest) != 0 || !bytes.Equal(end.content, req) {
					t.Fatalf("last block: direct %v cmd %d content %d, %d bytes after; want true, %d, %d, 0",
						direct, end.cmd, len(end.content), len(rest), cmdDirect, len(req))
				}
				if total := len(end.content) + end.padding; total < tt.lo || total >= tt.hi {
					t.Fatalf("block ending padding: content+padding = %d, want [%d,%d)", total, tt.lo, tt.hi)
				}
			}
		})
	}
	// Content already above the size gets short padding only.
	w := padder{uuid: testUUID[:], padding: true, endLong: true, writes: 2}
	s := newTrafficState()
	s.filterLocked(serverHello(0x1301, true))
	big := tlsRecord(0x17, endPadMin+endPadRand)
	blocks, _ := parseBlocks(t, mustEncode(&w, big, s))
	if p := blocks[0].padding; p >= shortPadRand {
		t.Errorf("padding of a %d-byte block ending padding = %d, want < %d", len(big), p, shortPadRand)
	}
}

func mustEncode(w *padder, p []byte, s *trafficState) []byte {
	out, _ := w.encode(nil, p, s)
	return out
}
