package server

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"
)

// ErrEgressRefused is returned when a destination falls in an address range
// the egress policy forbids.
var ErrEgressRefused = errors.New("egress refused by policy")

// refusedPrefixes are the ranges a public exit must never dial on a client's
// behalf: otherwise the server is an open door into its operator's network.
var refusedPrefixes = mustPrefixes(
	"0.0.0.0/8",      // "this network", unspecified
	"10.0.0.0/8",     // private
	"100.64.0.0/10",  // carrier-grade NAT
	"127.0.0.0/8",    // loopback
	"169.254.0.0/16", // link-local (cloud metadata lives here)
	"172.16.0.0/12",  // private
	"192.0.0.0/24",   // IETF protocol assignments
	"192.168.0.0/16", // private
	"198.18.0.0/15",  // benchmarking
	"224.0.0.0/4",    // multicast
	"240.0.0.0/4",    // reserved, broadcast
	"::/128",         // unspecified
	"::1/128",        // loopback
	"64:ff9b:1::/48", // local-use NAT64
	"fc00::/7",       // unique local
	"fe80::/10",      // link-local
	"ff00::/8",       // multicast
)

var (
	nat64Prefix = netip.MustParsePrefix("64:ff9b::/96")
	sixToFour   = netip.MustParsePrefix("2002::/16")
)

func mustPrefixes(ss ...string) []netip.Prefix {
	out := make([]netip.Prefix, len(ss))
	for i, s := range ss {
		out[i] = netip.MustParsePrefix(s)
	}
	return out
}

// EgressPolicy decides which destinations the server may dial for clients:
// never the built-in ranges, nor any address of this machine's interfaces,
// one added a moment ago included. The zero value is ready to use; call
// Refuses for a decision. It is safe for concurrent use.
type EgressPolicy struct {
	// AllowPrivate turns the policy off (labs and tests).
	AllowPrivate bool

	ownExtra []netip.Addr
	// listAddrs lists this machine's addresses; nil means the interfaces'
	// (interfaceAddrs). Tests inject their own.
	listAddrs func() ([]netip.Addr, error)

	mu      sync.Mutex
	watch   *addrWatch          // address-change notifications; nil where there are none
	watched bool                // watch was set up (or found unavailable)
	own     map[netip.Addr]bool // last listing of own addresses; nil before the first
}

// NewEgressPolicy returns a policy that also refuses the given addresses
// (for example the server's public address when it sits behind NAT).
func NewEgressPolicy(allowPrivate bool, own ...netip.Addr) *EgressPolicy {
	extra := make([]netip.Addr, len(own))
	for i, a := range own {
		extra[i] = a.Unmap()
	}
	return &EgressPolicy{AllowPrivate: allowPrivate, ownExtra: extra}
}

// Refuses reports whether dialing ip is forbidden.
func (p *EgressPolicy) Refuses(ip netip.Addr) bool {
	if p.AllowPrivate {
		return false
	}
	ip = ip.Unmap()
	if !ip.IsValid() {
		return true
	}
	for _, pfx := range refusedPrefixes {
		if pfx.Contains(ip) {
			return true
		}
	}
	// NAT64 well-known prefix and 6to4 embed IPv4 addresses; judge the embedded one.
	if ip.Is6() {
		b := ip.As16()
		if nat64Prefix.Contains(ip) {
			return p.Refuses(netip.AddrFrom4([4]byte{b[12], b[13], b[14], b[15]}))
		}
		if sixToFour.Contains(ip) {
			return p.Refuses(netip.AddrFrom4([4]byte{b[2], b[3], b[4], b[5]}))
		}
	}
	return p.isOwn(ip)
}

// isOwn reports whether ip is one of this machine's addresses now. The
// listing is cached while the kernel reports no address change (on Linux a
// netlink subscription, read before every decision: the kernel queues the
// notice before `ip addr add` returns, so no dial slips in between). Without
// notifications, an address missing from the cache is looked up afresh. A
// failed listing refuses: the policy fails closed.
func (p *EgressPolicy) isOwn(ip netip.Addr) bool {
	if slices.Contains(p.ownExtra, ip) {
		return true
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.watched {
		// Subscribe before the first listing, so no change falls between.
		p.watch, p.watched = watchAddrs(), true
	}
	stale := p.own == nil || p.watch == nil && !p.own[ip] || p.watch != nil && p.watch.changed()
	if !stale {
		return p.own[ip]
	}
	list := p.listAddrs
	if list == nil {
		list = interfaceAddrs
	}
	addrs, err := list()
	if err != nil {
		p.own = nil
		return true
	}
	p.own = make(map[netip.Addr]bool, len(addrs))
	for _, a := range addrs {
		p.own[a.Unmap()] = true
	}
	return p.own[ip]
}

// interfaceAddrs lists the addresses of this machine's interfaces.
func interfaceAddrs() ([]netip.Addr, error) {
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return nil, fmt.Errorf("list interface addresses: %w", err)
	}
	out := make([]netip.Addr, 0, len(addrs))
	for _, a := range addrs {
		if pfx, err := netip.ParsePrefix(a.String()); err == nil {
			out = append(out, pfx.Addr())
		}
	}
	return out, nil
}

// control is a net.Dialer Control hook: it runs after name resolution, on the
// exact address about to be connected, so a DNS name that resolves to a
// forbidden address (or rebinds to one) is refused too.
func (p *EgressPolicy) control(network, address string, _ syscall.RawConn) error {
	ap, err := netip.ParseAddrPort(address)
	if err != nil {
		return fmt.Errorf("%w: unparsable address %q", ErrEgressRefused, address)
	}
	if p.Refuses(ap.Addr()) {
		return fmt.Errorf("%w: %s is a loopback, private or reserved address, or this server's own", ErrEgressRefused, ap.Addr())
	}
	return nil
}

// Dialer returns a net.Dialer that enforces the policy on every address it
// connects to.
func (p *EgressPolicy) Dialer(timeout time.Duration) *net.Dialer {
	return &net.Dialer{Timeout: timeout, KeepAlive: 30 * time.Second, Control: p.control}
}

// DialContext dials network ("tcp" or "udp") address through the policy.
// A name under .invalid is refused without a lookup, whatever AllowPrivate
// says: that TLD never resolves (RFC 6761), and Burrow's reserved
// destinations live there (status.burrow.invalid, telemetry.burrow.invalid),
// which the server answers itself and must never dial.
func (p *EgressPolicy) DialContext(ctx context.Context, network, address string) (net.Conn, error) {
	if host, _, err := net.SplitHostPort(address); err == nil && isInvalidName(host) {
		return nil, fmt.Errorf("%w: %.80s is under the reserved .invalid domain", ErrEgressRefused, host)
	}
	return p.Dialer(10*time.Second).DialContext(ctx, network, address)
}

// isInvalidName reports whether host is "invalid" or a name under it.
func isInvalidName(host string) bool {
	h := strings.ToLower(strings.TrimSuffix(host, "."))
	return h == "invalid" || strings.HasSuffix(h, ".invalid")
}
