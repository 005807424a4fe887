package vless

import (
	"bytes"
	"encoding/hex"
	"errors"
	"io"
	"net/netip"
	"reflect"
	"strings"
	"testing"
)

var testUUID = [16]byte{0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef, 0xfe, 0xdc, 0xba, 0x98, 0x76, 0x54, 0x32, 0x10}

const testUUIDHex = "0123456789abcdeffedcba9876543210"

// unhex decodes hex with spaces, for readable vectors.
func unhex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(strings.ReplaceAll(s, " ", ""))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// visionAddons is what Xray's proto.Marshal(&Addons{Flow: "xtls-rprx-vision"}) produces, with
// its length byte: 0x12, field 1 tag 0x0a, length 0x10.
const visionAddons = "12 0a 10" + " 78746c732d727072782d766973696f6e"

var requestVectors = []struct {
	name string
	req  Request
	wire string
}{
	{"tcp ipv4 no flow", Request{UUID: testUUID, Command: CommandTCP, Dest: Addr{IP: netip.MustParseAddr("1.2.3.4"), Port: 443}},
		"00" + testUUIDHex + "00 01 01bb 01 01020304"},
	{"tcp domain vision", Request{UUID: testUUID, Flow: FlowVision, Command: CommandTCP, Dest: Addr{Host: "example.com", Port: 443}},
		"00" + testUUIDHex + visionAddons + "01 01bb 02 0b 6578616d706c652e636f6d"},
	{"udp ipv6", Request{UUID: testUUID, Command: CommandUDP, Dest: Addr{IP: netip.MustParseAddr("2001:db8::1"), Port: 53}},
		"00" + testUUIDHex + "00 02 0035 03 20010db8000000000000000000000001"},
	{"mux vision", Request{UUID: testUUID, Flow: FlowVision, Command: CommandMux, Dest: Addr{Host: MuxHost}},
		"00" + testUUIDHex + visionAddons + "03"},
	{"tcp port 0 underscore domain", Request{UUID: testUUID, Command: CommandTCP, Dest: Addr{Host: "_a-b.C9", Port: 0}},
		"00" + testUUIDHex + "00 01 0000 02 07 5f612d622e4339"},
}

func TestRequestVectors(t *testing.T) {
	for _, tt := range requestVectors {
		t.Run(tt.name, func(t *testing.T) {
			want := unhex(t, tt.wire)
			got, err := tt.req.MarshalBinary()
			if err != nil {
				t.Fatalf("MarshalBinary() error %v", err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("MarshalBinary() = %x, want %x", got, want)
			}
			// ReadRequest must stop exactly at the end of the header.
			r := bytes.NewReader(append(want, "payload"...))
			dec, err := ReadRequest(r)
			if err != nil {
				t.Fatalf("ReadRequest(%x) error %v", want, err)
			}
			if !reflect.DeepEqual(*dec, tt.req) {
				t.Errorf("ReadRequest(%x) = %+v, want %+v", want, *dec, tt.req)
			}
			if rest, _ := io.ReadAll(r); string(rest) != "payload" {
				t.Errorf("ReadRequest left %q, want %q", rest, "payload")
			}
		})
	}
}

func TestReadRequestNormalises(t *testing.T) {
	lo := Addr{IP: netip.MustParseAddr("127.0.0.1"), Port: 80}
	tests := []struct {
		name string
		tail string // after the UUID
		want Addr
	}{
		{"domain that is an IPv4 literal", "00 01 01bb 02 07 312e322e332e34", Addr{IP: netip.MustParseAddr("1.2.3.4"), Port: 443}},
		{"domain that is a bracketed IPv6 literal", "00 01 0050 02 05 5b3a3a315d", Addr{IP: netip.MustParseAddr("::1"), Port: 80}},
		{"IPv4-mapped IPv6", "00 01 0050 03 00000000000000000000ffff01020304", Addr{IP: netip.MustParseAddr("1.2.3.4"), Port: 80}},
		{"domain starting with a digit", "00 01 0050 02 03 316131", Addr{Host: "1a1", Port: 80}},
		// Flow "x", Seed (field 2), an unknown varint field 7, then Flow "" (last wins).
		{"addons with seed and unknown field", "0c 0a0178 1202abcd 389601 0a00 01 0050 01 7f000001", lo},
		{"addons flow with wrong wire type is skipped", "02 0801 01 0050 01 7f000001", lo},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			wire := unhex(t, "00"+testUUIDHex+tt.tail)
			req, err := ReadRequest(bytes.NewReader(wire))
			if err != nil {
				t.Fatalf("ReadRequest(%x) error %v", wire, err)
			}
			if req.Dest != tt.want || req.Flow != "" {
				t.Errorf("ReadRequest(%x) = %+v, want dest %+v, no flow", wire, req, tt.want)
			}
		})
	}
}

