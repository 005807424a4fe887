package tlshello

import (
	"bytes"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"slices"
	"testing"
	"time"

	utls "github.com/refraction-networking/utls"
)

// catchHello starts a loopback listener, lets client speak TLS to it and
// returns every byte ReadRecords consumed plus the parsed hello.
func catchHello(tb testing.TB, client func(net.Conn)) (*ClientHello, []byte) {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	defer ln.Close()
	done := make(chan struct{})
	go func() {
		defer close(done)
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			return
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(5 * time.Second))
		client(c)
	}()
	defer func() { <-done }()
	c, err := ln.Accept()
	if err != nil {
		tb.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	h, raw, err := ReadRecords(c)
	if err != nil {
		tb.Fatalf("ReadRecords = %v, want nil", err)
	}
	return h, raw
}

func goHello(tb testing.TB) (*ClientHello, []byte) {
	return catchHello(tb, func(c net.Conn) {
		tls.Client(c, &tls.Config{ServerName: "go.example", NextProtos: []string{"h2", "http/1.1"}}).Handshake()
	})
}

func chromeHello(tb testing.TB) (*ClientHello, []byte) {
	return catchHello(tb, func(c net.Conn) {
		utls.UClient(c, &utls.Config{ServerName: "chrome.example"}, utls.HelloChrome_Auto).Handshake()
	})
}

func TestReadRecordsRealClients(t *testing.T) {
	tests := []struct {
		name   string
		get    func(testing.TB) (*ClientHello, []byte)
		sni    string
		groups []uint16 // must all be offered as key shares
	}{
		{"crypto/tls", goHello, "go.example", []uint16{0x001d}},
		{"utls chrome", chromeHello, "chrome.example", []uint16{0x001d, 0x11ec}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h, raw := tt.get(t)
			if h.ServerName != tt.sni {
				t.Errorf("ServerName = %q, want %q", h.ServerName, tt.sni)
			}
			if !slices.Contains(h.SupportedVersions, 0x0304) {
				t.Errorf("SupportedVersions = %x, want to contain 0304", h.SupportedVersions)
			}
			for _, g := range tt.groups {
				if !slices.ContainsFunc(h.KeyShares, func(k KeyShare) bool { return k.Group == g }) {
					t.Errorf("KeyShares lacks group %#04x", g)
				}
			}
			if len(h.Random) != 32 || len(h.SessionID) != 32 {
				t.Errorf("len(Random), len(SessionID) = %d, %d, want 32, 32", len(h.Random), len(h.SessionID))
			}
			if got := h.Raw[h.SessionIDOffset : h.SessionIDOffset+len(h.SessionID)]; !bytes.Equal(got, h.SessionID) {
				t.Errorf("Raw[SessionIDOffset:] = %x, want %x", got, h.SessionID)
			}
			if !slices.Equal(h.ALPN, []string{"h2", "http/1.1"}) {
				t.Errorf("ALPN = %q, want [h2 http/1.1]", h.ALPN)
			}
			if len(h.CipherSuites) == 0 || len(h.SignatureAlgorithms) == 0 || len(h.SupportedGroups) == 0 {
				t.Errorf("CipherSuites, SignatureAlgorithms, SupportedGroups = %v, %v, %v, want non-empty",
					h.CipherSuites, h.SignatureAlgorithms, h.SupportedGroups)
			}
			if want := append([]byte{0x16, 3, raw[2], byte(len(h.Raw) >> 8), byte(len(h.Raw))}, h.Raw...); !bytes.Equal(raw, want) {
				t.Errorf("raw = %d bytes, want the single record of %d bytes", len(raw), len(want))
			}
		})
	}
}

// records frames msg into handshake records of at most size bytes.
func records(msg []byte, size int) []byte {
	var out []byte
	for len(msg) > 0 {
		n := min(size, len(msg))
		out = append(out, 0x16, 3, 1, byte(n>>8), byte(n))
		out = append(out, msg[:n]...)
		msg = msg[n:]
	}
	return out
}

func TestReadRecordsSplit(t *testing.T) {
	h, _ := chromeHello(t)
	for _, size := range []int{1, 3, 4, 5, 100, 1000} {
		wire := records(h.Raw, size)
		trailer := []byte("\x14\x03\x03\x00\x01\x01")
		got, raw, err := ReadRecords(bytes.NewReader(append(slices.Clip(wire), trailer...)))
		if err != nil {
			t.Fatalf("ReadRecords(records of %d) = %v, want nil", size, err)
		}
		if !bytes.Equal(got.Raw, h.Raw) {
			t.Errorf("ReadRecords(records of %d).Raw differs from the hello", size)
		}
		if !bytes.Equal(raw, wire) {
			t.Errorf("ReadRecords(records of %d) consumed %d bytes, want %d (not the trailer)", size, len(raw), len(wire))
		}
	}
}

var errStall = errors.New("stalled: reader wants more input")

