package mux

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strconv"
)

// Session statuses (frame byte 2).
const (
	statusNew       = 0x01
	statusKeep      = 0x02
	statusEnd       = 0x03
	statusKeepAlive = 0x04
)

// Option bits (frame byte 3).
const (
	optData  = 0x01
	optError = 0x02
)

// Target networks.
const (
	netTCP = 0x01
	netUDP = 0x02
)

// maxMeta is Xray's limit on the metadata length.
const maxMeta = 512

// ErrFrame reports a malformed mux.cool frame; the whole mux connection is unusable after it.
var ErrFrame = errors.New("mux: malformed frame")

// frame is one decoded mux.cool frame.
type frame struct {
	id       uint16
	status   byte
	option   byte
	network  byte   // netTCP/netUDP when the frame names a destination
	dest     string // host:port, "" if the frame names none
	globalID [8]byte
	size     int    // length of the data when option has optData
	data     []byte // the data, once read (aliases the reader's buffer)
	destErr  error  // why the destination the frame carries cannot be used (dest is "")
}

// frameReader decodes frames from a stream; data slices are valid until the next read.
type frameReader struct {
	r    io.Reader
	l    [2]byte // a length being read
	meta [maxMeta]byte
	data []byte
}

// read reads a whole frame.
func (fr *frameReader) read() (*frame, error) {
	f := new(frame)
	if err := fr.next(f); err != nil {
		return nil, err
	}
	if err := fr.readData(f); err != nil {
		return nil, err
	}
	return f, nil
}

// next reads a frame's metadata and data length into f; its f.size bytes of data are next
// on the stream, for readData or for the caller to read or skip.
func (fr *frameReader) next(f *frame) error {
	l := &fr.l
	if _, err := io.ReadFull(fr.r, l[:]); err != nil {
		return err
	}
	n := int(binary.BigEndian.Uint16(l[:]))
	if n > maxMeta {
		return fmt.Errorf("%w: metadata length %d", ErrFrame, n)
	}
	meta := fr.meta[:n]
	if _, err := io.ReadFull(fr.r, meta); err != nil {
		return noEOF(err)
	}
	if err := parseMeta(meta, f); err != nil {
		return err
	}
	if f.option&optData != 0 {
		if _, err := io.ReadFull(fr.r, l[:]); err != nil {
			return noEOF(err)
		}
		f.size = int(binary.BigEndian.Uint16(l[:]))
	}
	return nil
}

// readData reads the data of f, which next returned, into the reader's buffer.
func (fr *frameReader) readData(f *frame) error {
	if f.option&optData == 0 {
		return nil
	}
	if cap(fr.data) < f.size {
		fr.data = make([]byte, f.size, max(f.size, 2048))
	}
	f.data = fr.data[:f.size]
	if _, err := io.ReadFull(fr.r, f.data); err != nil {
		return noEOF(err)
	}
	return nil
}

func noEOF(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}

// errDest reports a New (or UDP Keep) frame whose destination cannot be used although the
// frame itself is whole: only that session is refused, the connection goes on.
var errDest = errors.New("mux: invalid destination")

// parseMeta decodes the metadata into f (all of whose fields it sets) as Xray's
// FrameMetadata.UnmarshalFromBuffer does (without the reverse-proxy source/local extension).
// Only metadata too short to name the session and its option is an error: the length
// prefixes still frame what follows, so a destination that cannot be decoded (an unknown
// network or address type, a short address, a domain Xray would refuse) is left in
// f.destErr for the session alone.
func parseMeta(m []byte, f *frame) error {
	if len(m) < 4 {
		return fmt.Errorf("%w: metadata of %d bytes", ErrFrame, len(m))
	}
	*f = frame{id: binary.BigEndian.Uint16(m), status: m[2], option: m[3]}
	rest := m[4:]
	if f.status == statusNew || f.status == statusKeep && len(rest) > 0 && rest[0] == netUDP {
		f.destErr = parseDest(rest, f)
	}
	return nil
}

// parseDest decodes the network byte, destination and XUDP global id that follow a frame's
// option byte into f; on error it leaves f.network and f.dest zero.
func parseDest(rest []byte, f *frame) error {
	if len(rest) < 4 {
		return fmt.Errorf("%w: short destination", errDest)
	}
	network := rest[0]
	if network != netTCP && network != netUDP {
		return fmt.Errorf("%w: network %d", errDest, network)
	}
	dest, n, err := parseAddrPort(rest[1:])
	if err != nil {
		return err
	}
	f.network, f.dest = network, dest
	rest = rest[1+n:]
	if f.status == statusNew && f.option&optData != 0 && network == netUDP && len(rest) >= 8 {
		copy(f.globalID[:], rest)
	}
	return nil
}

// parseAddrPort reads port (2 bytes BE), type (1 IPv4, 2 domain, 3 IPv6) and address, and
// returns host:port and the bytes used.
func parseAddrPort(b []byte) (string, int, error) {
	if len(b) < 4 {
		return "", 0, fmt.Errorf("%w: short address", errDest)
	}
	port := strconv.Itoa(int(binary.BigEndian.Uint16(b)))
	switch b[2] {
	case 1:
		if len(b) < 7 {
			return "", 0, fmt.Errorf("%w: short IPv4", errDest)
		}
		return net.JoinHostPort(netip.AddrFrom4([4]byte(b[3:7])).String(), port), 7, nil
	case 3:
		if len(b) < 19 {
			return "", 0, fmt.Errorf("%w: short IPv6", errDest)
		}
		return net.JoinHostPort(netip.AddrFrom16([16]byte(b[3:19])).Unmap().String(), port), 19, nil
	case 2:
		n := int(b[3])
		if n == 0 || len(b) < 4+n {
			return "", 0, fmt.Errorf("%w: bad domain length", errDest)
		}
		d := string(b[4 : 4+n])
		if ip, err := netip.ParseAddr(d); err == nil && ip.Zone() == "" {
			return net.JoinHostPort(ip.Unmap().String(), port), 4 + n, nil
		}
		if !domainChars(d) {
			return "", 0, fmt.Errorf("%w: bad domain character", errDest)
		}
		return net.JoinHostPort(d, port), 4 + n, nil
	default:
		return "", 0, fmt.Errorf("%w: address type %d", errDest, b[2])
	}
}

