package vless

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strconv"
	"unicode/utf8"
)

// FlowVision is the only flow (request addon) Burrow and Xray-core speak besides "".
const FlowVision = "xtls-rprx-vision"

// Version is the VLESS protocol version byte of requests and responses.
const Version = 0

// Command is the VLESS request command byte.
type Command byte

// Request commands. Xray-core also defines 4 (reverse proxy, "v1.rvs.cool"), which Burrow rejects.
const (
	CommandTCP Command = 1
	CommandUDP Command = 2
	CommandMux Command = 3
)

// MuxHost is the destination Xray-core reports for CommandMux requests; the address is not on the wire.
const MuxHost = "v1.mux.cool"

// Address types as VLESS numbers them (not SOCKS5's 1/3/4).
const (
	atypIPv4   = 1
	atypDomain = 2
	atypIPv6   = 3
)

// Errors callers may branch on.
var (
	ErrVersion     = errors.New("vless: unsupported version")
	ErrCommand     = errors.New("vless: unsupported command")
	ErrFlow        = errors.New("vless: unsupported flow")
	ErrAddress     = errors.New("vless: invalid address")
	ErrVisionUDP   = errors.New("vless: " + FlowVision + " does not carry UDP")
	errAddonsProto = errors.New("malformed addons protobuf")
)

// Addr is a request destination: a domain (Host) or an IP, and a port.
// Host takes precedence over IP when both are set.
type Addr struct {
	Host string // domain, or empty
	IP   netip.Addr
	Port uint16
}

// String returns host:port (IPv6 in brackets).
func (a Addr) String() string {
	h := a.Host
	if h == "" && a.IP.IsValid() {
		h = a.IP.String()
	}
	return net.JoinHostPort(h, strconv.Itoa(int(a.Port)))
}

// Request is a decoded VLESS request header.
type Request struct {
	UUID    [16]byte
	Flow    string // "" or FlowVision
	Command Command
	Dest    Addr // zero for CommandMux
}

// String describes the request without the UUID (user IDs are never printed).
func (r *Request) String() string {
	if r.Command == CommandMux {
		return "mux"
	}
	n := "tcp"
	if r.Command == CommandUDP {
		n = "udp"
	}
	return n + " " + r.Dest.String()
}

// ReadRequest reads one request header from r (the TLS conn) and never reads past it, so a
// Vision first block following in the same record stays in r. It checks the version, command,
// flow and address syntax; it does not authenticate the UUID.
func ReadRequest(r io.Reader) (*Request, error) {
	var b [18]byte
	if _, err := io.ReadFull(r, b[:18]); err != nil {
		return nil, fmt.Errorf("vless: read request: %w", err)
	}
	if b[0] != Version {
		return nil, fmt.Errorf("%w %d", ErrVersion, b[0])
	}
	req := &Request{}
	copy(req.UUID[:], b[1:17])
	flow, err := readAddons(r, int(b[17]))
	if err != nil {
		return nil, fmt.Errorf("vless: read request addons: %w", err)
	}
	req.Flow = flow
	if _, err := io.ReadFull(r, b[:1]); err != nil {
		return nil, fmt.Errorf("vless: read request command: %w", err)
	}
	req.Command = Command(b[0])
	switch req.Command {
	case CommandMux:
		req.Dest = Addr{Host: MuxHost}
	case CommandTCP, CommandUDP:
		dest, err := readAddrPort(r)
		if err != nil {
			return nil, fmt.Errorf("vless: read request address: %w", err)
		}
		req.Dest = dest
	default:
		return nil, fmt.Errorf("%w %d", ErrCommand, req.Command)
	}
	switch req.Flow {
	case "":
	case FlowVision:
		if req.Command == CommandUDP {
			return nil, ErrVisionUDP
		}
	default:
		return nil, fmt.Errorf("%w %q", ErrFlow, req.Flow)
	}
	return req, nil
}

// MarshalBinary encodes the request header exactly as Xray-core does.
func (r *Request) MarshalBinary() ([]byte, error) { return r.AppendBinary(nil) }

// AppendBinary appends the encoded request header to b.
func (r *Request) AppendBinary(b []byte) ([]byte, error) {
	return r.appendWire(b, r.Flow)
}

// appendWire encodes the header with flow on the wire (which may differ from r.Flow for UDP).
func (r *Request) appendWire(b []byte, flow string) ([]byte, error) {
	b = append(b, Version)
	b = append(b, r.UUID[:]...)
	b = appendAddons(b, flow)
	b = append(b, byte(r.Command))
	switch r.Command {
	case CommandMux:
		return b, nil
	case CommandTCP, CommandUDP:
		return appendAddrPort(b, r.Dest)
	default:
		return nil, fmt.Errorf("%w %d", ErrCommand, r.Command)
	}
}

// appendAddons writes the addons length byte and the protobuf Addons{Flow: 1} message.
// Like Xray-core, only FlowVision is ever sent; any other flow is sent as no addons.
func appendAddons(b []byte, flow string) []byte {
	if flow != FlowVision {
		return append(b, 0)
	}
	// field 1 (Flow), wire type 2: tag 0x0a, varint length (< 128 here), bytes.
	b = append(b, byte(2+len(flow)), 0x0a, byte(len(flow)))
	return append(b, flow...)
}

