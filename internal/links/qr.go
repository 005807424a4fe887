package links

import (
	"bytes"
	"fmt"
	"image"
	"image/color"
	"image/png"
	"strings"

	qrcode "github.com/skip2/go-qrcode"
)

// MaxQRPNGSize is the largest image QRPNG draws, in pixels per side.
const MaxQRPNGSize = 4096

// ANSI colours QRTerminal sets: black foreground on a bright white
// background, so the code reads the same in dark and light terminal themes.
const (
	ansiBlackOnWhite = "\x1b[30;107m"
	ansiReset        = "\x1b[0m"
)

// QRTerminal draws s as a QR code (error correction level M) for a text
// terminal: two modules per character cell using the half-block characters
// ▀ ▄ █ and space, with the standard 4-module quiet zone. Each line sets its
// colours explicitly (black on white) and resets them at its end, so the code
// is dark-on-light, as scanners expect, whatever the terminal's theme.
// It returns "" if s is too long for a QR code (about 2,300 bytes at level M).
func QRTerminal(s string) string {
	q, err := qrcode.New(s, qrcode.Medium)
	if err != nil {
		return ""
	}
	bm := q.Bitmap() // includes the quiet zone; true = dark module
	var b strings.Builder
	for y := 0; y < len(bm); y += 2 {
		b.WriteString(ansiBlackOnWhite)
		for x := range bm[y] {
			top := bm[y][x]
			bottom := y+1 < len(bm) && bm[y+1][x]
			switch {
			case top && bottom:
				b.WriteString("█")
			case top:
				b.WriteString("▀")
			case bottom:
				b.WriteString("▄")
			default:
				b.WriteString(" ")
			}
		}
		b.WriteString(ansiReset + "\n")
	}
	return b.String()
}

// QRPNG draws s as a size×size pixel PNG QR code (level M, black on white).
// Every module is the same whole number of pixels; what is left over widens
// the white quiet zone (at least 4 modules) evenly on all sides. size must give
// each module at least one pixel and be at most MaxQRPNGSize.
func QRPNG(s string, size int) ([]byte, error) {
	q, err := qrcode.New(s, qrcode.Medium)
	if err != nil {
		return nil, fmt.Errorf("links: qr: %w", err)
	}
	bm := q.Bitmap() // includes the quiet zone
	n := len(bm)
	if size < n || size > MaxQRPNGSize {
		return nil, fmt.Errorf("links: qr: size %d pixels: want %d..%d for this code of %d modules", size, n, MaxQRPNGSize, n)
	}
	scale, off := size/n, size%n/2
	img := image.NewPaletted(image.Rect(0, 0, size, size), color.Palette{color.White, color.Black})
	for y, row := range bm {
		for x, dark := range row {
			if !dark {
				continue
			}
			for py := off + y*scale; py < off+(y+1)*scale; py++ {
				line := img.Pix[py*img.Stride:]
				for px := off + x*scale; px < off+(x+1)*scale; px++ {
					line[px] = 1
				}
			}
		}
	}
	var buf bytes.Buffer
	if err := (&png.Encoder{CompressionLevel: png.BestCompression}).Encode(&buf, img); err != nil {
		return nil, fmt.Errorf("links: qr: %w", err)
	}
	return buf.Bytes(), nil
}
