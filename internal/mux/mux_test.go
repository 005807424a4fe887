package mux

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"io"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"
)

func unhex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(strings.ReplaceAll(s, " ", ""))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// Frames as Xray's xudp.PacketWriter and mux.Writer build them.
var frameVectors = []struct {
	name string
	wire string
	want frame
}{
	{"xudp new ipv4 with global id", "0014 0000 01 01 02 0035 01 08080808 0102030405060708 0003 616263",
		frame{id: 0, status: statusNew, option: optData, network: netUDP, dest: "8.8.8.8:53", globalID: [8]byte{1, 2, 3, 4, 5, 6, 7, 8}, data: []byte("abc")}},
	{"xudp keep domain", "0014 0000 02 01 02 01bb 02 0b 6578616d706c652e636f6d 0001 ff",
		frame{status: statusKeep, option: optData, network: netUDP, dest: "example.com:443", data: []byte{0xff}}},
	{"keep without address", "0004 0007 02 01 0002 aabb", frame{id: 7, status: statusKeep, option: optData, data: []byte{0xaa, 0xbb}}},
	{"mux new udp ipv6 without global id", "0018 0001 01 00 02 0035 03 20010db8000000000000000000000001",
		frame{id: 1, status: statusNew, network: netUDP, dest: "[2001:db8::1]:53"}},
	{"new tcp", "000c 0002 01 01 01 0050 01 7f000001 0000", frame{id: 2, status: statusNew, option: optData, network: netTCP, dest: "127.0.0.1:80", data: []byte{}}},
	{"end with error", "0004 0003 03 02", frame{id: 3, status: statusEnd, option: optError}},
	{"keepalive with data", "0004 0000 04 01 0001 00", frame{status: statusKeepAlive, option: optData, data: []byte{0}}},
}

func TestReadFrame(t *testing.T) {
	for _, tt := range frameVectors {
		t.Run(tt.name, func(t *testing.T) {
			in := unhex(t, tt.wire)
			fr := &frameReader{r: bytes.NewReader(append(in, 0xee))}
			f, err := fr.read()
			if err != nil {
				t.Fatalf("read(%x) error %v", in, err)
			}
			if f.id != tt.want.id || f.status != tt.want.status || f.option != tt.want.option || f.network != tt.want.network ||
				f.dest != tt.want.dest || f.globalID != tt.want.globalID || !bytes.Equal(f.data, tt.want.data) {
				t.Errorf("read(%x) = %+v, want %+v", in, *f, tt.want)
			}
			if rest, _ := io.ReadAll(fr.r); !bytes.Equal(rest, []byte{0xee}) {
				t.Errorf("read consumed past the frame: left %x", rest)
			}
		})
	}
}

func TestReadFrameErrors(t *testing.T) {
	tests := []struct {
		name string
		wire string
		want error
	}{
		{"meta too long", "0201", ErrFrame},
		{"meta too short", "0003 000001", ErrFrame},
		{"truncated data", "0004 0000 02 01 0005 aa", io.ErrUnexpectedEOF},
		{"truncated meta", "0004 0000", io.ErrUnexpectedEOF},
		{"empty", "", io.EOF},
	}
	for _, tt := range tests {
		in := unhex(t, tt.wire)
		if f, err := (&frameReader{r: bytes.NewReader(in)}).read(); !errors.Is(err, tt.want) {
			t.Errorf("%s: read(%x) = %+v, %v, want error %v", tt.name, in, f, err, tt.want)
		}
	}
}

// TestReadFrameBadDest: a frame whose destination cannot be decoded but whose length
// prefixes are whole is read, with destErr set and no destination, and the frame after it
// is read as usual.
func TestReadFrameBadDest(t *testing.T) {
	for _, tt := range []struct{ name, wire string }{
		{"bad network", "000c 0001 01 01 03 0050 01 7f000001 0001 aa"},
		{"bad atype", "000c 0001 01 01 02 0050 04 7f000001 0001 aa"},
		{"short ipv6", "000a 0001 01 01 02 0050 03 2001 0001 aa"},
		{"bad domain", "000b 0001 01 01 02 0050 02 02 2f2f 0001 aa"},
		{"domain past meta", "000b 0001 01 01 02 0050 02 09 2f2f 0001 aa"},
		{"no destination", "0004 0001 01 01 0001 aa"},
		{"ipv6 zone", "0013 0001 01 01 01 0050 02 0a 666538303a3a312576 30 0001 aa"},
		{"xudp keep bad domain", "000c 0001 02 01 02 0035 02 03 612062 0001 aa"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			in := append(unhex(t, tt.wire), unhex(t, "0004 0002 03 00")...)
			fr := &frameReader{r: bytes.NewReader(in)}
			f, err := fr.read()
			if err != nil {
				t.Fatalf("read(%x) error %v, want the frame with destErr", in, err)
			}
			if !errors.Is(f.destErr, errDest) || f.dest != "" || f.network != 0 || f.id != 1 || !bytes.Equal(f.data, []byte{0xaa}) {
				t.Errorf("read(%x) = %+v, want session 1, data aa, no destination and destErr", in, *f)
			}
			if f, err := fr.read(); err != nil || f.id != 2 || f.status != statusEnd || f.destErr != nil {
				t.Errorf("frame after it = %+v, %v, want End for session 2", f, err)
			}
		})
	}
}

