// Package relay is Burrow's entry relay (burrow relay): a node inside a
// whitelisted network that carries clients' connections to exits abroad
// without being able to read or attribute them.
//
//	client ──TCP──► relay ══ REALITY + HTTP/2 (pooled, rotated) ══► exit
//	               one XHTTP session per client connection, carrying its
//	               bytes unchanged: the client's REALITY session runs end
//	               to end to the exit
//
// The relay forwards each client connection's raw bytes — the client's
// REALITY ClientHello and everything after — as one stream over a small
// pool of long-lived camouflaged connections to an exit
// (internal/transport/xhttp; internal/relaylink has the wire format). The
// exit accepts the stream as if the client had connected to it. So the
// relay holds no user keys and no exit private key, and sees only TLS
// records; the exit sees the relay's address, never the client's.
//
// Probers of the relay reach, through the exit, the relay's cover (or the
// exit's); when no exit is up, the relay shows the cover itself (camo's
// fallback, with a key no client has). When its exits have different keys
// (a relay of a fleet), it reads each client's ClientHello and asks the
// exits whose client it is (relaylink's KindAsk). It depends on camo,
// relaylink, tlshello, meter, bidi and xhttp; it imports neither the
// server nor the store.
package relay

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/burrow-vpn/burrow/internal/bidi"
	"github.com/burrow-vpn/burrow/internal/camo"
	"github.com/burrow-vpn/burrow/internal/tlshello"
	"github.com/burrow-vpn/burrow/internal/transport/xhttp"
	"github.com/burrow-vpn/burrow/internal/trunk"
)

// Options are the run-time settings outside the config file.
type Options struct {
	// Dial opens TCP connections to exits and to the cover. Default: a
	// net.Dialer.
	Dial Dialer
	// Logger receives the relay's messages; nil discards them. Nothing it
	// logs names a client's address.
	Logger *slog.Logger
	// ShutdownGrace is how long live connections may continue after a stop
	// request. Default 5s.
	ShutdownGrace time.Duration
}

// Stats are the relay's counters.
type Stats struct {
	Active    atomic.Int64 // client connections open now
	ToExit    atomic.Int64 // client connections carried to an exit
	ToCover   atomic.Int64 // client connections shown the cover: no exit was up
	Refused   atomic.Int64 // client connections closed: no exit up and no cover reachable
	BytesUp   atomic.Int64 // client → exit
	BytesDown atomic.Int64 // exit → client
}

// Relay serves one Config.
type Relay struct {
	opts  Options
	log   *slog.Logger
	stats Stats

	mu    sync.Mutex
	cfg   *Config      // guarded by mu
	cover *camo.Server // guarded by mu: shows probers the cover when no exit is up

	exits exitSet
	wg    sync.WaitGroup // one per live connection
}