// readAddons reads n bytes of protobuf Addons{string Flow = 1; bytes Seed = 2} and returns Flow.
// Unknown fields, and known fields with another wire type, are skipped as protobuf-go does; a
// non-UTF-8 Flow is an error (proto3 string).
func readAddons(r io.Reader, n int) (string, error) {
	if n == 0 {
		return "", nil
	}
	var buf [255]byte
	p := buf[:n]
	if _, err := io.ReadFull(r, p); err != nil {
		return "", err
	}
	flow, _, err := parseAddons(p)
	return flow, err
}

// parseAddons returns the addons' Flow, and the refusal reason a Burrow server puts into a
// response's addons (refusal.go).
func parseAddons(p []byte) (flow string, refusal Refusal, err error) {
	for len(p) > 0 {
		key, k := uvarint(p)
		if k <= 0 || key>>3 == 0 || key>>3 > 1<<29-1 {
			return "", 0, errAddonsProto
		}
		p = p[k:]
		field, wt := key>>3, key&7
		switch wt {
		case 0: // varint
			v, k := uvarint(p)
			if k <= 0 {
				return "", 0, errAddonsProto
			}
			p = p[k:]
			if field == RefusalField {
				refusal = Refusal(min(v, 1<<32-1))
			}
		case 1: // 64-bit
			if len(p) < 8 {
				return "", 0, errAddonsProto
			}
			p = p[8:]
		case 5: // 32-bit
			if len(p) < 4 {
				return "", 0, errAddonsProto
			}
			p = p[4:]
		case 2: // length-delimited
			l, k := uvarint(p)
			if k <= 0 || l > uint64(len(p)-k) {
				return "", 0, errAddonsProto
			}
			v := p[k : k+int(l)]
			p = p[k+int(l):]
			if field == 1 {
				if !utf8.Valid(v) {
					return "", 0, errAddonsProto
				}
				flow = string(v)
			}
		default: // groups (3, 4) and reserved types
			return "", 0, errAddonsProto
		}
	}
	return flow, refusal, nil
}

// uvarint decodes a protobuf varint; k <= 0 means malformed or truncated.
func uvarint(p []byte) (v uint64, k int) {
	for i := 0; i < len(p) && i < 10; i++ {
		c := p[i]
		if i == 9 && c > 1 {
			return 0, -1
		}
		v |= uint64(c&0x7f) << (7 * i)
		if c < 0x80 {
			return v, i + 1
		}
	}
	return 0, 0
}

// readAddrPort reads port (2 bytes, big endian), address type and address: Xray's
// "port then address" order with VLESS type numbers.
func readAddrPort(r io.Reader) (Addr, error) {
	var b [256]byte
	if _, err := io.ReadFull(r, b[:4]); err != nil {
		return Addr{}, err
	}
	a := Addr{Port: uint16(b[0])<<8 | uint16(b[1])}
	switch b[2] {
	case atypIPv4:
		if _, err := io.ReadFull(r, b[4:7]); err != nil {
			return Addr{}, err
		}
		a.IP = netip.AddrFrom4([4]byte(b[3:7]))
	case atypIPv6:
		if _, err := io.ReadFull(r, b[4:19]); err != nil {
			return Addr{}, err
		}
		a.IP = netip.AddrFrom16([16]byte(b[3:19])).Unmap()
	case atypDomain:
		n := int(b[3])
		if n == 0 {
			return Addr{}, fmt.Errorf("%w: empty domain", ErrAddress)
		}
		if _, err := io.ReadFull(r, b[:n]); err != nil {
			return Addr{}, err
		}
		return domainAddr(string(b[:n]), a.Port)
	default:
		return Addr{}, fmt.Errorf("%w: type %d", ErrAddress, b[2])
	}
	return a, nil
}

// domainAddr turns a wire domain into an Addr the way Xray does: IP literals (optionally in
// brackets) become IPs; otherwise only [0-9A-Za-z._-] are allowed.
func domainAddr(d string, port uint16) (Addr, error) {
	if c := d[0]; c == '[' || (c >= '0' && c <= '9') {
		s := d
		if len(s) > 1 && s[0] == '[' && s[len(s)-1] == ']' {
			s = s[1 : len(s)-1]
		}
		if ip, err := netip.ParseAddr(s); err == nil && ip.Zone() == "" {
			return Addr{IP: ip.Unmap(), Port: port}, nil
		}
	}
	for i := 0; i < len(d); i++ {
		if !domainChar(d[i]) {
			return Addr{}, fmt.Errorf("%w: bad domain character", ErrAddress)
		}
	}
	return Addr{Host: d, Port: port}, nil
}

func appendAddrPort(b []byte, a Addr) ([]byte, error) {
	b = append(b, byte(a.Port>>8), byte(a.Port))
	ip := a.IP
	if a.Host != "" {
		if p, err := netip.ParseAddr(a.Host); err == nil && p.Zone() == "" {
			ip = p
		} else {
			if len(a.Host) > 255 {
				return nil, fmt.Errorf("%w: domain longer than 255 bytes", ErrAddress)
			}
			b = append(b, atypDomain, byte(len(a.Host)))
			return append(b, a.Host...), nil
		}
	}
	ip = ip.Unmap()
	switch {
	case ip.Is4():
		v := ip.As4()
		b = append(b, atypIPv4)
		return append(b, v[:]...), nil
	case ip.Is6() && ip.Zone() == "":
		v := ip.As16()
		b = append(b, atypIPv6)
		return append(b, v[:]...), nil
	default:
		return nil, fmt.Errorf("%w: no host or IP", ErrAddress)
	}
}

// responseHeader is what a server sends before its first payload: version 0, no addons.
var responseHeader = []byte{Version, 0}
