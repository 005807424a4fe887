// Package client is Burrow's client: the tunnel dialer that opens REALITY +
// VLESS connections to the server, the local SOCKS5 and HTTP frontends and the
// TUN device (tun.go) that feed it through the split-routing Router
// (router.go: proxy, direct or block per rule), and the status the CLI shows.
//
//	app ─► socks5 / httpproxy / TUN ─► Router ─► Tunnel.DialContext
//	    ├─ tcp:   TCP ─► camo.Client (REALITY, uTLS) ─► vless.ClientConn (Vision)
//	    └─ xhttp: xhttp.Dialer session (HTTP/2 over one or two TCP+REALITY
//	              connections, rotated below a freeze it has seen) ─► vless.ClientConn
//
// With tcp every proxied connection is its own tunnel connection, so a
// server restart or a network drop only fails the connections open at that
// moment; each new one dials again. While the client is active one spare
// connection is kept handshaked (spare.go), so a new stream does not wait
// for a REALITY handshake. The link's type picks the transport; a tcp link whose
// connections freeze, or whose handshakes are reset, switches to the rotating
// transport on its own (fallback.go) and logs it. The network's limits (a
// freeze budget, a connection cap) are learned, not configured (learn.go), and
// the outcomes behind them are reported, anonymously, to the server
// (telemetry.go) unless TunnelOptions.NoTelemetry.
package client

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/burrow-vpn/burrow/internal/camo"
	"github.com/burrow-vpn/burrow/internal/links"
	"github.com/burrow-vpn/burrow/internal/meter"
	"github.com/burrow-vpn/burrow/internal/telemetry"
	"github.com/burrow-vpn/burrow/internal/transport/xhttp"
	"github.com/burrow-vpn/burrow/internal/vless"
)

// State is the tunnel's health as the user sees it.
type State int32

const (
	StateConnecting State = iota // no handshake has succeeded yet; LastError says why the last one failed
	StateConnected               // the last handshake succeeded
	StateRetrying                // a handshake succeeded before, the last one failed; new connections retry
	StateRefused                 // the server refuses the link (revoked, expired, quota used up; refusal.go)
)

func (s State) String() string {
	switch s {
	case StateConnected:
		return "connected"
	case StateRetrying:
		return "reconnecting"
	case StateRefused:
		return "refused"
	}
	return "connecting"
}

// Tunnel dials proxied connections through one Burrow (or Xray-core) server.
type Tunnel struct {
	link   *links.VLESS
	server string
	cfg    camo.ClientConfig
	dialer net.Dialer

	state     atomic.Int32
	up, down  atomic.Int64 // bytes on the wire to and from the server
	lastErrMu sync.Mutex
	lastErr   error // guarded by lastErrMu

	opts  TunnelOptions // read-only after NewTunnel
	pacer *xhttp.Pacer  // shared by every tunnel to the server (pace.go); nil: pacing off

	xhMu     sync.Mutex
	xh       *xhttp.Dialer // guarded by xhMu; made on first XHTTP dial
	xhDialOK atomic.Int64  // REALITY handshakes of the XHTTP dialer that succeeded
	watcher  watcher
	spare    spare   // the warm spare connection (spare.go)
	mux      muxPool // mux connections for plain-text streams (muxpool.go)
	refused  refusals
	learned  *Learned               // opts.Learned, or the tunnel's own
	key      atomic.Pointer[string] // the network of the last connection (learn.go)
	tally    telemetry.Tally        // counts for the next report (telemetry.go)
	reports  reporter
}

// TunnelOptions are a Tunnel's settings, read once by NewTunnel; the zero
// value works.
type TunnelOptions struct {
	// Logger receives the transport's warnings (the automatic switch to
	// the rotating transport); nil means slog.Default().
	Logger *slog.Logger
	// MaxConns caps the XHTTP transport's concurrent TCP connections to
	// the server. 0 = default (2, lowered further when the network refuses
	// more; learn.go).
	MaxConns int
	// Budget fixes XHTTP's rotation budget (bytes per connection towards
	// the client) instead of learning it; -1 turns rotation off, 0 (the
	// default) learns it from freezes (learn.go).
	Budget int64
	// Pace is how fast the XHTTP transport may open connections while it
	// rotates below a freeze (internal/transport/xhttp/pace.go); the zero
	// value is the default pacing, under a censor's connection-rate rule.
	// Tests of rotation itself turn it off.
	Pace xhttp.Pace
	// NoFallback keeps plain (tcp) links on plain connections even when
	// they freeze.
	NoFallback bool
	// Spare keeps one handshaken connection ready while the tunnel is in
	// use, so a new proxied connection skips the REALITY handshake
	// (spare.go). Off by default; New turns it on. Close ends it.
	Spare bool
	// NoMux keeps every TCP stream on a Vision connection of its own even
	// when the link says the server carries TCP inside mux (tcpmux=1).
	NoMux bool
	// Learned keeps what the tunnel learns about the network's limits
	// (learn.go); tunnels sharing one share what they learn. nil gives the
	// tunnel its own.
	Learned *Learned
	// NoTelemetry turns off the block telemetry: the anonymous counts of
	// connection outcomes (no destinations, addresses or identity) that the
	// tunnel otherwise reports to the server (telemetry.go).
	NoTelemetry bool
	// Dial, if set, opens the TCP connections to the server in place of
	// the default net.Dialer (the censor lab dials from the client's
	// network namespace with it).
	Dial func(ctx context.Context, network, address string) (net.Conn, error)
}

