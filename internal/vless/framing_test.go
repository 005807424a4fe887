package vless

import (
	"bytes"
	"errors"
	"io"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"
)

// fakeTLS stands in for a TLS 1.3 conn but passes bytes through unchanged, so tests can see
// exactly what each Write puts on the wire.
type fakeTLS struct {
	conn     net.Conn
	input    bytes.Reader
	rawInput bytes.Buffer

	mu     sync.Mutex
	writes [][]byte
}

func (f *fakeTLS) visionInternals() (*tlsInternals, error) {
	return &tlsInternals{raw: f.conn, input: &f.input, rawInput: &f.rawInput}, nil
}

func (f *fakeTLS) Read(p []byte) (int, error)         { return f.conn.Read(p) }
func (f *fakeTLS) Close() error                       { return f.conn.Close() }
func (f *fakeTLS) LocalAddr() net.Addr                { return f.conn.LocalAddr() }
func (f *fakeTLS) RemoteAddr() net.Addr               { return f.conn.RemoteAddr() }
func (f *fakeTLS) SetDeadline(t time.Time) error      { return f.conn.SetDeadline(t) }
func (f *fakeTLS) SetReadDeadline(t time.Time) error  { return f.conn.SetReadDeadline(t) }
func (f *fakeTLS) SetWriteDeadline(t time.Time) error { return f.conn.SetWriteDeadline(t) }
func (f *fakeTLS) Write(p []byte) (int, error) {
	f.mu.Lock()
	f.writes = append(f.writes, append([]byte(nil), p...))
	f.mu.Unlock()
	return f.conn.Write(p)
}

func (f *fakeTLS) firstWrite() []byte {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.writes) == 0 {
		return nil
	}
	return f.writes[0]
}

// TestHeadersShareFirstWrite: the request header, the UUID and the first padded block are one
// outer write; so are the response header and the server's first block; the headers are not
// padded.
func TestHeadersShareFirstWrite(t *testing.T) {
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	fc, fs := &fakeTLS{conn: a}, &fakeTLS{conn: b}
	req := &Request{UUID: testUUID, Flow: FlowVision, Command: CommandTCP, Dest: Addr{Host: "example.com", Port: 443}}
	cc := ClientConn(fc, req)
	go cc.Write([]byte("GET / HTTP/1.1\r\n\r\n"))
	got, err := ReadRequest(fs)
	if err != nil || *got != *req {
		t.Fatalf("ReadRequest = %+v, %v, want %+v", got, err, req)
	}
	sc := ServerConn(fs, got)
	buf := make([]byte, 100)
	n, err := sc.Read(buf)
	if err != nil || string(buf[:n]) != "GET / HTTP/1.1\r\n\r\n" {
		t.Fatalf("server Read = %q, %v", buf[:n], err)
	}
	hdr, _ := req.MarshalBinary()
	w := fc.firstWrite()
	if !bytes.HasPrefix(w, hdr) || !bytes.HasPrefix(w[len(hdr):], testUUID[:]) || w[len(hdr)+16] != cmdContinue ||
		int(w[len(hdr)+17])<<8|int(w[len(hdr)+18]) != n {
		t.Errorf("client first write %x..., want header, UUID, cmd 0, content length %d", w[:min(len(w), len(hdr)+21)], n)
	}

	go sc.Write([]byte("HTTP/1.1 200 OK\r\n\r\n"))
	n, err = cc.Read(buf)
	if err != nil || string(buf[:n]) != "HTTP/1.1 200 OK\r\n\r\n" {
		t.Fatalf("client Read = %q, %v", buf[:n], err)
	}
	w = fs.firstWrite()
	if !bytes.HasPrefix(w, []byte{0, 0}) || !bytes.Equal(w[2:18], testUUID[:]) || w[18] != cmdContinue {
		t.Errorf("server first write %x..., want 00 00, UUID, cmd 0", w[:min(len(w), 23)])
	}
}