func TestAppendFrame(t *testing.T) {
	tests := []struct {
		name string
		got  []byte
		want string
	}{
		{"keep ipv4 source", appendFrame(nil, 0, statusKeep, optData, netip.MustParseAddrPort("8.8.8.8:53"), []byte("ok")),
			"000c 0000 02 01 02 0035 01 08080808 0002 6f6b"},
		{"keep ipv6 source", appendFrame(nil, 5, statusKeep, optData, netip.MustParseAddrPort("[2001:db8::1]:443"), nil),
			"0018 0005 02 01 02 01bb 03 20010db8000000000000000000000001 0000"},
		{"end", appendFrame(nil, 9, statusEnd, 0, netip.AddrPort{}, nil), "0004 0009 03 00"},
	}
	for _, tt := range tests {
		if want := unhex(t, tt.want); !bytes.Equal(tt.got, want) {
			t.Errorf("%s: appendFrame = %x, want %x", tt.name, tt.got, want)
		}
	}
}

func FuzzReadFrame(f *testing.F) {
	for _, tt := range frameVectors {
		f.Add(unhex(f, tt.wire))
	}
	// Sequences of frames as an Xray mux client sends them: TCP New by domain and IPv6,
	// Keep with a full 8 KiB chunk, End, End with error and data, KeepAlive.
	seq := [][]byte{}
	for _, dest := range []string{"example.com:443", "[2001:db8::1]:80", "10.0.0.1:22"} {
		b, err := appendNewFrame(nil, 1, netTCP, dest, []byte("GET / HTTP/1.1\r\n"))
		if err != nil {
			f.Fatal(err)
		}
		seq = append(seq, b)
		if b, err = appendNewFrame(nil, 2, netUDP, dest, nil); err != nil {
			f.Fatal(err)
		}
		seq = append(seq, b)
	}
	seq = append(seq,
		appendFrame(nil, 1, statusKeep, optData, netip.AddrPort{}, bytes.Repeat([]byte{0xaa}, 8<<10)),
		appendFrame(nil, 1, statusEnd, 0, netip.AddrPort{}, nil),
		appendFrame(nil, 2, statusEnd, optError|optData, netip.AddrPort{}, []byte("x")),
		appendFrame(nil, 0, statusKeepAlive, 0, netip.AddrPort{}, nil),
		appendFrame(nil, 3, statusKeep, optData, netip.MustParseAddrPort("[::1]:53"), []byte("dns")),
	)
	for _, b := range seq {
		f.Add(b)
	}
	f.Add(bytes.Join(seq, nil))
	f.Fuzz(func(t *testing.T, in []byte) {
		fr := &frameReader{r: bytes.NewReader(in)}
		for {
			fm, err := fr.read()
			if err != nil {
				return
			}
			if fm.dest != "" {
				if _, _, err := net.SplitHostPort(fm.dest); err != nil {
					t.Fatalf("dest %q is not host:port", fm.dest)
				}
				// Round trip: what the reader produced encodes and decodes to the same.
				b, err := appendNewFrame(nil, fm.id, fm.network, fm.dest, fm.data)
				if err != nil {
					t.Fatalf("appendNewFrame(%q) after read: %v", fm.dest, err)
				}
				back, err := (&frameReader{r: bytes.NewReader(b)}).read()
				if err != nil || back.dest != fm.dest || back.network != fm.network || !bytes.Equal(back.data, fm.data) {
					t.Fatalf("round trip of %q: %+v, %v", fm.dest, back, err)
				}
			}
		}
	})
}

// udpEcho runs a UDP echo server on loopback that prefixes answers with tag.
func udpEcho(t *testing.T, tag string) netip.AddrPort {
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	go func() {
		buf := make([]byte, 65535)
		for {
			n, addr, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			pc.WriteTo(append([]byte(tag), buf[:n]...), addr)
		}
	}()
	return pc.LocalAddr().(*net.UDPAddr).AddrPort()
}