// NewTunnel returns a tunnel for link with opts. It keeps copies of both:
// changing them afterwards does not change the tunnel. It does not dial.
func NewTunnel(link *links.VLESS, opts TunnelOptions) (*Tunnel, error) {
	if opts.MaxConns < 0 {
		return nil, fmt.Errorf("client: MaxConns %d: want 0 (the default) or more", opts.MaxConns)
	}
	if opts.Budget < -1 {
		return nil, fmt.Errorf("client: Budget %d: want -1 (no rotation), 0 (the link's) or more", opts.Budget)
	}
	if link.Type == links.TypeXHTTP && link.Flow != "" {
		return nil, fmt.Errorf("link: flow %q cannot be used with type=xhttp", link.Flow)
	}
	if link.Flow != "" && link.Flow != vless.FlowVision {
		return nil, fmt.Errorf("link: flow %q is not supported; use %s", link.Flow, vless.FlowVision)
	}
	browser, err := links.FingerprintBrowser(link.Fingerprint)
	if err != nil {
		return nil, fmt.Errorf("link: fp: %w", err)
	}
	link = cloneLink(link)
	t := &Tunnel{
		link:   link,
		server: net.JoinHostPort(link.Host, strconv.Itoa(int(link.Port))),
		cfg: camo.ClientConfig{
			ServerName:  link.SNI,
			PublicKey:   link.PublicKey,
			ShortID:     link.ShortID,
			Fingerprint: browser,
		},
		dialer: net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second},
		opts:   opts,
	}
	t.learned = opts.Learned
	if t.learned == nil {
		t.learned = &Learned{}
	}
	t.pacer = pacerFor(t.server, opts.Pace)
	return t, nil
}

// cloneLink copies l deeply enough (every field the tunnel reads) that the
// caller's later changes to it do not reach the tunnel.
func cloneLink(l *links.VLESS) *links.VLESS {
	c := *l
	c.PublicKey = bytes.Clone(l.PublicKey)
	c.ShortID = bytes.Clone(l.ShortID)
	if l.XHTTP != nil {
		x := *l.XHTTP
		c.XHTTP = &x
	}
	return &c
}

// useMux says whether plain-text TCP streams ride mux connections.
func (t *Tunnel) useMux() bool {
	return t.link.TCPMux && !t.opts.NoMux && t.link.Flow == vless.FlowVision && t.link.Type != links.TypeXHTTP
}

// Server returns host:port of the server.
func (t *Tunnel) Server() string { return t.server }

// State returns the tunnel state.
func (t *Tunnel) State() State {
	if t.refusal() != nil {
		return StateRefused
	}
	return State(t.state.Load())
}

// Bytes returns the bytes sent to and received from the server so far.
func (t *Tunnel) Bytes() (up, down int64) { return t.up.Load(), t.down.Load() }

// LastError returns the server's refusal of the link while it holds, else
// the last handshake error if the tunnel is not connected.
func (t *Tunnel) LastError() error {
	if re := t.refusal(); re != nil {
		return re
	}
	t.lastErrMu.Lock()
	defer t.lastErrMu.Unlock()
	return t.lastErr
}

// DialContext opens a proxied connection to address ("host:port", the host
// not resolved locally) over network "tcp" or "udp". A "udp" conn carries one
// datagram per Read and Write.
func (t *Tunnel) DialContext(ctx context.Context, network, address string) (net.Conn, error) {
	dest, err := parseDest(address)
	if err != nil {
		return nil, err
	}
	if t.refusal() != nil {
		if err := t.recheckAccess(ctx); err != nil {
			return nil, err
		}
	}
	t.active(false) // telemetry.go
	req := &vless.Request{UUID: t.link.UUID, Dest: dest}
	switch network {
	case "tcp", "tcp4", "tcp6":
		req.Command = vless.CommandTCP
		req.Flow = t.link.Flow
	case "udp", "udp4", "udp6":
		// UDP goes without Vision, as Xray-core accepts it.
		req.Command = vless.CommandUDP
	default:
		return nil, fmt.Errorf("client: network %q not supported", network)
	}
	if t.Transport() == TransportXHTTP {
		return t.dialXHTTP(ctx, req)
	}
	if req.Command == vless.CommandTCP && t.useMux() {
		return t.newLazyConn(req, address), nil // lazy.go
	}
	tconn, err := t.tlsConn(ctx) // the warm spare, if any (spare.go)
	if err != nil {
		return nil, err
	}
	return t.clientConn(tconn, req), nil
}