// TestHeaderFlushOnRead: a client that reads before writing still sends its request.
func TestHeaderFlushOnRead(t *testing.T) {
	old := headerFlushDelay
	headerFlushDelay = 10 * time.Millisecond
	defer func() { headerFlushDelay = old }()
	for _, flow := range []string{"", FlowVision} {
		a, b := net.Pipe()
		fc, fs := &fakeTLS{conn: a}, &fakeTLS{conn: b}
		req := &Request{UUID: testUUID, Flow: flow, Command: CommandTCP, Dest: Addr{Host: "smtp.example", Port: 25}}
		cc := ClientConn(fc, req)
		got := make(chan string, 1)
		go func() {
			buf := make([]byte, 64)
			n, _ := cc.Read(buf)
			got <- string(buf[:n])
		}()
		r, err := ReadRequest(fs)
		if err != nil {
			t.Fatalf("flow %q: ReadRequest: %v", flow, err)
		}
		sc := ServerConn(fs, r)
		if _, err := sc.Write([]byte("220 ready")); err != nil {
			t.Fatal(err)
		}
		if s := <-got; s != "220 ready" {
			t.Errorf("flow %q: client Read = %q, want %q", flow, s, "220 ready")
		}
		// The server must also have consumed the empty padded block without producing data.
		if flow == FlowVision {
			go cc.Write([]byte("EHLO"))
			buf := make([]byte, 16)
			n, err := sc.Read(buf)
			if err != nil || string(buf[:n]) != "EHLO" {
				t.Errorf("server Read after empty block = %q, %v, want EHLO", buf[:n], err)
			}
		}
		a.Close()
		b.Close()
	}
}

func TestUDPFraming(t *testing.T) {
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	fc := &fakeTLS{conn: a}
	// Vision is not used for UDP: the request goes out with no flow.
	req := &Request{UUID: testUUID, Flow: FlowVision, Command: CommandUDP, Dest: Addr{IP: netip.MustParseAddr("8.8.8.8"), Port: 53}}
	cc := ClientConn(fc, req)
	sizes := []int{1, 1400, 8190, 8191, maxDatagram}
	go func() {
		for _, n := range sizes {
			if _, err := cc.Write(bytes.Repeat([]byte{byte(n)}, n)); err != nil {
				t.Errorf("client Write(%d bytes): %v", n, err)
			}
		}
	}()
	got, err := ReadRequest(b)
	if err != nil || got.Flow != "" || got.Command != CommandUDP || got.Dest != req.Dest {
		t.Fatalf("ReadRequest = %+v, %v, want udp to %v with no flow", got, err, req.Dest)
	}
	sc := ServerConn(b, got)
	buf := make([]byte, 70000)
	for _, want := range sizes {
		n, err := sc.Read(buf)
		if err != nil || n != want || !bytes.Equal(buf[:n], bytes.Repeat([]byte{byte(want)}, want)) {
			t.Errorf("server Read = %d bytes, %v; want one datagram of %d", n, err, want)
		}
	}
	w := fc.firstWrite()
	hdr, _ := (&Request{UUID: testUUID, Command: CommandUDP, Dest: req.Dest}).MarshalBinary()
	if !bytes.Equal(w, append(hdr, 0x00, 0x01, 0x01)) {
		t.Errorf("client first write = %x, want header + 0001 + payload", w)
	}

	// Responses: the response header rides with the first datagram; a short buffer truncates.
	go func() {
		sc.Write([]byte("response-one"))
		sc.Write([]byte("two"))
	}()
	small := make([]byte, 4)
	if n, err := cc.Read(small); n != 4 || !errors.Is(err, io.ErrShortBuffer) || string(small) != "resp" {
		t.Errorf("client Read(4-byte buffer) = %q, %v, want %q, io.ErrShortBuffer", small[:n], err, "resp")
	}
	if n, err := cc.Read(buf); err != nil || string(buf[:n]) != "two" {
		t.Errorf("client Read = %q, %v, want %q", buf[:n], err, "two")
	}
	if _, err := cc.Write(make([]byte, maxDatagram+1)); !errors.Is(err, ErrDatagramTooLarge) {
		t.Errorf("Write(65536 bytes) error %v, want ErrDatagramTooLarge", err)
	}
}

func TestPlainTCPRoundTrip(t *testing.T) {
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	req := &Request{UUID: testUUID, Command: CommandTCP, Dest: Addr{IP: netip.MustParseAddr("10.0.0.1"), Port: 22}}
	cc := ClientConn(a, req)
	go cc.Write([]byte("ping"))
	got, err := ReadRequest(b)
	if err != nil || *got != *req {
		t.Fatalf("ReadRequest = %+v, %v, want %+v", got, err, req)
	}
	sc := ServerConn(b, got)
	buf := make([]byte, 8)
	if n, err := io.ReadFull(sc, buf[:4]); err != nil || string(buf[:n]) != "ping" {
		t.Fatalf("server read %q, %v", buf[:n], err)
	}
	go sc.Write([]byte("pong"))
	if n, err := io.ReadFull(cc, buf[:4]); err != nil || string(buf[:n]) != "pong" {
		t.Fatalf("client read %q, %v", buf[:n], err)
	}
}
