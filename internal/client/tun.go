package client

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"time"

	"github.com/burrow-vpn/burrow/internal/route"
	"github.com/burrow-vpn/burrow/internal/tun"
)

// TUNConfig turns on full-device mode (Linux, root): every TCP and UDP flow
// of the machine (or network namespace) is carried, routed by Config.Rules.
type TUNConfig struct {
	// Name is the interface name. Default "burrow0".
	Name string
	// MTU of the interface. Default 9000: between the kernel and the
	// userspace stack, fewer and larger packets cost less CPU.
	MTU int
	// KillSwitch keeps blackhole routes in place that outlive the process,
	// so nothing leaves in the clear if burrow dies; the next start removes
	// them. (While burrow runs, a flow the tunnel cannot carry is always
	// refused, never sent around it.)
	KillSwitch bool
	// DNS is the resolver every query is relayed to, through the tunnel
	// (it is never contacted directly). Default "1.1.1.1:53".
	DNS string
	// StateFile records the changes to undo after a crash. Default
	// /run/burrow/tun-NETNS-NAME.json, one per network namespace.
	StateFile string
	// ResolvConf is the resolver file pointed at the TUN. Default
	// /etc/resolv.conf; where systemd-resolved manages it, the TUN's link
	// settings are used instead and the file is not written.
	ResolvConf string
}

// tunMode is the open device and the undo for the system changes.
type tunMode struct {
	cfg   TUNConfig
	dev   *tun.LinuxDevice
	undo  func() error
	names *route.NameMap
	dns   *dnsRelay
}

// openTUN creates the device and routes the system into it. The tunnel's
// own sockets and direct connections are marked so they bypass the TUN.
func (c *Client) openTUN(ctx context.Context, cfg TUNConfig) error {
	if cfg.Name == "" {
		cfg.Name = tun.DefaultName
	}
	if cfg.MTU == 0 {
		cfg.MTU = tun.DefaultMTU
	}
	if cfg.DNS == "" {
		cfg.DNS = "1.1.1.1:53"
	}
	if _, _, err := net.SplitHostPort(cfg.DNS); err != nil {
		return fmt.Errorf("--dns %q: want HOST:PORT", cfg.DNS)
	}
	ctl := markControl(tun.DefaultMark)
	c.Tunnel.dialer.Control = ctl
	c.router.Direct = &net.Dialer{Timeout: 10 * time.Second, Control: ctl}
	if cfg.StateFile == "" {
		f, err := tun.StateFile(cfg.Name)
		if err != nil {
			return err
		}
		cfg.StateFile = f
	}
	// Leftovers of a crashed run first: its blackhole routes would
	// otherwise hide the network from the checks below.
	if err := tun.Restore(cfg.StateFile); err != nil {
		if errors.Is(err, tun.ErrRunning) {
			return err
		}
		if errors.Is(err, os.ErrPermission) {
			return errors.New("tun: --tun needs root (or CAP_NET_ADMIN) to change routes and the resolver; run with sudo")
		}
		return fmt.Errorf("tun: undo the previous run's changes: %w", err)
	}
	// A server given by name is resolved now, outside the TUN, and pinned:
	// once everything routes into the TUN, resolving it would need the
	// tunnel itself.
	if host, port, err := net.SplitHostPort(c.Tunnel.server); err == nil && net.ParseIP(host) == nil {
		ips, err := net.DefaultResolver.LookupNetIP(ctx, "ip", host)
		if err != nil || len(ips) == 0 {
			return fmt.Errorf("tun: resolve the server %s before routing into the TUN: %v", host, err)
		}
		c.Tunnel.server = net.JoinHostPort(ips[0].Unmap().String(), port)
	}
	dev, err := tun.Open(cfg.Name, cfg.MTU)
	if err != nil {
		return err
	}
	undo, err := tun.Setup(tun.NetConfig{Device: cfg.Name, KillSwitch: cfg.KillSwitch,
		StateFile: cfg.StateFile, ResolvConf: cfg.ResolvConf, Logger: c.cfg.Logger})
	if err != nil {
		dev.Close()
		return err
	}
	c.router.Names = route.NewNameMap()
	resolver := cfg.DNS
	c.tun = &tunMode{cfg: cfg, dev: dev, undo: undo, names: c.router.Names,
		dns: newDNSRelay(func(ctx context.Context) (net.Conn, error) { return c.Tunnel.DialContext(ctx, "udp", resolver) })}
	return nil
}

// runTUN carries the device's flows until ctx ends, then restores the
// system.
func (c *Client) runTUN(ctx context.Context) error {
	st, err := tun.NewStack(c.tun.dev, tun.Config{Dial: c.router.DialAddr, DNS: c.exchangeDNS, Logger: c.cfg.Logger})
	if err != nil {
		c.tun.dev.Close()
		return errors.Join(err, c.tun.undo())
	}
	err = st.Run(ctx)
	c.tun.dns.Close()
	if uerr := c.tun.undo(); uerr != nil {
		err = errors.Join(err, fmt.Errorf("tun: restore routes and resolver: %w", uerr))
	}
	return err
}

// RestoreTUN undoes what a crashed `connect --tun` on interface name left
// behind in this network namespace (routes, rules, resolver), per its
// state file.
func RestoreTUN(name string) error {
	if name == "" {
		name = tun.DefaultName
	}
	f, err := tun.StateFile(name)
	if err != nil {
		return err
	}
	return tun.Restore(f)
}
