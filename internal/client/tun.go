package client

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"time"

	"golang.org/x/net/dns/dnsmessage"

	"github.com/burrow-vpn/burrow/internal/route"
	"github.com/burrow-vpn/burrow/internal/tun"
)

// TUNConfig turns on full-device mode (Linux, root): every TCP and UDP flow
// of the machine (or network namespace) is carried, routed by Config.Rules.
type TUNConfig struct {
	// Name is the interface name. Default "burrow0".
	Name string
	// MTU of the interface. Default 1500.
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
	// /run/burrow/tun-NAME.json.
	StateFile string
	// ResolvConf is the resolver file pointed at the TUN. Default
	// /etc/resolv.conf.
	ResolvConf string
}

// tunMode is the open device and the undo for the system changes.
type tunMode struct {
	cfg   TUNConfig
	dev   *tun.LinuxDevice
	undo  func() error
	names *route.NameMap
}

// openTUN creates the device and routes the system into it. The tunnel's
// own sockets and direct connections are marked so they bypass the TUN.
func (c *Client) openTUN(cfg TUNConfig) error {
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
		cfg.StateFile = tun.StateFile(cfg.Name)
	}
	// Leftovers of a crashed run first: its blackhole routes would
	// otherwise hide the network from the checks below.
	if err := tun.Restore(cfg.StateFile); err != nil {
		return fmt.Errorf("tun: undo the previous run's changes: %w", err)
	}
	dev, err := tun.Open(cfg.Name, cfg.MTU)
	if err != nil {
		return err
	}
	undo, err := tun.Setup(tun.NetConfig{Device: cfg.Name, KillSwitch: cfg.KillSwitch, StateFile: cfg.StateFile, ResolvConf: cfg.ResolvConf})
	if err != nil {
		dev.Close()
		return err
	}
	c.router.Names = route.NewNameMap()
	c.tun = &tunMode{cfg: cfg, dev: dev, undo: undo, names: c.router.Names}
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
	if uerr := c.tun.undo(); uerr != nil {
		err = errors.Join(err, fmt.Errorf("tun: restore routes and resolver: %w", uerr))
	}
	return err
}

// RestoreTUN undoes what a crashed `connect --tun` left behind (routes,
// rules, resolver), per its state file.
func RestoreTUN(name string) error {
	if name == "" {
		name = tun.DefaultName
	}
	return tun.Restore(tun.StateFile(name))
}

// exchangeDNS relays one query through the tunnel to the configured
// resolver and records the answers, so later connections to those addresses
// can be matched by name. A name a block rule matches gets NXDOMAIN.
func (c *Client) exchangeDNS(ctx context.Context, q []byte) ([]byte, error) {
	var p dnsmessage.Parser
	h, err := p.Start(q)
	if err != nil {
		return nil, fmt.Errorf("dns: parse query: %w", err)
	}
	question, err := p.Question()
	if err != nil {
		return nil, fmt.Errorf("dns: parse query: %w", err)
	}
	name := question.Name.String()
	if a, ok := c.cfg.Rules.MatchName(name); ok && a == route.Block {
		return nxdomain(h, question)
	}
	conn, err := c.Tunnel.DialContext(ctx, "udp", c.tun.cfg.DNS)
	if err != nil {
		return nil, fmt.Errorf("dns: %w", err)
	}
	defer conn.Close()
	if dl, ok := ctx.Deadline(); ok {
		conn.SetDeadline(dl)
	}
	buf := make([]byte, 65535)
	var n int
	for try := 0; ; try++ {
		if _, err := conn.Write(q); err != nil {
			return nil, fmt.Errorf("dns: send: %w", err)
		}
		conn.SetReadDeadline(time.Now().Add(3 * time.Second))
		if n, err = conn.Read(buf); err == nil {
			break
		}
		if try == 2 || ctx.Err() != nil {
			return nil, fmt.Errorf("dns: no answer from %s: %w", c.tun.cfg.DNS, err)
		}
	}
	resp := buf[:n]
	c.recordAnswers(resp)
	return append([]byte(nil), resp...), nil
}

func (c *Client) recordAnswers(resp []byte) {
	var p dnsmessage.Parser
	if _, err := p.Start(resp); err != nil {
		return
	}
	q, err := p.Question()
	if err != nil {
		return
	}
	if err := p.SkipAllQuestions(); err != nil {
		return
	}
	now := time.Now()
	for {
		h, err := p.AnswerHeader()
		if err != nil {
			return
		}
		ttl := time.Duration(h.TTL) * time.Second
		switch h.Type {
		case dnsmessage.TypeA:
			r, err := p.AResource()
			if err != nil {
				return
			}
			c.tun.names.Record(q.Name.String(), netip.AddrFrom4(r.A), ttl, now)
		case dnsmessage.TypeAAAA:
			r, err := p.AAAAResource()
			if err != nil {
				return
			}
			c.tun.names.Record(q.Name.String(), netip.AddrFrom16(r.AAAA), ttl, now)
		default:
			if err := p.SkipAnswer(); err != nil {
				return
			}
		}
	}
}

func nxdomain(h dnsmessage.Header, q dnsmessage.Question) ([]byte, error) {
	h.Response = true
	h.RecursionAvailable = true
	h.RCode = dnsmessage.RCodeNameError
	m := dnsmessage.Message{Header: h, Questions: []dnsmessage.Question{q}}
	return m.Pack()
}
