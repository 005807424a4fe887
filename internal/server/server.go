// Package server is Burrow's exit server: the camouflaged listener, the VLESS
// request handling, per-user admission and accounting, and the egress policy.
//
// Per connection:
//
//	accept TCP ─► camo.Server.Handshake ─┬─ not authenticated: spliced to the cover site (camo does it)
//	                                     └─ REALITY TLS ─► vless.ReadRequest ─► Registry.Acquire (user, quota)
//	                                        ─► EgressPolicy dial ─► relay (counted, splice-friendly)
//
// Everything that fails after the TLS handshake — an unknown UUID, a
// refused or failed dial — ends the connection the same way: a plain close
// with nothing written, so an observer cannot tell the cases apart.
//
// The server never logs a user identity and a destination on the same line
// (unless Options.LogDestinations), and never stores destinations or client
// addresses.
package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"syscall"
	"time"

	"github.com/burrow-vpn/burrow/internal/camo"
	"github.com/burrow-vpn/burrow/internal/telemetry"
	"github.com/burrow-vpn/burrow/internal/transport/xhttp"
)

// Options are the run-time settings that are not part of the config file.
type Options struct {
	// LogDestinations puts user names and destinations on the same log
	// line. Off by default; for debugging only.
	LogDestinations bool
	// ShutdownGrace is how long live connections may continue after a stop
	// request. Default 5s.
	ShutdownGrace time.Duration
	// Listener, when set, is used instead of listening on Config.Listen.
	Listener net.Listener
	// MaxConns is the most connections handled at once; further ones wait
	// in the kernel's accept queue, as at a busy web server, rather than
	// being accepted and then reset for want of a descriptor to reach the
	// cover. Default: what the open-file limit allows (MaxConnsFor).
	// Negative: no limit.
	MaxConns int
	// Relays, when set, lets the entry relays in it carry clients to this
	// server (relays.go); nil refuses every relay.
	Relays *Relays
	// Telemetry adds up the block telemetry clients report
	// (internal/telemetry); nil reads and answers reports but keeps
	// nothing.
	Telemetry *telemetry.Aggregator
	// Panel, when set, answers PanelHost:80 inside the tunnel for the
	// users it allows (intunnel.go); nil leaves that name refused.
	Panel InTunnel
}

// MaxConnsFor is the default Options.MaxConns under an open-file limit of
// files: two descriptors a connection, less a reserve for the store,
// listeners and multiplexed streams' extra dials. 0 (unknown) means no limit.
func MaxConnsFor(files uint64) int {
	reserve := 64 + files/32
	if files <= reserve {
		return max(int(files/4), 1)
	}
	return int(min((files-reserve)/2, 1<<30))
}

// Server serves one Config.
type Server struct {
	cfg  *Config
	opts Options
	log  *slog.Logger
	camo *camo.Server
	// camoCfg is camo's config without relays' short IDs: relayed streams
	// are accepted with it (relays.go).
	camoCfg camo.ServerConfig
	users   *Registry
	egress  *EgressPolicy
	stats   *Stats

	wg sync.WaitGroup // one per live connection handler

	xhttpOnce sync.Once
	xhttp     *xhttp.Hub // XHTTP sessions, which outlive connections; made on first use
}

// New builds a server. It does not touch the network.
func New(cfg *Config, users *Registry, log *slog.Logger, opts Options) (*Server, error) {
	if opts.ShutdownGrace == 0 {
		opts.ShutdownGrace = 5 * time.Second
	}
	if opts.MaxConns == 0 {
		if files := fileLimit(); files > 0 {
			opts.MaxConns = MaxConnsFor(files)
		}
	}
	priv, err := DecodeKey(cfg.PrivateKey)
	if err != nil {
		return nil, fmt.Errorf("server: private key: %w", err)
	}
	var sids [][]byte
	for _, s := range cfg.ShortIDs {
		b, err := DecodeShortID(s)
		if err != nil {
			return nil, fmt.Errorf("server: short id: %w", err)
		}
		sids = append(sids, b)
	}
	var own []netip.Addr
	if a, err := netip.ParseAddr(cfg.PublicAddr); err == nil {
		own = append(own, a)
	}
	egress := NewEgressPolicy(cfg.AllowPrivateEgress, own...)
	camoCfg := camo.ServerConfig{
		PrivateKey:  priv,
		ShortIDs:    sids,
		ServerNames: cfg.ServerNames,
		Cover:       cfg.Cover,
		MaxTimeDiff: time.Duration(cfg.MaxTimeDiff),
		Logger:      log,
	}
	withRelays := camoCfg
	if opts.Relays != nil {
		withRelays.MoreShortIDs = opts.Relays.Known
	}
	cs, err := camo.NewServer(withRelays)
	if err != nil {
		return nil, fmt.Errorf("server: %w", err)
	}
	return &Server{cfg: cfg, opts: opts, log: log, camo: cs, camoCfg: camoCfg, users: users, egress: egress, stats: &Stats{}}, nil
}

