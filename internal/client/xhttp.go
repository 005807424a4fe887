package client

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync/atomic"
	"time"

	"github.com/burrow-vpn/burrow/internal/camo"
	"github.com/burrow-vpn/burrow/internal/links"
	"github.com/burrow-vpn/burrow/internal/meter"
	"github.com/burrow-vpn/burrow/internal/telemetry"
	"github.com/burrow-vpn/burrow/internal/transport/xhttp"
	"github.com/burrow-vpn/burrow/internal/vless"
)

// Transports a tunnel dials with.
const (
	TransportTCP   = "tcp"   // one TCP + REALITY connection per proxied connection, Vision
	TransportXHTTP = "xhttp" // XHTTP sessions over a few HTTP/2 connections (rotating with a budget)
)

// xhttpConfig is the XHTTP dialer config for the tunnel's link (a tcp
// link's automatic fallback gets the same). The budget and the pool size
// are learned (learn.go): the link's budget= only says the server is
// Burrow's; TunnelOptions.Budget, if set, fixes the budget instead.
func (t *Tunnel) xhttpConfig() xhttp.DialerConfig {
	cfg := xhttp.DialerConfig{
		Dial:     t.dialSecured,
		Host:     t.link.SNI,
		MaxConns: t.opts.MaxConns,
		Logger:   t.logger(),
		Limits:   tunnelLimits{t},
		Pace:     t.opts.Pace,
		Pacer:    t.pacer,
	}
	if cfg.MaxConns == 0 {
		cfg.MaxConns = defaultPoolConns
	}
	if x := t.link.XHTTP; t.link.Type == links.TypeXHTTP && x != nil {
		cfg.Path, cfg.Mode = x.Path, x.Mode
		if x.Host != "" {
			cfg.Host = x.Host
		}
		if cfg.Mode == links.ModeStreamOne {
			cfg.Mode = xhttp.ModePacketUp // stream-one is server side only here
		}
	}
	return cfg
}

var _ xhttp.Observer = tunnelLimits{}

// tunnelLimits are the XHTTP dialer's view of the tunnel's learned limits.
type tunnelLimits struct{ t *Tunnel }

// Budget is TunnelOptions.Budget if set, else the learned one.
func (l tunnelLimits) Budget() int64 {
	if b := l.t.opts.Budget; b != 0 {
		return max(b, 0)
	}
	return l.t.learned.Get(l.t.netKey()).Budget
}
func (l tunnelLimits) MaxConns() int { return l.t.learned.Get(l.t.netKey()).MaxConns }

func (l tunnelLimits) Stalled(rx, budget int64) { l.StalledAfter(rx, 0, budget) }

// StalledAfter records a frozen XHTTP connection; hs of its rx bytes were
// its handshake (xhttp.Observer).
func (l tunnelLimits) StalledAfter(rx, hs, budget int64) {
	learned := l.t.learned.StalledAfter(l.t.netKey(), rx, hs, budget > 0)
	l.t.countFreeze(telemetry.XHTTP, rx, learned)
	if learned {
		l.t.logger().Warn("connections to the server freeze (a censor's byte limit); new connections rotate below it",
			"after_bytes", rx, "budget", l.Budget())
	}
}

// Carried renews the learned budget when a connection carried all of it
// (xhttp.Observer).
func (l tunnelLimits) Carried(budget int64) { l.t.learned.Carried(l.t.netKey(), budget) }

func (l tunnelLimits) Refused(open int) {
	if l.t.learned.Refused(l.t.netKey(), open) {
		l.t.count(telemetry.XHTTP, telemetry.Cap, uint8(min(l.MaxConns(), telemetry.MaxCap)))
		l.t.active(true)
		l.t.logger().Warn("the network refuses more connections to the server; keeping fewer open", "max", l.MaxConns())
	}
}

// xhttpDialer returns the tunnel's XHTTP dialer, made on first use.
func (t *Tunnel) xhttpDialer() (*xhttp.Dialer, error) {
	t.xhMu.Lock()
	defer t.xhMu.Unlock()
	if t.xh == nil {
		d, err := xhttp.NewDialer(t.xhttpConfig())
		if err != nil {
			return nil, fmt.Errorf("client: %w", err)
		}
		t.xh = d
	}
	return t.xh, nil
}