// domainChars reports whether d has only the characters Xray accepts in a domain
// ([0-9A-Za-z._-]).
func domainChars(d string) bool {
	for i := 0; i < len(d); i++ {
		c := d[i]
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c == '-' || c == '.' || c == '_') {
			return false
		}
	}
	return true
}

// appendAddrPort encodes an IP source address of a response packet.
func appendAddrPort(b []byte, ap netip.AddrPort) []byte {
	b = binary.BigEndian.AppendUint16(b, ap.Port())
	ip := ap.Addr().Unmap()
	if ip.Is4() {
		v := ip.As4()
		return append(append(b, 1), v[:]...)
	}
	v := ip.As16()
	return append(append(b, 3), v[:]...)
}

// Header sizes: a Keep frame of a TCP stream, the longest frame header a server sends (a
// Keep frame from an IPv6 source), and the longest New frame header a client sends (a
// 255-byte domain).
const (
	keepHeader   = 8
	maxSrcHeader = 2 + 4 + 1 + 19 + 2
	maxNewHeader = 2 + 4 + 1 + 2 + 1 + 1 + 255 + 2
)

// appendFrame appends a frame: metadata (id, status, option, and for UDP data from src, the
// network byte and source address), then the data length and data if option has optData.
func appendFrame(b []byte, id uint16, status, option byte, src netip.AddrPort, data []byte) []byte {
	b = appendHeader(b, id, status, option, src, len(data))
	if option&optData != 0 {
		b = append(b, data...)
	}
	return b
}

// appendHeader appends what appendFrame puts before the data, for n bytes of data.
func appendHeader(b []byte, id uint16, status, option byte, src netip.AddrPort, n int) []byte {
	start := len(b)
	b = append(b, 0, 0)
	b = binary.BigEndian.AppendUint16(b, id)
	b = append(b, status, option)
	if src.IsValid() {
		b = append(b, netUDP)
		b = appendAddrPort(b, src)
	}
	binary.BigEndian.PutUint16(b[start:], uint16(len(b)-start-2))
	if option&optData != 0 {
		b = binary.BigEndian.AppendUint16(b, uint16(n))
	}
	return b
}

// appendKeeps appends Keep frames of at most 8 KiB carrying the start of p, up to limit
// bytes of it (at least one frame, empty if p is), and returns how many bytes of p they
// carry.
func appendKeeps(b []byte, id uint16, p []byte, limit int) ([]byte, int) {
	n := 0
	for first := true; first || n < len(p) && n < limit; first = false {
		chunk := p[n:min(len(p), n+chunkSize, limit)]
		b = appendFrame(b, id, statusKeep, optData, netip.AddrPort{}, chunk)
		n += len(chunk)
	}
	return b, n
}

// keepsSize is the length of the Keep frames appendKeeps makes for n bytes.
func keepsSize(n int) int { return n + keepHeader*max(1, (n+chunkSize-1)/chunkSize) }

// appendDest appends a frame's destination as a client sends it in a New frame: the network
// byte, then port and address (an IP as atype 1 or 3, anything else as a domain of the
// characters a server accepts; an IPv6 zone cannot be sent).
func appendDest(b []byte, network byte, address string) ([]byte, error) {
	host, port, err := net.SplitHostPort(address)
	if err != nil {
		return nil, fmt.Errorf("mux: address %q: %w", address, err)
	}
	p, err := strconv.ParseUint(port, 10, 16)
	if err != nil {
		return nil, fmt.Errorf("mux: address %q: bad port", address)
	}
	b = append(b, network)
	if ip, err := netip.ParseAddr(host); err == nil && ip.Zone() == "" {
		return appendAddrPort(b, netip.AddrPortFrom(ip, uint16(p))), nil
	}
	if host == "" || len(host) > 255 || !domainChars(host) {
		return nil, fmt.Errorf("mux: address %q: bad host (a server refuses it)", address)
	}
	b = binary.BigEndian.AppendUint16(b, uint16(p))
	b = append(b, 2, byte(len(host)))
	return append(b, host...), nil
}

// appendNewFrame appends a client's New frame for network and address, with data if data
// is not nil.
func appendNewFrame(b []byte, id uint16, network byte, address string, data []byte) ([]byte, error) {
	start := len(b)
	b = append(b, 0, 0)
	b = binary.BigEndian.AppendUint16(b, id)
	var opt byte
	if data != nil {
		opt = optData
	}
	b = append(b, statusNew, opt)
	b, err := appendDest(b, network, address)
	if err != nil {
		return nil, err
	}
	binary.BigEndian.PutUint16(b[start:], uint16(len(b)-start-2))
	if data != nil {
		b = binary.BigEndian.AppendUint16(b, uint16(len(data)))
		b = append(b, data...)
	}
	return b, nil
}