func dialLoopback(ctx context.Context, network, address string) (net.Conn, error) {
	var d net.Dialer
	return d.DialContext(ctx, network, address)
}

// xudpFrame builds a client frame the way Xray's xudp.PacketWriter does.
func xudpFrame(status byte, dest netip.AddrPort, globalID []byte, data []byte) []byte {
	b := []byte{0, 0, 0, 0, status, optData, netUDP}
	b = appendAddrPort(b, dest)
	b = append(b, globalID...)
	l := len(b) - 2
	b[0], b[1] = byte(l>>8), byte(l)
	b = append(b, byte(len(data)>>8), byte(len(data)))
	return append(b, data...)
}

func TestServerMuxXUDP(t *testing.T) {
	oldIdle := IdleTimeout
	IdleTimeout = 300 * time.Millisecond
	defer func() { IdleTimeout = oldIdle }()

	echo1, echo2 := udpEcho(t, "one:"), udpEcho(t, "two:")
	client, server := net.Pipe()
	defer client.Close()
	done := make(chan error, 1)
	go func() { done <- ServerMux(context.Background(), server, dialLoopback) }()

	fr := &frameReader{r: client}
	expect := func(status byte, src string, data string) {
		t.Helper()
		client.SetReadDeadline(time.Now().Add(5 * time.Second))
		f, err := fr.read()
		if err != nil {
			t.Fatalf("client read frame: %v", err)
		}
		if f.status != status || f.dest != src || string(f.data) != data {
			t.Fatalf("frame = status %d from %q data %q, want %d from %q data %q", f.status, f.dest, f.data, status, src, data)
		}
	}
	go client.Write(xudpFrame(statusNew, echo1, []byte{1, 2, 3, 4, 5, 6, 7, 8}, []byte("hello")))
	expect(statusKeep, echo1.String(), "one:hello")
	// Full-cone addressing: a Keep frame names another destination on the same session.
	go client.Write(xudpFrame(statusKeep, echo2, nil, []byte("there")))
	expect(statusKeep, echo2.String(), "two:there")
	go client.Write(xudpFrame(statusKeep, echo1, nil, bytes.Repeat([]byte("x"), 4000)))
	expect(statusKeep, echo1.String(), "one:"+strings.Repeat("x", 4000))

	// A TCP session to a closed port fails with End+error; unknown sessions are told to end.
	closedPort := func() uint16 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		return uint16(l.Addr().(*net.TCPAddr).Port)
	}()
	go client.Write(newTCP(t, 2, netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), closedPort).String(), []byte("a")))
	client.SetReadDeadline(time.Now().Add(5 * time.Second))
	if f, err := fr.read(); err != nil || f.id != 2 || f.status != statusEnd || f.option != optError {
		t.Fatalf("answer to TCP New to a closed port = %+v, %v, want End with error for session 2", f, err)
	}
	go client.Write(unhex(t, "0004 0009 02 01 0001 61"))
	if f, err := fr.read(); err != nil || f.id != 9 || f.status != statusEnd {
		t.Fatalf("answer to Keep for unknown session = %+v, %v, want End for session 9", f, err)
	}

	// An idle session ends with an End frame.
	if f, err := fr.read(); err != nil || f.id != 0 || f.status != statusEnd {
		t.Fatalf("after idle: %+v, %v, want End for session 0", f, err)
	}
	client.Close()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("ServerMux returned %v after the client closed, want nil", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("ServerMux did not return after the client closed")
	}
}

func TestServerMuxCancel(t *testing.T) {
	client, server := net.Pipe()
	defer client.Close()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- ServerMux(ctx, server, dialLoopback) }()
	echo := udpEcho(t, "")
	go client.Write(xudpFrame(statusNew, echo, nil, []byte("a")))
	fr := &frameReader{r: client}
	if _, err := fr.read(); err != nil {
		t.Fatal(err)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("ServerMux after cancel = %v, want nil", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("ServerMux did not return after cancel")
	}
}

func TestServerMuxBadFrame(t *testing.T) {
	client, server := net.Pipe()
	defer client.Close()
	done := make(chan error, 1)
	go func() { done <- ServerMux(context.Background(), server, dialLoopback) }()
	client.Write(unhex(t, "0004 0000 07 00"))
	if err := <-done; !errors.Is(err, ErrFrame) || strings.Count(err.Error(), "mux:") != 1 {
		t.Errorf("ServerMux(unknown status) = %v, want ErrFrame, the package named once", err)
	}
}