// stallReader returns its bytes one Read at a time, then errStall: a
// ReadRecords that wants more than it was given fails with errStall instead
// of ErrNotTLS.
type stallReader struct{ chunks [][]byte }

func (s *stallReader) Read(p []byte) (int, error) {
	if len(s.chunks) == 0 {
		return 0, errStall
	}
	n := copy(p, s.chunks[0])
	s.chunks[0] = s.chunks[0][n:]
	if len(s.chunks[0]) == 0 {
		s.chunks = s.chunks[1:]
	}
	return n, nil
}

func TestReadRecordsEarlyReject(t *testing.T) {
	tests := []struct {
		name string
		in   []byte
	}{
		{"http", []byte("G")},
		{"zero", []byte{0}},
		{"alert record", []byte{0x15}},
		{"ssl2 version", []byte{0x16, 0x02}},
		{"version 0x0300", []byte{0x16, 0x03, 0x00}},
		{"version 0x0304", []byte{0x16, 0x03, 0x04}},
		{"length 0", []byte{0x16, 0x03, 0x01, 0x00, 0x00}},
		{"length 16385", []byte{0x16, 0x03, 0x01, 0x40, 0x01}},
		{"server hello", []byte{0x16, 0x03, 0x03, 0x00, 0x50, 0x02}},
		{"huge hello", []byte{0x16, 0x03, 0x01, 0x00, 0x50, 0x01, 0x01, 0x00, 0x00}},
		{"second record not handshake", []byte{0x16, 0x03, 0x01, 0x00, 0x02, 0x01, 0x00, 0x17}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, raw, err := ReadRecords(&stallReader{chunks: [][]byte{tt.in}})
			if !errors.Is(err, ErrNotTLS) {
				t.Errorf("ReadRecords(%x) = %v, want ErrNotTLS", tt.in, err)
			}
			if !bytes.Equal(raw, tt.in) {
				t.Errorf("ReadRecords(%x) raw = %x, want the input", tt.in, raw)
			}
		})
	}
}

func TestReadRecordsShortInput(t *testing.T) {
	h, _ := goHello(t)
	wire := records(h.Raw, 16384)
	for _, n := range []int{1, 5, 6, 100, len(wire) - 1} {
		_, raw, err := ReadRecords(bytes.NewReader(wire[:n]))
		if !errors.Is(err, io.ErrUnexpectedEOF) {
			t.Errorf("ReadRecords(first %d bytes) = %v, want ErrUnexpectedEOF", n, err)
		}
		if len(raw) != n {
			t.Errorf("ReadRecords(first %d bytes) raw = %d bytes, want %d", n, len(raw), n)
		}
	}
}

func TestParseMalformed(t *testing.T) {
	h, _ := goHello(t)
	for n := 0; n < len(h.Raw); n++ {
		if _, err := Parse(h.Raw[:n]); err == nil {
			t.Fatalf("Parse(first %d of %d bytes) = nil error, want error", n, len(h.Raw))
		}
	}
	dup := slices.Clone(h.Raw)
	// Rewrite the second extension's type to the first one's.
	first := h.Extensions[0].Type
	off := cap(h.Raw) - cap(h.Extensions[1].Data) - 4 // Data slices into Raw
	dup[off], dup[off+1] = byte(first>>8), byte(first)
	if _, err := Parse(dup); !errors.Is(err, ErrMalformed) {
		t.Errorf("Parse(duplicate extension) = %v, want ErrMalformed", err)
	}
}

func FuzzParse(f *testing.F) {
	g, _ := goHello(f)
	c, _ := chromeHello(f)
	f.Add(g.Raw)
	f.Add(c.Raw)
	f.Fuzz(func(t *testing.T, msg []byte) {
		h, err := Parse(msg)
		if err != nil {
			return
		}
		if len(h.Random) != 32 || len(h.SessionID) > 32 {
			t.Fatalf("Parse accepted Random %d bytes, SessionID %d bytes", len(h.Random), len(h.SessionID))
		}
		if !bytes.Equal(h.Raw[h.SessionIDOffset:h.SessionIDOffset+len(h.SessionID)], h.SessionID) {
			t.Fatal("SessionIDOffset does not point at SessionID")
		}
		// The same bytes framed in records read back the same.
		h2, _, err := ReadRecords(bytes.NewReader(records(msg, 7)))
		if err == nil && !bytes.Equal(h2.Raw, h.Raw) {
			t.Fatal("ReadRecords(records(msg)).Raw != msg")
		}
	})
}

func FuzzReadRecords(f *testing.F) {
	g, graw := goHello(f)
	_, craw := chromeHello(f)
	f.Add(graw)
	f.Add(craw)
	f.Add(records(g.Raw, 50))
	f.Add([]byte("GET / HTTP/1.1\r\n\r\n"))
	f.Fuzz(func(t *testing.T, in []byte) {
		_, raw, err := ReadRecords(bytes.NewReader(in))
		if !bytes.HasPrefix(in, raw) {
			t.Fatalf("raw is not a prefix of the input (err %v)", err)
		}
	})
}
