package tunnels

import (
	"context"
	"net"
	"net/netip"
	"sync"

	"github.com/burrow-vpn/burrow/internal/client"
)

// tunnelCache keeps one client tunnel per route to a system's server (a
// cell's censor relay), shared by the cell's dials as one `burrow
// connect` process shares its tunnel between applications: its freeze
// watch, its switch to XHTTP and its telemetry reports ride the same
// connections as its traffic (a tunnel per dial would leave tunnels
// behind that each open their own XHTTP pool). When the cell ends
// (endCell) the tunnel goes with what it learned, so that a later cell
// whose censor gets the same port starts afresh.
type tunnelCache struct {
	open func(via netip.AddrPort) (*client.Tunnel, error)

	mu   sync.Mutex
	tuns map[netip.AddrPort]*client.Tunnel // guarded by mu
}

func newTunnelCache(open func(via netip.AddrPort) (*client.Tunnel, error)) *tunnelCache {
	return &tunnelCache{open: open, tuns: map[netip.AddrPort]*client.Tunnel{}}
}

// get returns the tunnel for via, opening it on first use.
func (c *tunnelCache) get(via netip.AddrPort) (*client.Tunnel, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if t := c.tuns[via]; t != nil {
		return t, nil
	}
	t, err := c.open(via)
	if err != nil {
		return nil, err
	}
	c.tuns[via] = t
	return t, nil
}

// dial opens a stream to target through the tunnel for via: a system's
// Instance.Dial.
func (c *tunnelCache) dial(ctx context.Context, via netip.AddrPort, target string) (net.Conn, error) {
	t, err := c.get(via)
	if err != nil {
		return nil, err
	}
	return t.DialContext(ctx, "tcp", target)
}

// endCell closes and forgets the tunnel for via.
func (c *tunnelCache) endCell(via netip.AddrPort) {
	c.mu.Lock()
	t := c.tuns[via]
	delete(c.tuns, via)
	c.mu.Unlock()
	if t != nil {
		t.Close()
	}
}

// closeAll closes every tunnel.
func (c *tunnelCache) closeAll() {
	c.mu.Lock()
	tuns := c.tuns
	c.tuns = map[netip.AddrPort]*client.Tunnel{}
	c.mu.Unlock()
	for _, t := range tuns {
		t.Close()
	}
}