// New builds a relay and starts the health checks of its exits. It does
// not listen. Close stops it.
func New(cfg *Config, opts Options) (*Relay, error) {
	if opts.Dial == nil {
		var d net.Dialer
		opts.Dial = d.DialContext
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.ShutdownGrace == 0 {
		opts.ShutdownGrace = 5 * time.Second
	}
	r := &Relay{opts: opts, log: opts.Logger}
	if err := r.Reload(cfg); err != nil {
		return nil, err
	}
	return r, nil
}

// Stats returns the relay's live counters.
func (r *Relay) Stats() *Stats { return &r.stats }

// Reload switches to cfg's exits and cover. Exits whose token is
// unchanged keep their pool and streams; removed ones are closed. The
// listen address is not changed by a reload.
func (r *Relay) Reload(cfg *Config) error {
	if err := cfg.Validate(); err != nil {
		return err
	}
	toks, err := cfg.Tokens()
	if err != nil {
		return err
	}
	var exitCover, exitSNI string
	if len(toks) > 0 {
		exitCover, exitSNI = toks[0].Cover, toks[0].SNI
	}
	cover, err := fallbackCover(cfg, exitCover, exitSNI, r.opts)
	if err != nil {
		return err
	}
	r.exits.mu.Lock()
	old := make(map[string]*exit, len(r.exits.exits))
	for _, e := range r.exits.exits {
		old[e.raw] = e
	}
	r.mu.Lock()
	sameCover := r.cfg != nil && r.cfg.Cover == cfg.Cover && r.cfg.SNI == cfg.SNI && r.cfg.budget() == cfg.budget() && r.cfg.MaxConns == cfg.MaxConns
	r.mu.Unlock()
	var next []*exit
	for i, t := range toks {
		raw := cfg.Exits[i]
		if e := old[raw]; e != nil && sameCover {
			delete(old, raw)
			next = append(next, e)
			continue
		}
		e, err := newExit(raw, t, cfg, r.opts.Dial, r.log)
		if err != nil {
			r.exits.mu.Unlock()
			for _, e := range next {
				if e.stop == nil { // made here, not started
					e.pool.Close()
				}
			}
			return fmt.Errorf("exit %s: %w", t.Redacted(), err)
		}
		next = append(next, e)
	}
	r.exits.exits = next
	r.exits.mu.Unlock()
	for _, e := range next {
		if e.stop == nil {
			e.start()
		}
	}
	r.mu.Lock()
	r.cfg, r.cover = cfg, cover
	r.mu.Unlock()
	for _, e := range old {
		e.close()
	}
	return nil
}

// carry copies between client connection c and stream s on exit e.
func (r *Relay) carry(ctx context.Context, c, s net.Conn, e *exit) {
	r.stats.ToExit.Add(1)
	e.streams.Add(1)
	defer e.streams.Add(-1)
	r.log.Debug("client connection carried to an exit", "exit", e.name())
	if st, ok := s.(*trunk.Stream); ok {
		r.carryTrunk(ctx, c, st, e)
		return
	}
	// Most relayed connections are idle most of the time: CopyLean
	// holds 1 KiB per direction while they are, where io.Copy (and
	// meter.Copy through it) held 32 KiB for the connection's life.
	bidi.CopyWith(ctx, c, s,
		func(dst io.Writer, src io.Reader) (int64, error) {
			return bidi.CopyLean(dst, src, func(k int64) { r.stats.BytesUp.Add(k) })
		},
		func(dst io.Writer, src io.Reader) (int64, error) {
			n, err := bidi.CopyLean(dst, src, func(k int64) {
				r.stats.BytesDown.Add(k)
				e.sawBytes()
			})
			if errors.Is(err, xhttp.ErrReset) || errors.Is(err, trunk.ErrReset) {
				// The exit's side ended with a reset (the cover reset a
				// prober): the client gets a reset too, as from the cover.
				if l, ok := dst.(interface{ SetLinger(int) error }); ok {
					l.SetLinger(0)
				}
			}
			return n, err
		})
}

// carryTrunk carries client connection c on trunk stream s: the upload
// in this goroutine, the download by the stream's sink, which holds a
// goroutine only while it has bytes to write. An idle client connection
// costs the relay this one goroutine.
func (r *Relay) carryTrunk(ctx context.Context, c net.Conn, s *trunk.Stream, e *exit) {
	var once sync.Once
	closeBoth := func() {
		once.Do(func() {
			c.Close()
			s.Close()
		})
	}
	stop := context.AfterFunc(ctx, closeBoth)
	defer stop()
	down := make(chan struct{})
	s.Sink(countingWriter{c, func(k int64) {
		r.stats.BytesDown.Add(k)
		e.sawBytes()
	}}, func(_ int64, err error) {
		defer close(down)
		switch {
		case err == nil:
			// The exit's side ended: a FIN to the client, whose upload
			// may go on.
			if cw, ok := c.(interface{ CloseWrite() error }); !ok || cw.CloseWrite() != nil {
				closeBoth()
			}
		case errors.Is(err, trunk.ErrReset):
			// The cover reset a prober: the client gets a reset too.
			if l, ok := c.(interface{ SetLinger(int) error }); ok {
				l.SetLinger(0)
			}
			closeBoth()
		default:
			closeBoth()
		}
	})
	_, err := bidi.CopyLean(s, c, func(k int64) { r.stats.BytesUp.Add(k) })
	if err != nil || s.CloseWrite() != nil {
		closeBoth()
	}
	<-down
	closeBoth()
}

// countingWriter counts what it writes.
type countingWriter struct {
	w     io.Writer
	count func(int64)
}

func (c countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	if n > 0 {
		c.count(int64(n))
	}
	return n, err
}

// helloWait bounds how long the relay waits for a client's ClientHello
// when it must ask its exits whose client it is.
const helloWait = 20 * time.Second

// mixedKeys reports whether the exits have more than one key: then the
// relay cannot know which exit a client's hello is for, and asks them.
func mixedKeys(exits []*exit) bool {
	for _, e := range exits[min(1, len(exits)):] {
		if e.tok.PublicKey != exits[0].tok.PublicKey {
			return true
		}
	}
	return false
}

// ask reads c's ClientHello and asks the exits, one per key, whose client
// it is (relaylink's KindAsk). It returns the stream of the exit that took
// it, or nil and what was read (a prober's bytes, or a hello no exit
// takes), which the caller sends on as to the cover.
func (r *Relay) ask(ctx context.Context, c net.Conn, exits []*exit) (net.Conn, *exit, []byte) {
	c.SetReadDeadline(time.Now().Add(helloWait))
	_, raw, err := tlshello.ReadRecords(c)
	c.SetReadDeadline(time.Time{})
	if err != nil {
		return nil, nil, raw
	}
	refused := map[[32]byte]bool{}
	for _, e := range exits {
		if refused[e.tok.PublicKey] {
			continue
		}
		s, err := e.askFor(ctx, raw)
		if err != nil {
			r.log.Debug("exit could not be asked; trying the next", "exit", e.name(), "err", err)
			continue
		}
		if s != nil {
			return s, e, raw
		}
		refused[e.tok.PublicKey] = true
	}
	return nil, nil, raw
}

// prefixedConn is a client connection whose first bytes were read already
// and are read again.
type prefixedConn struct {
	net.Conn
	r io.Reader
}

func (p *prefixedConn) Read(b []byte) (int, error) { return p.r.Read(b) }

// CloseWrite and SetLinger pass the cover's FIN or reset on (camo's splice
// looks for them).
func (p *prefixedConn) CloseWrite() error {
	if cw, ok := p.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return p.Conn.Close()
}

func (p *prefixedConn) SetLinger(sec int) error {
	if l, ok := p.Conn.(interface{ SetLinger(int) error }); ok {
		return l.SetLinger(sec)
	}
	return nil
}

// fallbackCover returns the REALITY server the relay hands connections to
// when no exit is up: its private key is random and thrown away, so it
// authenticates nobody and shows everyone the cover — the relay's own, or
// the first exit's — with camo's faithful splice.
func fallbackCover(cfg *Config, exitCover, exitSNI string, opts Options) (*camo.Server, error) {
	cover, sni := cfg.Cover, cfg.SNI
	if cover == "" {
		cover, sni = exitCover, exitSNI
	}
	if cover == "" {
		return nil, nil // a fleet relay with no exit yet and no cover of its own
	}
	priv, _, err := camo.GenerateKey()
	if err != nil {
		return nil, err
	}
	return camo.NewServer(camo.ServerConfig{
		PrivateKey:  priv,
		ShortIDs:    [][]byte{{}},
		ServerNames: []string{sni},
		Cover:       cover,
		DialCover:   opts.Dial,
	})
}

// ExitsUp returns how many of the relay's exits are up, and how many it has.
func (r *Relay) ExitsUp() (up, total int) {
	all := r.exits.list()
	for _, e := range all {
		if e.up.Load() {
			up++
		}
	}
	return up, len(all)
}

// Close stops the health checks and closes every pool.
func (r *Relay) Close() {
	r.exits.mu.Lock()
	all := r.exits.exits
	r.exits.exits = nil
	r.exits.mu.Unlock()
	for _, e := range all {
		e.close()
	}
}

// Serve accepts client connections on ln until ctx ends, then gives live
// connections ShutdownGrace and cuts the rest.
func (r *Relay) Serve(ctx context.Context, ln net.Listener) error {
	stop := context.AfterFunc(ctx, func() { ln.Close() })
	defer stop()
	connCtx, cancelConns := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelConns()
	var tempDelay time.Duration
	var err error
	for {
		c, aerr := ln.Accept()
		if aerr != nil {
			if ctx.Err() != nil {
				break
			}
			var ne net.Error
			if errors.As(aerr, &ne) && ne.Timeout() || errors.Is(aerr, syscall.EMFILE) || errors.Is(aerr, syscall.ENFILE) {
				tempDelay = min(max(2*tempDelay, 5*time.Millisecond), time.Second)
				r.log.Warn("accept failed; retrying", "err", aerr, "delay", tempDelay)
				time.Sleep(tempDelay)
				continue
			}
			err = fmt.Errorf("relay: accept: %w", aerr)
			break
		}
		tempDelay = 0
		r.wg.Go(func() { r.handle(connCtx, c) })
	}
	done := make(chan struct{})
	go func() { r.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(r.opts.ShutdownGrace):
		cancelConns()
		<-done
	}
	return err
}

// handle carries one client connection to the first exit that takes it,
// or shows it the cover when none is up.
func (r *Relay) handle(ctx context.Context, c net.Conn) {
	r.stats.Active.Add(1)
	defer r.stats.Active.Add(-1)
	cands := r.exits.candidates()
	var hello []byte // the client's first bytes, read already to ask exits
	if mixedKeys(cands) {
		var s net.Conn
		var e *exit
		if s, e, hello = r.ask(ctx, c, cands); s != nil {
			r.carry(ctx, c, s, e)
			return
		}
	}
	for _, e := range cands {
		s, err := e.open(ctx)
		if err == nil && len(hello) > 0 {
			if _, err = s.Write(hello); err != nil {
				s.Close()
			}
		}
		if err != nil {
			r.log.Debug("exit refused a stream; trying the next", "exit", e.name(), "err", err)
			continue
		}
		r.carry(ctx, c, s, e)
		return
	}
	if len(hello) > 0 {
		c = &prefixedConn{Conn: c, r: io.MultiReader(bytes.NewReader(hello), c)}
	}
	r.mu.Lock()
	cover := r.cover
	r.mu.Unlock()
	if cover == nil {
		r.stats.Refused.Add(1)
		c.Close()
		return
	}
	_, err := cover.Handshake(ctx, c)
	if errors.Is(err, camo.ErrFallback) {
		r.stats.ToCover.Add(1)
		return
	}
	r.stats.Refused.Add(1)
	r.log.Debug("no exit is up and the cover cannot be reached", "err", err)
}
