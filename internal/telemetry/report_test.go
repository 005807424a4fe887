package telemetry

import (
	"bytes"
	"errors"
	"slices"
	"testing"

	"github.com/burrow-vpn/burrow/internal/vless"
)

func TestSizeBucket(t *testing.T) {
	for _, tc := range []struct {
		n    int64
		want uint8
	}{
		{0, 0}, {1023, 0}, {1024, 0}, {2047, 0}, {2048, 1}, {8 << 10, 3}, {12 << 10, 3},
		{16<<10 - 1, 3}, {16 << 10, 4}, {20 << 10, 4}, {64 << 10, 6}, {32 << 20, 15}, {1 << 40, 15}, {-5, 0},
	} {
		if got := SizeBucket(tc.n); got != tc.want {
			t.Errorf("SizeBucket(%d) = %d, want %d", tc.n, got, tc.want)
		}
	}
}

func sample() *Report {
	return &Report{Entries: []Entry{
		{TCP, ConnOK, 0, 12},
		{TCP, Freeze, 4, 2},
		{TCP, Reset, 0, 1},
		{TCP, Fallback, 0, 1},
		{XHTTP, Budget, 3, 1},
		{XHTTP, Cap, 2, 1},
		{XHTTP, ConnFailed, 0, 65535},
	}}
}

func TestRoundTrip(t *testing.T) {
	for _, r := range []*Report{sample(), {}} {
		var buf bytes.Buffer
		if err := Write(&buf, r); err != nil {
			t.Fatal(err)
		}
		got, err := Read(&buf)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(got.Entries, r.Entries) {
			t.Errorf("Read(Write(%v)) = %v", r.Entries, got.Entries)
		}
		if buf.Len() != 0 {
			t.Errorf("Read left %d bytes", buf.Len())
		}
	}
}

func TestParseRejects(t *testing.T) {
	good, err := sample().Append(nil)
	if err != nil {
		t.Fatal(err)
	}
	mod := func(f func(b []byte) []byte) []byte { return f(bytes.Clone(good)) }
	for _, tc := range []struct {
		name string
		b    []byte
	}{
		{"empty", nil},
		{"one byte", []byte{1}},
		{"version 0", mod(func(b []byte) []byte { b[0] = 0; return b })},
		{"version 2", mod(func(b []byte) []byte { b[0] = 2; return b })},
		{"too many entries", append([]byte{1, MaxEntries + 1}, make([]byte, 5*(MaxEntries+1))...)},
		{"short", good[:len(good)-1]},
		{"trailing byte", append(bytes.Clone(good), 0)},
		{"transport 0", mod(func(b []byte) []byte { b[2] = 0; return b })},
		{"transport 3", mod(func(b []byte) []byte { b[2] = 3; return b })},
		{"metric 0", mod(func(b []byte) []byte { b[3] = 0; return b })},
		{"metric 8", mod(func(b []byte) []byte { b[3] = 8; return b })},
		{"bucket on a counter", mod(func(b []byte) []byte { b[4] = 1; return b })},
		{"size bucket 16", []byte{1, 1, 1, byte(Freeze), 16, 0, 1}},
		{"cap 0", []byte{1, 1, 2, byte(Cap), 0, 0, 1}},
		{"cap 65", []byte{1, 1, 2, byte(Cap), 65, 0, 1}},
		{"count 0", []byte{1, 1, 1, 1, 0, 0, 0}},
		{"repeated", []byte{1, 2, 1, 1, 0, 0, 1, 1, 1, 0, 0, 2}},
	} {
		if r, err := Parse(tc.b); err == nil || !errors.Is(err, ErrBadReport) {
			t.Errorf("%s: Parse(%x) = %v, %v; want an ErrBadReport", tc.name, tc.b, r, err)
		}
	}
}

func TestReadRejectsLength(t *testing.T) {
	for _, b := range [][]byte{
		nil,
		{0},
		{0xff, 0xff},
		{(MaxReport + 1) >> 8, (MaxReport + 1) & 0xff},
		{0, 5, 1, 0}, // body cut short
	} {
		if _, err := Read(bytes.NewReader(b)); !errors.Is(err, ErrBadReport) {
			t.Errorf("Read(%x) = %v, want an ErrBadReport", b, err)
		}
	}
}

func TestIsReport(t *testing.T) {
	if !IsReport(&vless.Request{Command: vless.CommandTCP, Dest: Dest}) {
		t.Error("IsReport(a TCP request to Dest) = false")
	}
	for _, req := range []*vless.Request{
		{Command: vless.CommandUDP, Dest: Dest},
		{Command: vless.CommandTCP, Dest: vless.Addr{Host: Dest.Host, Port: 1}},
		{Command: vless.CommandTCP, Dest: vless.StatusDest},
	} {
		if IsReport(req) {
			t.Errorf("IsReport(%v %v) = true", req.Command, req.Dest)
		}
	}
}

func FuzzParse(f *testing.F) {
	good, _ := sample().Append(nil)
	f.Add(good)
	f.Add([]byte{1, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := Parse(b)
		if err != nil {
			return
		}
		again, err := r.Append(nil)
		if err != nil {
			t.Fatalf("Append of a parsed report: %v", err)
		}
		if !bytes.Equal(again, b) {
			t.Fatalf("Append(Parse(%x)) = %x", b, again)
		}
	})
}

func TestTally(t *testing.T) {
	var tl Tally
	if r := tl.Take(); r != nil {
		t.Fatalf("Take() of an empty tally = %v, want nil", r)
	}
	tl.Add(TCP, ConnOK, 0, 3)
	tl.Add(TCP, ConnOK, 0, 1<<20) // saturates
	tl.Add(XHTTP, Freeze, 4, 1)
	tl.Add(XHTTP, Freeze, 99, 1) // not a bucket: dropped
	tl.Add(TCP, Reset, 0, 0)     // nothing
	r := tl.Take()
	want := []Entry{{TCP, ConnOK, 0, 65535}, {XHTTP, Freeze, 4, 1}}
	if r == nil || !slices.Equal(r.Entries, want) {
		t.Fatalf("Take() = %v, want %v", r, want)
	}
	if again := tl.Take(); again != nil {
		t.Errorf("second Take() = %v, want nil", again)
	}
	tl.Restore(r)
	if back := tl.Take(); back == nil || !slices.Equal(back.Entries, want) {
		t.Errorf("Take() after Restore = %v, want %v", back, want)
	}

	// More entries than a report holds: the rest waits for the next.
	for b := uint8(1); b <= MaxCap; b++ {
		tl.Add(XHTTP, Cap, b, 1)
	}
	tl.Add(TCP, ConnOK, 0, 1)
	first, second := tl.Take(), tl.Take()
	if len(first.Entries) != MaxEntries || second == nil || len(second.Entries) != 1 {
		t.Fatalf("65 entries went as %d + %v, want %d + 1", len(first.Entries), second, MaxEntries)
	}
	if _, err := first.Append(nil); err != nil {
		t.Errorf("a full report does not encode: %v", err)
	}
}
