package links

import (
	"bytes"
	"image"
	"image/png"
	"strings"
	"testing"

	qrcode "github.com/skip2/go-qrcode"
)

func decodePNG(data []byte) (image.Image, error) {
	return png.Decode(bytes.NewReader(data))
}

func bitmap(t *testing.T, s string) [][]bool {
	t.Helper()
	q, err := qrcode.New(s, qrcode.Medium)
	if err != nil {
		t.Fatal(err)
	}
	return q.Bitmap()
}

func TestQRPNGDecodes(t *testing.T) {
	link := "vless://" + testUUID + "@example.com:443?encryption=none&security=reality&sni=www.microsoft.com&fp=chrome&pbk=" + testPBK
	for _, size := range []int{256, 512, 1000} {
		data, err := QRPNG(link, size)
		if err != nil {
			t.Fatalf("QRPNG(size %d) = %v", size, err)
		}
		img, err := decodePNG(data)
		if err != nil {
			t.Fatalf("QRPNG(size %d) is not a PNG: %v", size, err)
		}
		if b := img.Bounds(); b.Dx() != size || b.Dy() != size {
			t.Errorf("QRPNG(size %d) bounds = %v, want %dx%d", size, b, size, size)
		}
		// Every module is scale×scale pixels, centred; compare each module's
		// pixels with the bitmap.
		bm := bitmap(t, link)
		scale, off := size/len(bm), size%len(bm)/2
		for y := 0; y < size; y++ {
			for x := 0; x < size; x++ {
				mx, my := (x-off)/scale, (y-off)/scale
				wantDark := x >= off && y >= off && mx < len(bm) && my < len(bm) && bm[my][mx]
				r, _, _, _ := img.At(x, y).RGBA()
				if dark := r == 0; dark != wantDark {
					t.Fatalf("QRPNG(size %d) pixel (%d, %d) dark = %v, want %v", size, x, y, dark, wantDark)
				}
			}
		}
		// Centre of the top-left finder pattern (module 7, 7 with the quiet zone) is dark.
		if r, _, _, _ := img.At(off+7*scale+scale/2, off+7*scale+scale/2).RGBA(); r != 0 {
			t.Errorf("QRPNG(size %d): finder centre not dark", size)
		}
	}
	for _, size := range []int{0, -5, 20, MaxQRPNGSize + 1} {
		if _, err := QRPNG(link, size); err == nil {
			t.Errorf("QRPNG(size %d) = nil error, want error", size)
		}
	}
	if _, err := QRPNG(strings.Repeat("x", 5000), 512); err == nil {
		t.Errorf("QRPNG(5000 bytes) = nil error, want error")
	}
}

func TestQRTerminal(t *testing.T) {
	link := "vless://" + testUUID + "@example.com:443?security=reality&sni=a.com&pbk=" + testPBK
	out := QRTerminal(link)
	want := bitmap(t, link)
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	if len(lines) != (len(want)+1)/2 {
		t.Fatalf("QRTerminal: %d lines, want %d", len(lines), (len(want)+1)/2)
	}
	// Decode the half blocks back into modules and compare.
	for i, line := range lines {
		if !strings.HasPrefix(line, ansiBlackOnWhite) || !strings.HasSuffix(line, ansiReset) {
			t.Fatalf("line %d does not set and reset colours: %q", i, line)
		}
		cells := []rune(strings.TrimSuffix(strings.TrimPrefix(line, ansiBlackOnWhite), ansiReset))
		if len(cells) != len(want[0]) {
			t.Fatalf("line %d: %d cells, want %d", i, len(cells), len(want[0]))
		}
		for x, c := range cells {
			top, bottom := c == '█' || c == '▀', c == '█' || c == '▄'
			if !strings.ContainsRune(" ▀▄█", c) {
				t.Fatalf("line %d: unexpected %q", i, c)
			}
			if top != want[2*i][x] || 2*i+1 < len(want) && bottom != want[2*i+1][x] {
				t.Fatalf("module (%d, %d..%d) drawn as %q, want %v %v", x, 2*i, 2*i+1, c, want[2*i][x], want[min(2*i+1, len(want)-1)][x])
			}
		}
	}
	// Quiet zone: the first two lines (4 module rows) are blank.
	for _, line := range lines[:2] {
		if strings.Trim(strings.TrimSuffix(strings.TrimPrefix(line, ansiBlackOnWhite), ansiReset), " ") != "" {
			t.Errorf("quiet zone line not blank: %q", line)
		}
	}
	if got := QRTerminal(strings.Repeat("x", 5000)); got != "" {
		t.Errorf("QRTerminal(5000 bytes) = %d bytes, want empty", len(got))
	}
}