// dialXHTTP opens one XHTTP session and the VLESS request in it (without
// Vision, as Xray does on XHTTP).
func (t *Tunnel) dialXHTTP(ctx context.Context, req *vless.Request) (net.Conn, error) {
	d, err := t.xhttpDialer()
	if err != nil {
		return nil, err
	}
	r := *req
	r.Flow = ""
	ok := t.xhDialOK.Load()
	c, err := d.Dial(ctx)
	if err != nil {
		// The server answered REALITY but not XHTTP (an Xray server's tcp
		// inbound): back to plain connections on this network for a while.
		// A server not reached at all says nothing about XHTTP.
		if t.link.Type != links.TypeXHTTP && t.xhDialOK.Load() != ok && t.learned.revert(t.netKey()) {
			t.logger().Warn("the server does not serve the rotating transport (not Burrow?); back to plain connections")
		}
		return nil, t.fail(fmt.Errorf("xhttp to %s: %w", t.server, err))
	}
	return t.clientConn(c, &r), nil
}

// dialSecured opens a TCP + REALITY connection for the XHTTP dialer and
// reports the bytes received on it.
func (t *Tunnel) dialSecured(ctx context.Context) (net.Conn, func() int64, error) {
	raw, err := t.dialServer(ctx)
	if err != nil {
		return nil, nil, t.fail(fmt.Errorf("cannot reach server %s: %w", t.server, err))
	}
	var rx atomic.Int64
	counted := meter.NewConn(raw,
		meter.Unlimited{AddFunc: func(n int64) { t.down.Add(n); rx.Add(n) }},
		meter.Unlimited{AddFunc: func(n int64) { t.up.Add(n) }})
	hctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	tconn, err := camo.Client(hctx, counted, t.cfg)
	t.countHandshake(telemetry.XHTTP, err)
	if err != nil {
		raw.Close()
		if errors.Is(err, camo.ErrNotReality) {
			return nil, nil, t.fail(fmt.Errorf("server %s: %w", t.server, err))
		}
		return nil, nil, t.fail(fmt.Errorf("handshake with %s: %w", t.server, err))
	}
	t.xhDialOK.Add(1)
	t.connected()
	return tconn, rx.Load, nil
}

// dialServer opens a TCP connection to the server, with opts.Dial if set.
// The XHTTP dialer calls it from its own goroutines too (warm-up and
// rotation connections), not only from DialContext's caller.
func (t *Tunnel) dialServer(ctx context.Context) (c net.Conn, err error) {
	if t.opts.Dial != nil {
		c, err = t.opts.Dial(ctx, "tcp", t.server)
	} else {
		c, err = t.dialer.DialContext(ctx, "tcp", t.server)
	}
	if err == nil {
		k := networkKey(c.LocalAddr(), t.server)
		t.key.Store(&k)
		t.learned.seen(t.server, k)
	}
	return c, err
}

// netKey names the network the tunnel's last connection left from
// (learn.go); before its first, the one the server was last reached from.
func (t *Tunnel) netKey() string {
	if k := t.key.Load(); k != nil {
		return *k
	}
	if k, ok := t.learned.lastKey(t.server); ok {
		return k
	}
	return "?>" + t.server
}

// Transport returns the transport new connections use: a tcp link's
// switches to XHTTP on the network it connects from (fallback.go), unless
// XHTTP failed there since (learn.go).
func (t *Tunnel) Transport() string {
	if t.link.Type == links.TypeXHTTP || !t.opts.NoFallback && t.learned.usesXHTTP(t.netKey()) {
		return TransportXHTTP
	}
	return TransportTCP
}

// XHTTPStats returns the XHTTP dialer's counters (zero before first use).
func (t *Tunnel) XHTTPStats() xhttp.Stats {
	t.xhMu.Lock()
	defer t.xhMu.Unlock()
	if t.xh == nil {
		return xhttp.Stats{}
	}
	return t.xh.Stats()
}

// Close sends the last telemetry report (waiting a few seconds at most;
// telemetry.go), then ends the tunnel's XHTTP sessions, mux connections and
// spare, if any.
func (t *Tunnel) Close() error {
	t.stopReports()
	t.closeSpare()
	t.mux.close()
	t.stopWatch()
	t.xhMu.Lock()
	d := t.xh
	t.xh = nil
	t.xhMu.Unlock()
	if d != nil {
		return d.Close()
	}
	return nil
}
