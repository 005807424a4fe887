package censorlab

import (
	"bufio"
	"crypto/sha1"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net/http"
)

// A minimal WebSocket (RFC 6455) for the benign controls: the opening
// handshake over HTTP/1.1 and binary frames, unfragmented, at most
// wsMaxFrame bytes. Enough to put a browser's WebSocket bytes on the wire.

const (
	wsGUID     = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
	wsMaxFrame = 1 << 20
)

func wsAccept(key string) string {
	sum := sha1.Sum([]byte(key + wsGUID))
	return base64.StdEncoding.EncodeToString(sum[:])
}

// wsWrite writes payload as one binary frame; a client's frames are masked.
func wsWrite(w io.Writer, payload []byte, mask []byte) error {
	hdr := []byte{0x82}
	m := byte(0)
	if mask != nil {
		m = 0x80
	}
	switch n := len(payload); {
	case n < 126:
		hdr = append(hdr, m|byte(n))
	case n < 1<<16:
		hdr = binary.BigEndian.AppendUint16(append(hdr, m|126), uint16(n))
	default:
		hdr = binary.BigEndian.AppendUint64(append(hdr, m|127), uint64(n))
	}
	body := payload
	if mask != nil {
		hdr = append(hdr, mask[:4]...)
		body = make([]byte, len(payload))
		for i, b := range payload {
			body[i] = b ^ mask[i%4]
		}
	}
	_, err := w.Write(append(hdr, body...))
	return err
}

// wsRead reads one frame and returns its payload, unmasked.
func wsRead(r io.Reader) ([]byte, error) {
	var h [2]byte
	if _, err := io.ReadFull(r, h[:]); err != nil {
		return nil, err
	}
	if h[0]&0x0f == 0x8 {
		return nil, io.EOF // close frame
	}
	n := uint64(h[1] & 0x7f)
	switch n {
	case 126:
		var b [2]byte
		if _, err := io.ReadFull(r, b[:]); err != nil {
			return nil, err
		}
		n = uint64(binary.BigEndian.Uint16(b[:]))
	case 127:
		var b [8]byte
		if _, err := io.ReadFull(r, b[:]); err != nil {
			return nil, err
		}
		n = binary.BigEndian.Uint64(b[:])
	}
	if n > wsMaxFrame {
		return nil, fmt.Errorf("websocket: frame of %d bytes", n)
	}
	var mask []byte
	if h[1]&0x80 != 0 {
		mask = make([]byte, 4)
		if _, err := io.ReadFull(r, mask); err != nil {
			return nil, err
		}
	}
	p := make([]byte, n)
	if _, err := io.ReadFull(r, p); err != nil {
		return nil, err
	}
	for i := range p {
		if mask != nil {
			p[i] ^= mask[i%4]
		}
	}
	return p, nil
}

// serveWebSocket answers an upgrade and echoes every frame back until the
// client closes.
func serveWebSocket(w http.ResponseWriter, r *http.Request) {
	key := r.Header.Get("Sec-WebSocket-Key")
	hj, ok := w.(http.Hijacker)
	if !ok || key == "" || r.Header.Get("Upgrade") != "websocket" {
		http.Error(w, "not a websocket upgrade", http.StatusBadRequest)
		return
	}
	c, rw, err := hj.Hijack()
	if err != nil {
		return
	}
	defer c.Close()
	fmt.Fprintf(rw, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n\r\n", wsAccept(key))
	if rw.Flush() != nil {
		return
	}
	for {
		p, err := wsRead(rw)
		if err != nil {
			return
		}
		if wsWrite(c, p, nil) != nil {
			return
		}
	}
}

// wsUpgrade sends a Chromium-shaped upgrade request on rw and checks the answer.
func wsUpgrade(rw *bufio.ReadWriter, host, key string) error {
	fmt.Fprintf(rw, "GET /ws HTTP/1.1\r\nHost: %s\r\nConnection: Upgrade\r\nPragma: no-cache\r\nCache-Control: no-cache\r\n"+
		"User-Agent: %s\r\nUpgrade: websocket\r\nOrigin: https://%s\r\nSec-WebSocket-Version: 13\r\n"+
		"Accept-Encoding: gzip, deflate, br, zstd\r\nAccept-Language: en-US,en;q=0.9\r\nSec-WebSocket-Key: %s\r\n"+
		"Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n\r\n", host, chromeUA, host, key)
	if err := rw.Flush(); err != nil {
		return err
	}
	resp, err := http.ReadResponse(rw.Reader, nil)
	if err != nil {
		return fmt.Errorf("websocket upgrade: %w", err)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols || resp.Header.Get("Sec-WebSocket-Accept") != wsAccept(key) {
		return errors.New("websocket upgrade: refused")
	}
	return nil
}