// handshake dials the server and completes REALITY.
func (t *Tunnel) handshake(ctx context.Context) (net.Conn, error) {
	c, _, err := t.dialTLS(ctx, t.watch()) // w: for the automatic fallback (fallback.go)
	return c, err
}

// dialTLS dials the server and completes REALITY, counting the bytes on w.
// It returns the TLS conn and the TCP conn under it.
func (t *Tunnel) dialTLS(ctx context.Context, w *connWatch) (tconn, raw net.Conn, err error) {
	if t.pacer != nil {
		t.pacer.Note() // a rate rule counts these too
	}
	raw, err = t.dialServer(ctx)
	if err != nil {
		return nil, nil, t.fail(fmt.Errorf("cannot reach server %s: %w", t.server, err))
	}
	counted := &watchedConn{w: w, Conn: meter.NewConn(raw,
		meter.Unlimited{AddFunc: func(n int64) { t.down.Add(n); w.add(n) }},
		meter.Unlimited{AddFunc: func(n int64) { t.up.Add(n); w.sent() }})}
	hctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	tconn, err = camo.Client(hctx, counted, t.cfg)
	t.countHandshake(telemetry.TCP, err)
	if err != nil {
		raw.Close()
		if errors.Is(err, camo.ErrNotReality) {
			return nil, nil, t.fail(fmt.Errorf("server %s: %w", t.server, err))
		}
		t.handshakeReset(err)
		return nil, nil, t.fail(fmt.Errorf("handshake with %s: %w", t.server, err))
	}
	t.connected()
	return tconn, raw, nil
}

// connected records a successful handshake.
func (t *Tunnel) connected() {
	t.state.Store(int32(StateConnected))
	t.lastErrMu.Lock()
	t.lastErr = nil
	t.lastErrMu.Unlock()
}

func (t *Tunnel) logger() *slog.Logger {
	if t.opts.Logger == nil {
		return slog.Default()
	}
	return t.opts.Logger
}

// fail records a failed handshake: a tunnel that was connected is now
// retrying; one that never connected stays connecting, and LastError says why.
func (t *Tunnel) fail(err error) error {
	t.state.CompareAndSwap(int32(StateConnected), int32(StateRetrying))
	t.lastErrMu.Lock()
	t.lastErr = err
	t.lastErrMu.Unlock()
	return err
}

// Probe runs one handshake to check the server, for start-up and for the
// background health check that drives the status line.
func (t *Tunnel) Probe(ctx context.Context) error {
	c, err := t.handshake(ctx)
	if err != nil {
		return err
	}
	return c.Close()
}

// DestError is a destination the tunnel cannot carry: one a server would refuse (an IPv6
// zone, a character or a length a name cannot have, see vless.DestAddr) or that is not
// host:port at all. It is refused here, before anything is sent, so that it cannot cost
// the other streams of a shared connection. The SOCKS5 frontend answers it with "address
// type not supported" for a zone and "host unreachable" otherwise; the HTTP proxy with 400.
type DestError struct {
	Dest string // the address as given
	Err  error  // what is wrong with it
}

func (e *DestError) Error() string { return fmt.Sprintf("bad destination %q: %v", e.Dest, e.Err) }
func (e *DestError) Unwrap() error { return e.Err }

// SOCKSReply is the SOCKS5 reply code for the error (internal/proxy/socks5).
func (e *DestError) SOCKSReply() byte {
	if errors.Is(e.Err, vless.ErrZone) {
		return 0x08 // address type not supported
	}
	return 0x04 // host unreachable
}

// HTTPStatus is the status the HTTP proxy answers the error with (internal/proxy/httpproxy).
func (e *DestError) HTTPStatus() int { return 400 }

// parseDest is the one place where a proxied destination (from SOCKS5, the HTTP proxy or
// the TUN) becomes what the tunnel sends; every error is a *DestError.
func parseDest(address string) (vless.Addr, error) {
	host, port, err := net.SplitHostPort(address)
	if err != nil {
		return vless.Addr{}, &DestError{Dest: address, Err: err}
	}
	p, err := strconv.ParseUint(port, 10, 16)
	if err != nil || p == 0 {
		return vless.Addr{}, &DestError{Dest: address, Err: fmt.Errorf("bad port %q", port)}
	}
	a, err := vless.DestAddr(host, uint16(p))
	if err != nil {
		return vless.Addr{}, &DestError{Dest: address, Err: err}
	}
	return a, nil
}
