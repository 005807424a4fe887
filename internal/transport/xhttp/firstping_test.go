package xhttp

import (
	"bytes"
	"context"
	"encoding/binary"
	"io"
	"net"
	"testing"
	"time"
)

// frame encodes one HTTP/2 frame.
func frame(typ, flags byte, stream uint32, payload []byte) []byte {
	b := make([]byte, 9, 9+len(payload))
	b[0], b[1], b[2] = byte(len(payload)>>16), byte(len(payload)>>8), byte(len(payload))
	b[3], b[4] = typ, flags
	binary.BigEndian.PutUint32(b[5:], stream)
	return append(b, payload...)
}

// TestPingConn plays HTTP/2's side of a pingConn by hand: the PING follows
// the opening flight in a write of its own, an acknowledgement of other
// data is not the one, and the round trip is over only when the reader
// comes back for bytes after the one that carried the acknowledgement
// (HTTP/2 has then handled the server's SETTINGS that came before it).
func TestPingConn(t *testing.T) {
	client, server := net.Pipe()
	defer server.Close()
	pc := newPingConn(newFinConn(client), func() int64 { return 0 })
	defer pc.Close()

	opening := append([]byte(Preface), frame(frameSettings, 0, 0, []byte{0, 2, 0, 0, 0, 0})...)
	wrote := make(chan error, 1)
	go func() {
		_, err := pc.Write(opening)
		wrote <- err
	}()
	server.SetDeadline(time.Now().Add(30 * time.Second))
	got := make([]byte, len(opening)+17)
	if _, err := io.ReadFull(server, got); err != nil {
		t.Fatalf("reading the client's opening: %v", err)
	}
	if err := <-wrote; err != nil {
		t.Fatalf("Write: %v", err)
	}
	if !bytes.Equal(got[:len(opening)], opening) {
		t.Fatalf("opening = %x, want %x", got[:len(opening)], opening)
	}
	ping := got[len(opening):]
	if want := frame(framePing, 0, 0, pc.data[:]); !bytes.Equal(ping, want) {
		t.Fatalf("after the opening: %x, want a PING %x", ping, want)
	}

	other := frame(framePing, flagAck, 0, []byte("12345678"))
	ack := frame(framePing, flagAck, 0, ping[9:])
	stream := append(append(frame(frameSettings, 0, 0, []byte{0, 3, 0, 0, 0, 7}), other...), ack...)
	// The server's bytes arrive in pieces; the acknowledgement's payload is split.
	pieces := [][]byte{stream[:20], stream[20 : len(stream)-3], stream[len(stream)-3:]}
	go func() {
		for _, p := range pieces {
			if _, err := server.Write(p); err != nil {
				return
			}
		}
	}()
	buf := make([]byte, 64)
	var read []byte
	for i := range pieces {
		n, err := pc.Read(buf)
		if err != nil {
			t.Fatalf("Read %d: %v", i, err)
		}
		read = append(read, buf[:n]...)
		select {
		case <-pc.ready:
			t.Fatalf("round trip over after read %d (%d bytes of %d), before HTTP/2 came back for more", i, len(read), len(stream))
		default:
		}
	}
	if !bytes.Equal(read, stream) {
		t.Fatalf("read %x, want the server's bytes unchanged %x", read, stream)
	}
	go pc.Read(buf) // HTTP/2's reader, back for more: it blocks until Close
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := pc.wait(ctx); err != nil {
		t.Fatalf("wait = %v, want the round trip over", err)
	}
}

// TestPingConnFails: a connection that ends before the acknowledgement
// ends the wait with an error, not at the timeout.
func TestPingConnFails(t *testing.T) {
	client, server := net.Pipe()
	pc := newPingConn(newFinConn(client), func() int64 { return 0 })
	defer pc.Close()
	server.Close()
	if _, err := pc.Read(make([]byte, 16)); err == nil {
		t.Fatal("Read after the server closed: no error")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := pc.wait(ctx); err == nil || err == ctx.Err() {
		t.Fatalf("wait = %v, want the read error", err)
	}
}

func TestWholeFrames(t *testing.T) {
	f := frame(frameSettings, 0, 0, make([]byte, 12))
	for _, tc := range []struct {
		p    []byte
		want bool
	}{
		{append([]byte(Preface), f...), true},
		{[]byte(Preface), true},
		{append([]byte(Preface), f[:len(f)-1]...), false},
		{append([]byte(Preface), f[:5]...), false},
		{[]byte(Preface[:10]), false},
	} {
		if got := wholeFrames(tc.p, len(Preface)); got != tc.want {
			t.Errorf("wholeFrames(%d bytes) = %v, want %v", len(tc.p), got, tc.want)
		}
	}
}
