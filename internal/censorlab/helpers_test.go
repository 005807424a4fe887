package censorlab

import (
	"crypto/tls"
	"io"
	"net"
	"net/netip"
	"os"
	"testing"
)

// tcpFlow returns a flow towards server for feeding middleboxes by hand.
func tcpFlow(id uint64, server string) *Flow {
	return &Flow{ID: id, Network: "tcp", Client: netip.MustParseAddrPort("127.0.0.1:40000"), Server: netip.MustParseAddrPort(server)}
}

func udpFlow(id uint64, server string) *Flow {
	f := tcpFlow(id, server)
	f.Network = "udp"
	return f
}

// feed shows p to m as the censor would, in pieces of size n (0 = whole),
// and returns the first non-pass verdict and the offset after the piece
// that caused it (-1 if none).
func feed(f *Flow, m Middlebox, dir Dir, p []byte, n int) (Verdict, int) {
	if n <= 0 {
		n = len(p)
	}
	for off := 0; off < len(p); off += n {
		piece := p[off:min(off+n, len(p))]
		f.add(dir, piece)
		if v := m.Data(f, dir, piece); v.Action != Pass {
			return v, off + len(piece)
		}
	}
	return Verdict{}, -1
}

// goHello returns the TLS records of Go's default ClientHello for sni.
func goHello(t testing.TB, sni string) []byte {
	t.Helper()
	a, b := net.Pipe()
	go func() {
		tls.Client(a, &tls.Config{ServerName: sni}).Handshake()
		a.Close()
	}()
	hdr := make([]byte, 5)
	if _, err := io.ReadFull(b, hdr); err != nil {
		t.Fatal(err)
	}
	body := make([]byte, int(hdr[3])<<8|int(hdr[4]))
	if _, err := io.ReadFull(b, body); err != nil {
		t.Fatal(err)
	}
	b.Close()
	return append(hdr, body...)
}

// chromeHello returns the committed Chromium 156 ClientHello as one TLS record.
func chromeHello(t testing.TB) []byte {
	t.Helper()
	msg, err := os.ReadFile("../camo/testdata/chromium-156.hello")
	if err != nil {
		t.Fatalf("Chromium capture: %v", err)
	}
	return append([]byte{0x16, 3, 1, byte(len(msg) >> 8), byte(len(msg))}, msg...)
}
