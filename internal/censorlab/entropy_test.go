package censorlab

import (
	"bytes"
	"math/rand/v2"
	"strings"
	"testing"
	"time"
)

func randomBytes(n int, seed uint64) []byte {
	r := rand.New(rand.NewPCG(seed, 1))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	b[0] |= 0x80
	return b
}

func TestExemption(t *testing.T) {
	mixed := bytes.Repeat([]byte{0x81, 'g', 'g'}, 100) // 2/3 printable, 4.0 bits per byte
	run := randomBytes(300, 2)
	copy(run[100:], strings.Repeat("g", 21))
	tests := []struct {
		name string
		in   []byte
		want string // prefix of the exemption, "" for none
	}{
		{"random", randomBytes(1000, 1), ""},
		{"zeros", make([]byte, 100), "Ex1"},
		{"all ones", bytes.Repeat([]byte{0xff}, 100), "Ex1"},
		{"printable start", append([]byte("abcdef"), randomBytes(500, 3)...), "Ex2"},
		{"mostly printable", mixed, "Ex3"},
		{"long printable run", run, "Ex4"},
		{"tls prefix", append([]byte{0x16, 0x03, 0x01}, randomBytes(500, 4)...), "Ex5"},
		{"http prefix", append([]byte("HEAD\x81\x82"), randomBytes(500, 5)...), "Ex5"},
	}
	for _, tt := range tests {
		got := Exemption(tt.in)
		if tt.want == "" && got != "" || !strings.HasPrefix(got, tt.want) {
			t.Errorf("Exemption(%s) = %q, want %q", tt.name, got, tt.want)
		}
	}
}

func TestFullyEncryptedFirstPacketOnly(t *testing.T) {
	c := NewCensor()
	m := &FullyEncrypted{BlockFor: time.Minute}
	m.attach(c)
	f := tcpFlow(1, "127.0.2.1:8388")
	if v, _ := feed(f, m, Up, []byte("\x16\x03\x01\x00\x05hello"), 0); v.Action != Pass {
		t.Fatalf("TLS-looking first packet: %v, want pass", v)
	}
	if v, _ := feed(f, m, Up, randomBytes(1000, 6), 0); v.Action != Pass {
		t.Fatalf("random second packet: %v, want pass (only the first counts)", v)
	}
	g := tcpFlow(2, "127.0.2.1:8388")
	if v, _ := feed(g, m, Up, randomBytes(1000, 7), 0); v.Action != Reset {
		t.Fatalf("random first packet: %v, want reset", v)
	}
	if v := c.open(tcpFlow(3, "127.0.2.1:8388"), func(Action) {}); v.Action != Reset {
		t.Fatalf("new flow after a detection: %v, want reset (triple blocked)", v)
	}
	if v := c.open(tcpFlow(4, "127.0.2.1:8389"), func(Action) {}); v.Action != Pass {
		t.Fatalf("new flow to another port: %v, want pass", v)
	}
}
