package censorlab

import (
	"net"
	"slices"
	"testing"
)

// recordingConn records the size of every write.
type recordingConn struct {
	net.Conn
	writes []int
}

func (c *recordingConn) Write(p []byte) (int, error) {
	c.writes = append(c.writes, len(p))
	return len(p), nil
}

// The controls' HTTP/2 client sends control frames one per record, as
// Chromium does, and leaves every other write alone.
func TestBrowserWrites(t *testing.T) {
	frame := func(typ byte, payload int) []byte {
		return append([]byte{0, 0, byte(payload), typ, 0, 0, 0, 0, 1}, make([]byte, payload)...)
	}
	windowUpdates := append(frame(0x8, 4), frame(0x8, 4)...)
	headersAndData := append(frame(0x1, 20), frame(0x0, 100)...)
	for _, tt := range []struct {
		name string
		p    []byte
		want []int
	}{
		{"connection and stream WINDOW_UPDATE", windowUpdates, []int{13, 13}},
		{"SETTINGS ACK and WINDOW_UPDATE", append(frame(0x4, 0), frame(0x8, 4)...), []int{9, 13}},
		{"one WINDOW_UPDATE", frame(0x8, 4), []int{13}},
		{"HEADERS and DATA", headersAndData, []int{len(headersAndData)}},
		{"preface", []byte("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"), []int{24}},
		{"a cut frame", windowUpdates[:20], []int{20}},
	} {
		rc := &recordingConn{}
		n, err := (&browserWrites{Conn: rc}).Write(tt.p)
		if err != nil || n != len(tt.p) {
			t.Errorf("%s: Write = %d, %v; want %d, nil", tt.name, n, err, len(tt.p))
		}
		if !slices.Equal(rc.writes, tt.want) {
			t.Errorf("%s: writes of %v bytes, want %v", tt.name, rc.writes, tt.want)
		}
	}
}
