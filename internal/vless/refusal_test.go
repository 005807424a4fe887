package vless

import (
	"bytes"
	"errors"
	"io"
	"net"
	"testing"
)

// TestWriteRefusalWire: the refusal's bytes are a response header whose addons are protobuf
// field 1000 (varint): what Xray-core's proto.Unmarshal skips as an unknown field.
func TestWriteRefusalWire(t *testing.T) {
	var b bytes.Buffer
	if err := WriteRefusal(&b, RefusedQuota); err != nil {
		t.Fatal(err)
	}
	if want := []byte{0, 3, 0xc0, 0x3e, 4}; !bytes.Equal(b.Bytes(), want) {
		t.Errorf("WriteRefusal(quota) = % x, want % x", b.Bytes(), want)
	}
	flow, r, err := parseAddons(b.Bytes()[2:])
	if flow != "" || r != RefusedQuota || err != nil {
		t.Errorf("parseAddons(refusal) = %q, %d, %v; want \"\", %d, nil", flow, r, err, RefusedQuota)
	}
	// A request whose addons carry the field too (no Xray client sends one) still parses.
	req := append([]byte{Version}, make([]byte, 16)...)
	req = append(req, 3, 0xc0, 0x3e, 4, byte(CommandTCP), 0, 80, atypIPv4, 127, 0, 0, 1)
	if _, err := ReadRequest(bytes.NewReader(req)); err != nil {
		t.Errorf("ReadRequest with a refusal field in its addons: %v", err)
	}
}

// TestClientConnRefused: a client conn whose server refuses reads a *RefusedError (also on
// later Reads), and tells its watcher once; an accepted request tells the watcher nil.
func TestClientConnRefused(t *testing.T) {
	for _, tc := range []struct {
		name   string
		answer func(io.Writer) error
		want   Refusal
	}{
		{"refused", func(w io.Writer) error { return WriteRefusal(w, RefusedRevoked) }, RefusedRevoked},
		{"accepted", WriteAccepted, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cc, sc := net.Pipe()
			defer cc.Close()
			done := make(chan error, 1)
			go func() {
				defer sc.Close()
				req, err := ReadRequest(sc)
				if err == nil && !req.IsStatus() {
					err = errors.New("not a status request")
				}
				if err == nil {
					err = tc.answer(sc)
				}
				done <- err
			}()
			var told []error
			c := ClientConnWatch(cc, &Request{Command: CommandTCP, Dest: StatusDest}, func(err error) { told = append(told, err) })
			if _, err := c.Write(nil); err != nil {
				t.Fatal(err)
			}
			for range 2 {
				_, err := c.Read(make([]byte, 1))
				var re *RefusedError
				switch {
				case tc.want != 0 && (!errors.As(err, &re) || re.Reason != tc.want || !errors.Is(err, ErrRefused)):
					t.Errorf("Read = %v, want a refusal: %v", err, tc.want)
				case tc.want == 0 && err != io.EOF:
					t.Errorf("Read = %v, want EOF after the bare header", err)
				}
			}
			if err := <-done; err != nil {
				t.Fatal(err)
			}
			if len(told) != 1 {
				t.Fatalf("watcher told %d times, want once", len(told))
			}
			var re *RefusedError
			if got := errors.As(told[0], &re); got != (tc.want != 0) {
				t.Errorf("watcher told %v, want refusal %v", told[0], tc.want)
			}
		})
	}
}
