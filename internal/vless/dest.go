package vless

import (
	"fmt"
	"net/netip"
	"strings"
)

// ErrZone reports an IPv6 address with a zone (fe80::1%eth0): the zone names an interface
// of the machine that wrote it and no address type can carry it. It wraps ErrAddress.
var ErrZone = fmt.Errorf("%w: IPv6 zone", ErrAddress)

// Longest name and label a destination may have: DNS's limits (RFC 1035), which a server
// resolving the name enforces; the wire would take 255 bytes.
const (
	maxName  = 253
	maxLabel = 63
)

// DestAddr returns the Addr for host (a name or an IP literal without brackets) and port
// when a server can be asked for it: an IP without a zone, or a name of 1 to 253 bytes
// (a trailing dot aside) made of labels of 1 to 63 of the characters Xray-core's and
// Burrow's servers accept ([0-9A-Za-z_-]). Anything else is an error wrapping ErrAddress
// (ErrZone for a zone) that says what is wrong, so a client refuses a destination it cannot
// send before it reaches a server (where a mux server would end the whole connection).
func DestAddr(host string, port uint16) (Addr, error) {
	if ip, err := netip.ParseAddr(host); err == nil {
		if ip.Zone() != "" {
			return Addr{}, fmt.Errorf("%w %q cannot be sent through the tunnel (it names an interface of this machine)", ErrZone, "%"+ip.Zone())
		}
		return Addr{IP: ip.Unmap(), Port: port}, nil
	}
	if err := checkName(host); err != nil {
		return Addr{}, err
	}
	return Addr{Host: host, Port: port}, nil
}

// checkName checks a domain name as DestAddr describes.
func checkName(host string) error {
	name := strings.TrimSuffix(host, ".")
	switch {
	case name == "":
		return fmt.Errorf("%w: empty name", ErrAddress)
	case len(name) > maxName:
		return fmt.Errorf("%w: name of %d bytes, longer than %d", ErrAddress, len(name), maxName)
	}
	for i := 0; i < len(name); i++ {
		if c := name[i]; c >= 0x80 {
			return fmt.Errorf("%w: non-ASCII name %q (an international name goes in its xn-- form)", ErrAddress, host)
		} else if !domainChar(c) {
			return fmt.Errorf("%w: character %q not allowed in a name (only letters, digits, '-', '_' and '.')", ErrAddress, c)
		}
	}
	for label := range strings.SplitSeq(name, ".") {
		switch {
		case label == "":
			return fmt.Errorf("%w: empty label in name %q", ErrAddress, host)
		case len(label) > maxLabel:
			return fmt.Errorf("%w: label of %d bytes, longer than %d", ErrAddress, len(label), maxLabel)
		}
	}
	return nil
}

// domainChar reports whether c is one of the characters Xray accepts in a domain.
func domainChar(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c == '-' || c == '.' || c == '_'
}
