package client

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"

	"golang.org/x/sync/errgroup"

	"github.com/burrow-vpn/burrow/internal/links"
	"github.com/burrow-vpn/burrow/internal/proxy/httpproxy"
	"github.com/burrow-vpn/burrow/internal/proxy/socks5"
	"github.com/burrow-vpn/burrow/internal/route"
)

// Config is what `burrow connect` runs.
type Config struct {
	// Link is the server to connect to.
	Link *links.VLESS
	// SOCKS is the SOCKS5 listen address. Default "127.0.0.1:1080"; "" turns it off.
	SOCKS string
	// HTTP is the HTTP proxy listen address. Default "127.0.0.1:8080"; "" turns it off.
	HTTP string
	// Rules route each connection through the tunnel, direct, or nowhere;
	// nil sends everything through the tunnel. They apply to every frontend.
	Rules *route.Rules
	// TUN turns on full-device mode (Linux, root); nil leaves it off.
	TUN *TUNConfig
	// Logger receives errors; nil discards.
	Logger *slog.Logger
	// NoMux keeps every TCP stream on a connection of its own even when the
	// link says the server carries TCP inside mux (tcpmux=1).
	NoMux bool
	// NoTelemetry turns off the block telemetry (TunnelOptions.NoTelemetry).
	NoTelemetry bool
}

// Client is a running client.
type Client struct {
	cfg    Config
	Tunnel *Tunnel
	socks  net.Listener
	http   net.Listener
	router *Router
	tun    *tunMode // nil unless cfg.TUN
}

// New checks cfg and opens the listeners (so an address in use is reported
// before anything else starts).
func New(ctx context.Context, cfg Config) (*Client, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.SOCKS == "" && cfg.HTTP == "" && cfg.TUN == nil {
		return nil, errors.New("both --socks and --http are off: nothing to serve")
	}
	t, err := NewTunnel(cfg.Link, TunnelOptions{Logger: cfg.Logger, Spare: true, NoMux: cfg.NoMux, NoTelemetry: cfg.NoTelemetry})
	if err != nil {
		return nil, err
	}
	c := &Client{cfg: cfg, Tunnel: t}
	c.router = &Router{Rules: cfg.Rules, Tunnel: t}
	var lc net.ListenConfig
	if cfg.SOCKS != "" {
		if c.socks, err = lc.Listen(ctx, "tcp", cfg.SOCKS); err != nil {
			return nil, listenError("socks", cfg.SOCKS, err)
		}
	}
	if cfg.HTTP != "" {
		if c.http, err = lc.Listen(ctx, "tcp", cfg.HTTP); err != nil {
			if c.socks != nil {
				c.socks.Close()
			}
			return nil, listenError("http", cfg.HTTP, err)
		}
	}
	if cfg.TUN != nil {
		if err := c.openTUN(ctx, *cfg.TUN); err != nil {
			c.closeListeners()
			return nil, err
		}
	}
	return c, nil
}

func (c *Client) closeListeners() {
	for _, l := range []net.Listener{c.socks, c.http} {
		if l != nil {
			l.Close()
		}
	}
}

// ListenError is a proxy listener New could not open.
type ListenError struct {
	Flag string // "socks" or "http": the command-line flag that names the address
	Addr string // the address as given
	Err  error  // from net.Listen
}

func (e *ListenError) Error() string {
	if e.InUse() {
		return fmt.Sprintf("--%s %s: the port is already in use by another program; pick another with --%s HOST:PORT, or --%s '' to turn it off", e.Flag, e.Addr, e.Flag, e.Flag)
	}
	return fmt.Sprintf("--%s %s: %v", e.Flag, e.Addr, e.Err)
}

func (e *ListenError) Unwrap() error { return e.Err }

// InUse reports whether the address is taken by another socket (EADDRINUSE,
// or Windows' WSAEADDRINUSE).
func (e *ListenError) InUse() bool { return errors.Is(e.Err, errAddrInUse) }

func listenError(flag, addr string, err error) error {
	return &ListenError{Flag: flag, Addr: addr, Err: err}
}

// SOCKSAddr and HTTPAddr return the bound addresses (nil when off).
func (c *Client) SOCKSAddr() net.Addr { return addrOf(c.socks) }
func (c *Client) HTTPAddr() net.Addr  { return addrOf(c.http) }

func addrOf(l net.Listener) net.Addr {
	if l == nil {
		return nil
	}
	return l.Addr()
}

// Run serves until ctx ends.
func (c *Client) Run(ctx context.Context) error {
	g, ctx := errgroup.WithContext(ctx)
	if c.socks != nil {
		srv := &socks5.Server{Dialer: c.router, Logger: c.cfg.Logger}
		g.Go(func() error { return serveUntil(ctx, c.socks, srv.Serve, srv.Close) })
	}
	if c.http != nil {
		srv := &httpproxy.Server{Dialer: c.router, Logger: c.cfg.Logger}
		g.Go(func() error { return serveUntil(ctx, c.http, srv.Serve, srv.Close) })
	}
	if c.tun != nil {
		g.Go(func() error { return c.runTUN(ctx) })
	}
	defer c.Tunnel.closeSpare()
	defer c.Tunnel.mux.close()
	defer c.Tunnel.stopReports() // the last telemetry report, a few seconds at most
	return g.Wait()
}

// serveUntil runs serve on l and calls shutdown (which closes the listener
// and every connection) when ctx ends; a stop caused by ctx is not an error.
func serveUntil(ctx context.Context, l net.Listener, serve func(net.Listener) error, shutdown func() error) error {
	stop := context.AfterFunc(ctx, func() { shutdown() })
	defer stop()
	err := serve(l)
	if ctx.Err() != nil {
		return nil
	}
	return err
}
