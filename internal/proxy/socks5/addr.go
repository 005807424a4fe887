package socks5

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strconv"
)

// Address types.
const (
	atypIPv4   = 0x01
	atypDomain = 0x03
	atypIPv6   = 0x04
)

var (
	errAddrType    = errors.New("address type not supported")
	errEmptyDomain = errors.New("empty domain name")
	errFragment    = errors.New("fragmented datagram")
	errShortHeader = errors.New("short UDP header")
)

var zeroIPv4 = netip.IPv4Unspecified()

// addr is a SOCKS address: a domain name or an IP address, and a port.
// Exactly one of host and ip is set in a parsed address.
type addr struct {
	host string // domain name, as received; never resolved
	ip   netip.Addr
	port uint16
}

// String returns host:port, with IPv6 addresses in brackets.
func (a addr) String() string {
	host := a.host
	if a.ip.IsValid() {
		host = a.ip.String()
	}
	return net.JoinHostPort(host, strconv.Itoa(int(a.port)))
}

// appendTo appends ATYP, ADDR and PORT. A domain longer than 255 bytes cannot
// be encoded and is truncated; parsed domains never are that long.
func (a addr) appendTo(b []byte) []byte {
	switch {
	case a.ip.Is4():
		ip := a.ip.As4()
		b = append(b, atypIPv4)
		b = append(b, ip[:]...)
	case a.ip.IsValid():
		ip := a.ip.As16()
		b = append(b, atypIPv6)
		b = append(b, ip[:]...)
	default:
		host := a.host
		if len(host) > 255 {
			host = host[:255]
		}
		b = append(b, atypDomain, byte(len(host)))
		b = append(b, host...)
	}
	return binary.BigEndian.AppendUint16(b, a.port)
}

// readAddr reads ATYP, ADDR and PORT from r. It reads exactly as many bytes as
// the address holds, so r may be an unbuffered conn.
func readAddr(r io.Reader) (addr, error) {
	var buf [1 + 255 + 2]byte
	if _, err := io.ReadFull(r, buf[:1]); err != nil {
		return addr{}, err
	}
	var a addr
	var rest []byte
	atyp := buf[0]
	switch atyp {
	case atypIPv4:
		rest = buf[:4+2]
	case atypIPv6:
		rest = buf[:16+2]
	case atypDomain:
		if _, err := io.ReadFull(r, buf[:1]); err != nil {
			return addr{}, err
		}
		if buf[0] == 0 {
			return addr{}, errEmptyDomain
		}
		rest = buf[1 : 1+int(buf[0])+2]
	default:
		return addr{}, fmt.Errorf("%w: %#02x", errAddrType, atyp)
	}
	if _, err := io.ReadFull(r, rest); err != nil {
		return addr{}, err
	}
	n := len(rest) - 2
	switch atyp {
	case atypIPv4:
		a.ip = netip.AddrFrom4([4]byte(rest[:4]))
	case atypIPv6:
		a.ip = netip.AddrFrom16([16]byte(rest[:16]))
	default:
		a.host = string(rest[:n])
	}
	a.port = binary.BigEndian.Uint16(rest[n:])
	return a, nil
}

// addrFromNet converts a conn's local address to a SOCKS address; anything
// that is not an IP address (a tunnel's conn, say) becomes 0.0.0.0:0.
func addrFromNet(na net.Addr) addr {
	var ap netip.AddrPort
	switch na := na.(type) {
	case *net.TCPAddr:
		ap = na.AddrPort()
	case *net.UDPAddr:
		ap = na.AddrPort()
	}
	if !ap.Addr().IsValid() {
		return addr{ip: zeroIPv4}
	}
	return addr{ip: ap.Addr().Unmap(), port: ap.Port()}
}

// parseUDPHeader splits a client's UDP datagram into its destination and
// payload. The payload aliases b. Fragments (FRAG != 0) are refused with
// errFragment; RSV is ignored.
func parseUDPHeader(b []byte) (dst addr, payload []byte, err error) {
	if len(b) < 4 {
		return addr{}, nil, errShortHeader
	}
	if b[2] != 0 {
		return addr{}, nil, errFragment
	}
	r := bytes.NewReader(b[3:])
	dst, err = readAddr(r)
	if err != nil {
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			err = errShortHeader
		}
		return addr{}, nil, err
	}
	return dst, b[len(b)-r.Len():], nil
}

// appendUDPHeader appends the UDP header (RSV, FRAG = 0, address) for src.
func appendUDPHeader(b []byte, src addr) []byte {
	return src.appendTo(append(b, 0, 0, 0))
}
