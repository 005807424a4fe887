package meter

import (
	"io"
	"testing"
)

// BenchmarkCopy moves data between loopback TCP conns the ways the server
// relay does: Copy (dst.ReadFrom over a LimitedReader: splice), and
// CopyWriterTo from a WriterTo source that splices (a vless.Conn gone
// direct) or copies through a 32 KiB buffer (one still padding).
func BenchmarkCopy(b *testing.B) {
	const chunk = 1 << 20
	kinds := []string{"Copy", "CopyWriterTo/socket", "CopyWriterTo/buffered"}
	for _, kind := range kinds {
		b.Run(kind, func(b *testing.B) {
			a1, a2 := tcpPair(b)
			b1, b2 := tcpPair(b)
			total := int64(b.N) * chunk
			go func() {
				buf := make([]byte, chunk)
				for range b.N {
					a1.Write(buf)
				}
				a1.CloseWrite()
			}()
			done := make(chan int64, 1)
			go func() { n, _ := io.Copy(io.Discard, b2); done <- n }()
			c := Unlimited{}
			b.SetBytes(chunk)
			b.ReportAllocs()
			b.ResetTimer()
			var err error
			switch kind {
			case "Copy":
				_, err = Copy(b1, a2, c)
			case "CopyWriterTo/socket":
				_, err = CopyWriterTo(b1, socketSource{a2}, c)
			default:
				_, err = CopyWriterTo(b1, bufferedSource{a2}, c)
			}
			b1.CloseWrite()
			if n := <-done; err != nil || n != total {
				b.Fatalf("copied %d of %d bytes: %v", n, total, err)
			}
		})
	}
}