// Stats returns the server's live counters.
func (s *Server) Stats() *Stats { return s.stats }

// Listen opens the configured listener with errors an operator can act on.
func (s *Server) Listen(ctx context.Context) (net.Listener, error) {
	if s.opts.Listener != nil {
		return s.opts.Listener, nil
	}
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", s.cfg.Listen)
	if err != nil {
		switch {
		case errors.Is(err, syscall.EADDRINUSE):
			return nil, fmt.Errorf("listen %s: the port is already in use (by another program, or by a burrow server that is still stopping); stop it or choose another port in %s (listen)", s.cfg.Listen, ConfigFile)
		case errors.Is(err, syscall.EACCES):
			return nil, fmt.Errorf("listen %s: permission denied; ports below 1024 need root or CAP_NET_BIND_SERVICE (setcap 'cap_net_bind_service=+ep' burrow)", s.cfg.Listen)
		case errors.Is(err, syscall.EADDRNOTAVAIL):
			return nil, fmt.Errorf("listen %s: this machine has no such address; use :PORT to listen on all addresses", s.cfg.Listen)
		}
		return nil, fmt.Errorf("listen %s: %w", s.cfg.Listen, err)
	}
	return ln, nil
}

// Serve accepts connections on ln until ctx ends, then stops accepting,
// gives live connections ShutdownGrace to finish, cuts the rest and returns.
// With Options.MaxConns connections live it accepts no more until one ends.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	stop := context.AfterFunc(ctx, func() { ln.Close() })
	defer stop()
	connCtx, cancelConns := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelConns()
	var slots chan struct{} // one per live connection
	if s.opts.MaxConns > 0 {
		slots = make(chan struct{}, s.opts.MaxConns)
	}
	var tempDelay time.Duration
	var warned time.Time
	for {
		if !s.takeSlot(ctx, slots, &warned) {
			break
		}
		c, err := ln.Accept()
		if err != nil {
			s.releaseSlot(slots)
			if ctx.Err() != nil {
				break
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() || errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE) {
				// Out of descriptors or a transient error: back off, as net/http does.
				tempDelay = min(max(2*tempDelay, 5*time.Millisecond), time.Second)
				s.log.Warn("accept failed; retrying", "err", err, "delay", tempDelay)
				time.Sleep(tempDelay)
				continue
			}
			return fmt.Errorf("server: accept: %w", err)
		}
		tempDelay = 0
		tc, ok := c.(*net.TCPConn)
		if !ok {
			s.releaseSlot(slots)
			c.Close()
			continue
		}
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			defer s.releaseSlot(slots)
			s.handle(connCtx, tc)
		}()
	}
	done := make(chan struct{})
	go func() { s.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(s.opts.ShutdownGrace):
		s.users.CutAll()
		cancelConns()
		<-done
	}
	s.closeXHTTP()
	return nil
}

// takeSlot waits for room for one more connection (warning at most once a
// minute that the server is full); false if ctx ended first.
func (s *Server) takeSlot(ctx context.Context, slots chan struct{}, warned *time.Time) bool {
	if slots == nil {
		return true
	}
	select {
	case slots <- struct{}{}:
		return true
	default:
	}
	if time.Since(*warned) > time.Minute {
		*warned = time.Now()
		s.log.Warn("connection limit reached; new connections wait in the accept queue until others end (raise the open-file limit, e.g. LimitNOFILE in the systemd unit)",
			"max_conns", cap(slots))
	}
	select {
	case slots <- struct{}{}:
		return true
	case <-ctx.Done():
		return false
	}
}

func (s *Server) releaseSlot(slots chan struct{}) {
	if slots != nil {
		<-slots
	}
}
