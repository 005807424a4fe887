package vless

import (
	"bytes"
	"io"
	"testing"
)

func TestCompleteRecords(t *testing.T) {
	app := tlsRecord(0x17, 100)
	tests := []struct {
		name   string
		in     []byte
		want   int
		wantOK bool
	}{
		{"empty", nil, 0, true},
		{"partial header", app[:3], 0, true},
		{"partial body", app[:50], 0, true},
		{"one record", app, len(app), true},
		{"record and a half", append(append([]byte{}, app...), app[:60]...), len(app), true},
		{"handshake then app data", append(serverHello(0x1301, true), app...), len(serverHello(0x1301, true)) + len(app), true},
		{"not TLS", []byte("GET / HTTP/1.1\r\n"), 0, false},
		{"empty record", []byte{0x17, 3, 3, 0, 0}, 0, false},
		{"record too long", []byte{0x17, 3, 3, 0x50, 0}, 0, false},
		{"garbage after a record", append(append([]byte{}, app...), 'x', 'y', 'z', 'w', 'v'), 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n, ok := completeRecords(tt.in)
			if n != tt.want || ok != tt.wantOK {
				t.Errorf("completeRecords(%s) = %d, %v, want %d, %v", tt.name, n, ok, tt.want, tt.wantOK)
			}
		})
	}
}

// choppyReader returns at most size bytes per Read, cutting TLS records anywhere.
type choppyReader struct {
	r    io.Reader
	size int
}

func (c *choppyReader) Read(p []byte) (int, error) { return c.r.Read(p[:min(len(p), c.size)]) }

// TestReadFromAlignsRecords: a relay whose reads from the target cut inner TLS records
// anywhere (as reads from a socket under a stream do) still switches to direct copy, because
// ReadFrom writes whole records while Vision pads, and the peer receives the same bytes.
func TestReadFromAlignsRecords(t *testing.T) {
	for _, size := range []int{1000, 4096, 20000, 1 << 20} {
		co, so := outerPair(t, "crypto/tls", serverTLSConfig(t))
		cc := ClientConn(co, &Request{UUID: testUUID, Flow: FlowVision, Command: CommandTCP, Dest: Addr{Host: "example.com", Port: 443}}).(*Conn)
		hello := clientHello()
		go cc.Write(hello)
		req, err := ReadRequest(so)
		if err != nil {
			t.Fatalf("ReadRequest: %v", err)
		}
		sc := ServerConn(so, req).(*Conn)
		if _, err := io.ReadFull(sc, make([]byte, len(hello))); err != nil {
			t.Fatalf("server read hello: %v", err)
		}
		down := serverHello(0x1301, true)
		for i := range 20 {
			down = append(down, tlsRecord(0x17, 16000+i)...)
		}
		errc := make(chan error, 1)
		go func() {
			_, err := sc.ReadFrom(&choppyReader{bytes.NewReader(down), size})
			errc <- err
		}()
		got := make([]byte, len(down))
		if _, err := io.ReadFull(cc, got); err != nil {
			t.Fatalf("size %d: client read: %v", size, err)
		}
		if err := <-errc; err != nil {
			t.Fatalf("size %d: ReadFrom: %v", size, err)
		}
		if !bytes.Equal(got, down) {
			t.Errorf("size %d: client got %d bytes differing from the %d sent", size, len(got), len(down))
		}
		if st := sc.state(); !st.wDirect {
			t.Errorf("size %d: server state %+v, want direct writes", size, st)
		}
		if sc.directWritten.Load() == 0 {
			t.Errorf("size %d: nothing written on the raw conn", size)
		}
	}
}