func TestReadRequestErrors(t *testing.T) {
	tests := []struct {
		name string
		wire string
		want error
	}{
		{"version 1", "01" + testUUIDHex + "00 01 0050 01 7f000001", ErrVersion},
		{"command 4 (reverse)", "00" + testUUIDHex + "00 04", ErrCommand},
		{"command 0", "00" + testUUIDHex + "00 00", ErrCommand},
		{"address type 4", "00" + testUUIDHex + "00 01 0050 04 7f000001", ErrAddress},
		{"empty domain", "00" + testUUIDHex + "00 01 0050 02 00", ErrAddress},
		{"domain with space", "00" + testUUIDHex + "00 01 0050 02 03 612062", ErrAddress},
		{"unknown flow", "00" + testUUIDHex + "05 0a 03 616263 01 0050 01 7f000001", ErrFlow},
		{"flow twice, last wins", "00" + testUUIDHex + "07 0a0178 0a027979 01 0050 01 7f000001", ErrFlow},
		{"vision udp", "00" + testUUIDHex + visionAddons + "02 0035 01 08080808", ErrVisionUDP},
		{"addons truncated varint", "00" + testUUIDHex + "02 0a 80 01", errAddonsProto},
		{"addons length overflow", "00" + testUUIDHex + "02 0a 05 01", errAddonsProto},
		{"addons field 0", "00" + testUUIDHex + "02 00 00 01", errAddonsProto},
		{"addons group", "00" + testUUIDHex + "01 0b 01", errAddonsProto},
		{"flow not utf-8", "00" + testUUIDHex + "03 0a 01 ff 01 0050 01 7f000001", errAddonsProto},
		{"truncated uuid", "00 0123", io.ErrUnexpectedEOF},
		{"truncated ipv6", "00" + testUUIDHex + "00 01 0050 03 2001", io.ErrUnexpectedEOF},
		{"empty", "", io.EOF},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			wire := unhex(t, tt.wire)
			req, err := ReadRequest(bytes.NewReader(wire))
			if !errors.Is(err, tt.want) {
				t.Errorf("ReadRequest(%x) = %+v, %v, want error %v", wire, req, err, tt.want)
			}
		})
	}
}

func TestMarshalErrors(t *testing.T) {
	tests := []struct {
		name string
		req  Request
	}{
		{"no destination", Request{Command: CommandTCP}},
		{"long domain", Request{Command: CommandTCP, Dest: Addr{Host: strings.Repeat("a", 256)}}},
		{"bad command", Request{Command: 9, Dest: Addr{Host: "a"}}},
	}
	for _, tt := range tests {
		if b, err := tt.req.MarshalBinary(); err == nil {
			t.Errorf("%s: MarshalBinary() = %x, nil, want error", tt.name, b)
		}
	}
}

func TestAddrString(t *testing.T) {
	tests := []struct {
		in   Addr
		want string
	}{
		{Addr{Host: "example.com", Port: 443}, "example.com:443"},
		{Addr{IP: netip.MustParseAddr("2001:db8::1"), Port: 53}, "[2001:db8::1]:53"},
		{Addr{IP: netip.MustParseAddr("1.2.3.4"), Port: 80}, "1.2.3.4:80"},
	}
	for _, tt := range tests {
		if got := tt.in.String(); got != tt.want {
			t.Errorf("%#v.String() = %q, want %q", tt.in, got, tt.want)
		}
	}
	r := Request{UUID: testUUID, Command: CommandTCP, Dest: Addr{Host: "a.b", Port: 1}}
	if s := r.String(); strings.Contains(s, "0123") || s != "tcp a.b:1" {
		t.Errorf("Request.String() = %q, want %q and no UUID", s, "tcp a.b:1")
	}
}

func FuzzReadRequest(f *testing.F) {
	for _, tt := range requestVectors {
		f.Add(unhex(f, tt.wire))
	}
	f.Add(unhex(f, "00"+testUUIDHex+"0b 0a 01 78 12 02 abcd 38 96 01 0a 00 01 0050 02 07 312e322e332e34"))
	f.Add(unhex(f, "00"+testUUIDHex+"00 02 0035 03 00000000000000000000ffff01020304"))
	f.Fuzz(func(t *testing.T, in []byte) {
		req, err := ReadRequest(bytes.NewReader(in))
		if err != nil {
			return
		}
		enc, err := req.MarshalBinary()
		if err != nil {
			t.Fatalf("MarshalBinary(ReadRequest(%x) = %+v) error %v", in, req, err)
		}
		again, err := ReadRequest(bytes.NewReader(enc))
		if err != nil {
			t.Fatalf("ReadRequest(MarshalBinary(%+v) = %x) error %v", req, enc, err)
		}
		if !reflect.DeepEqual(again, req) {
			t.Fatalf("ReadRequest(MarshalBinary(%+v)) = %+v, want the same", req, again)
		}
		if enc2, _ := again.MarshalBinary(); !bytes.Equal(enc2, enc) {
			t.Fatalf("encoding not stable: %x then %x", enc, enc2)
		}
	})
}
