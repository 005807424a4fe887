package client

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"time"

	"github.com/burrow-vpn/burrow/internal/route"
)

// Router applies route rules to each connection: through the tunnel, direct
// from this machine, or refused. The SOCKS5 and HTTP frontends dial through
// it by name; TUN mode dials by address, and Names (the DNS answers the TUN
// relayed) gives the name back so domain rules apply there too.
type Router struct {
	Rules  *route.Rules   // nil: everything through the tunnel
	Tunnel ContextDialer  // the proxied path (a *Tunnel)
	Direct *net.Dialer    // the direct path; nil uses a plain net.Dialer
	Names  *route.NameMap // TUN mode: address → name from relayed DNS answers
}

// ContextDialer is the proxied path a Router uses.
type ContextDialer interface {
	DialContext(ctx context.Context, network, address string) (net.Conn, error)
}

// ErrBlocked is returned for a destination a block rule matched.
type ErrBlocked struct{ Dest string }

func (e *ErrBlocked) Error() string { return "route: " + e.Dest + " is blocked by a rule" }

// DialContext routes address ("host:port"; a name is not resolved locally
// unless a direct rule sends it around the tunnel).
func (r *Router) DialContext(ctx context.Context, network, address string) (net.Conn, error) {
	host, portStr, err := net.SplitHostPort(address)
	if err != nil {
		return nil, fmt.Errorf("route: destination %q: %w", address, err)
	}
	port, _ := strconv.ParseUint(portStr, 10, 16)
	d := route.Dest{Port: uint16(port)}
	if ip, err := netip.ParseAddr(host); err == nil {
		d.IP = ip.Unmap()
		if r.Names != nil {
			d.Host, _ = r.Names.Lookup(d.IP, time.Now())
		}
	} else {
		d.Host = host
	}
	return r.dial(ctx, network, address, d)
}

// DialAddr routes a flow the TUN captured.
func (r *Router) DialAddr(ctx context.Context, network string, dst netip.AddrPort) (net.Conn, error) {
	return r.DialContext(ctx, network, dst.String())
}

func (r *Router) dial(ctx context.Context, network, address string, d route.Dest) (net.Conn, error) {
	switch r.Rules.Match(d) {
	case route.Block:
		return nil, &ErrBlocked{Dest: address}
	case route.Direct:
		dd := r.Direct
		if dd == nil {
			dd = &net.Dialer{}
		}
		return dd.DialContext(ctx, network, address)
	}
	return r.Tunnel.DialContext(ctx, network, address)
}
