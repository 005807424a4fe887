package server

import (
	"bytes"
	"context"
	"crypto/subtle"
	"errors"
	"io"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/burrow-vpn/burrow/internal/access"
	"github.com/burrow-vpn/burrow/internal/camo"
	"github.com/burrow-vpn/burrow/internal/relaylink"
	"github.com/burrow-vpn/burrow/internal/tlshello"
	"github.com/burrow-vpn/burrow/internal/transport/xhttp"
	"github.com/burrow-vpn/burrow/internal/trunk"
	"github.com/xtls/reality"
)

// RelaySource is what the server needs of the relay table.
type RelaySource interface {
	ListRelays(ctx context.Context) ([]*access.Relay, error)
	SetRelayAnnounce(ctx context.Context, id int64, sni, cover, addr string) error
}

// Relays keeps the exit's view of its entry relays (burrow relay),
// refreshed from the store every second like the users, so a relay revoked
// by the CLI in another process is refused, and its pooled links cut,
// within a second.
//
// A relay authenticates its REALITY connections with its own short ID;
// they carry XHTTP whose sessions each carry one client connection's
// bytes, which the exit accepts as if the client had connected directly
// (relaylink's package doc has the wire format). The exit learns nothing
// of the client but what it would from a direct connection, minus the
// address: a relayed stream's remote address is the relay's.
type Relays struct {
	src RelaySource
	log *slog.Logger

	// refreshing serializes Refresh, so an older list read by one call
	// never replaces a newer one applied by another.
	refreshing sync.Mutex

	mu   sync.Mutex
	byID map[[8]byte]*liveRelay // guarded by mu; revoked relays are absent
}

// liveRelay is one relay allowed in, and what it has open.
type liveRelay struct {
	// id, name and secret never change: a relay whose secret changed is
	// another liveRelay.
	id     int64
	name   string
	secret [16]byte

	mu     sync.Mutex
	conns  map[net.Conn]struct{}   // guarded by mu: the relay's REALITY connections
	hub    *xhttp.Hub              // guarded by mu: its sessions; made on first use
	cut    bool                    // guarded by mu: revoked; refuse everything
	camos  map[string]*camo.Server // guarded by mu: by announced "SNI COVER"
	stored string                  // guarded by mu: the announcement the store holds
}

// NewRelays returns an empty table; Refresh fills it.
func NewRelays(src RelaySource, log *slog.Logger) *Relays {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Relays{src: src, log: log, byID: make(map[[8]byte]*liveRelay)}
}

// Known reports whether id is the short ID of a relay not revoked. It is
// camo's MoreShortIDs.
func (r *Relays) Known(id [8]byte) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.byID[id] != nil
}

func (r *Relays) lookup(id [8]byte) *liveRelay {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.byID[id]
}

// Refresh reloads the table; relays revoked or gone since are cut: their
// connections closed and their streams ended.
func (r *Relays) Refresh(ctx context.Context) error {
	r.refreshing.Lock()
	defer r.refreshing.Unlock()
	list, err := r.src.ListRelays(ctx)
	if err != nil {
		return err
	}
	fresh := make(map[[8]byte]access.Relay, len(list))
	for _, rl := range list {
		if !rl.Revoked {
			fresh[rl.ShortID] = *rl
		}
	}
	var gone []*liveRelay
	r.mu.Lock()
	for id, lr := range r.byID {
		if rl, ok := fresh[id]; ok && rl.Secret == lr.secret {
			delete(fresh, id)
			continue
		}
		delete(r.byID, id)
		gone = append(gone, lr)
	}
	for id, rl := range fresh {
		r.byID[id] = &liveRelay{id: rl.ID, name: rl.Name, secret: rl.Secret, conns: make(map[net.Conn]struct{}), camos: make(map[string]*camo.Server), stored: announceKey(rl.AnnouncedSNI, rl.AnnouncedCover, rl.AnnouncedAddr)}
	}
	r.mu.Unlock()
	for _, lr := range gone {
		r.log.Info("relay revoked: its links are cut", "relay", lr.name)
		lr.cutAll()
	}
	return nil
}

// Run refreshes every period until ctx ends, then cuts every relay.
func (r *Relays) Run(ctx context.Context, period time.Duration) {
	t := time.NewTicker(period)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			r.mu.Lock()
			all := r.byID
			r.byID = map[[8]byte]*liveRelay{}
			r.mu.Unlock()
			for _, lr := range all {
				lr.cutAll()
			}
			return
		case <-t.C:
			if err := r.Refresh(ctx); err != nil && ctx.Err() == nil {
				r.log.Warn("relay table refresh failed", "err", err)
			}
		}
	}
}

// cutAll closes the relay's connections and ends its streams; later ones
// are refused.
func (lr *liveRelay) cutAll() {
	lr.mu.Lock()
	lr.cut = true
	conns := lr.conns
	lr.conns = nil
	hub := lr.hub
	lr.mu.Unlock()
	for c := range conns {
		c.Close()
	}
	if hub != nil {
		hub.Close()
	}
}

// add registers a connection of the relay; false if the relay was cut.
func (lr *liveRelay) add(c net.Conn) bool {
	lr.mu.Lock()
	defer lr.mu.Unlock()
	if lr.cut {
		return false
	}
	lr.conns[c] = struct{}{}
	return true
}

func (lr *liveRelay) remove(c net.Conn) {
	lr.mu.Lock()
	delete(lr.conns, c)
	lr.mu.Unlock()
}

// relayOf returns the relay that authenticated tconn, if any.
func (s *Server) relayOf(tconn net.Conn) *liveRelay {
	rc, ok := tconn.(*reality.Conn)
	if !ok || s.opts.Relays == nil {
		return nil
	}
	return s.opts.Relays.lookup(rc.ClientShortId)
}

// serveRelayLink serves one REALITY connection of relay lr: XHTTP whose
// sessions are relayed client connections.
func (s *Server) serveRelayLink(ctx context.Context, tconn net.Conn, lr *liveRelay) {
	tconn.SetReadDeadline(time.Now().Add(requestTimeout))
	pre := make([]byte, len(xhttp.Preface))
	if _, err := io.ReadFull(tconn, pre); err != nil || string(pre) != xhttp.Preface {
		s.log.Debug("relay link: not HTTP/2", "relay", lr.name)
		return
	}
	tconn.SetReadDeadline(time.Time{})
	// The leg carries bulk data for many clients: each HTTP/2 write's
	// records leave in one segment (camo.Coalesced).
	tconn = camo.Coalesced(tconn)
	if !lr.add(tconn) {
		return
	}
	defer lr.remove(tconn)
	lr.mu.Lock()
	if lr.hub == nil {
		lr.hub = xhttp.NewHub(ctx, xhttp.HubConfig{
			Handle: func(ctx context.Context, c net.Conn) { s.handleRelayStream(ctx, c, lr) },
			Logger: s.log,
		})
	}
	hub := lr.hub
	lr.mu.Unlock()
	s.stats.RelayLinks.Add(1)
	defer s.stats.RelayLinks.Add(-1)
	hub.ServeConn(ctx, tconn, xhttp.ConnOptions{SawPreface: true, TLS: true})
}

// handleRelayStream is one stream of a relay: a header, then (kind client)
// a client connection's bytes, accepted as a fresh connection would be. A
// stream whose header is wrong is closed with nothing sent: garbage on the
// leg reaches no user.
func (s *Server) handleRelayStream(ctx context.Context, c net.Conn, lr *liveRelay) {
	defer c.Close()
	c.SetReadDeadline(time.Now().Add(requestTimeout))
	h, err := relaylink.ReadHeader(c)
	if err != nil {
		s.stats.RelayRefused.Add(1)
		s.log.Debug("relay stream refused", "relay", lr.name, "err", err)
		return
	}
	lr.mu.Lock()
	ok := !lr.cut && subtle.ConstantTimeCompare(h.Secret[:], lr.secret[:]) == 1
	lr.mu.Unlock()
	if !ok {
		s.stats.RelayRefused.Add(1)
		s.log.Debug("relay stream refused: wrong credential", "relay", lr.name)
		return
	}
	c.SetReadDeadline(time.Time{})
	cs, announced, err := s.relayCamo(lr, h)
	if err != nil {
		s.stats.RelayRefused.Add(1)
		s.log.Warn("relay stream refused: the relay's cover", "relay", lr.name, "err", err)
		return
	}
	if announced {
		// Once per relay and cover: `burrow user show --via` reads it.
		// Not in the stream's way: the relay waits for its answer.
		go func() {
			actx, cancel := context.WithTimeout(ctx, 10*time.Second)
			defer cancel()
			if err := s.opts.Relays.src.SetRelayAnnounce(actx, lr.id, h.SNI, h.Cover, h.Addr); err != nil {
				s.log.Warn("relay: record its cover", "relay", lr.name, "err", err)
			}
		}()
	}
	switch h.Kind {
	case relaylink.KindProbe:
		c.SetWriteDeadline(time.Now().Add(5 * time.Second))
		c.Write([]byte{relaylink.ProbeOK})
		return
	case relaylink.KindTrunk:
		s.serveTrunk(ctx, c, cs, lr)
		return
	}
	var in net.Conn = c
	if h.Kind == relaylink.KindAsk {
		if in = askStream(c, cs); in == nil {
			return // another exit's client: the relay asks the next
		}
	}
	s.serveRelayed(ctx, in, cs)
}

// serveTrunk serves a trunk of lr's client connections (package trunk):
// each stream is accepted as a fresh connection would be, until the trunk
// ends.
func (s *Server) serveTrunk(ctx context.Context, c net.Conn, cs *camo.Server, lr *liveRelay) {
	c.SetWriteDeadline(time.Now().Add(requestTimeout))
	if _, err := c.Write([]byte{relaylink.TrunkOK}); err != nil {
		return
	}
	c.SetWriteDeadline(time.Time{})
	var wg sync.WaitGroup
	tr := trunk.New(c, func(st *trunk.Stream) {
		wg.Go(func() {
			defer st.Close()
			s.serveRelayed(ctx, st, cs)
		})
	})
	stop := context.AfterFunc(ctx, func() { tr.Close() })
	tr.Wait()
	stop()
	if err := tr.Err(); errors.Is(err, trunk.ErrProtocol) {
		s.stats.RelayRefused.Add(1)
		s.log.Debug("relay trunk ended: bad frames", "relay", lr.name, "err", err)
	}
	wg.Wait()
}

// serveRelayed accepts one client connection a relay carried in.
func (s *Server) serveRelayed(ctx context.Context, in net.Conn, cs *camo.Server) {
	s.stats.RelayStreams.Add(1)
	tconn, err := cs.Handshake(ctx, in)
	if err != nil {
		if errors.Is(err, camo.ErrFallback) {
			s.stats.Fallback.Add(1)
		} else {
			s.log.Debug("relayed handshake failed", "err", err)
		}
		return
	}
	s.serveAuthenticated(ctx, tconn)
}

// relayCamo returns the REALITY server for lr's streams announcing the
// cover sni/cover ("" for the exit's own). It accepts the users' short IDs
// only, never a relay's, so relays do not nest. A relay's cover is dialed
// under the egress policy: a relay cannot make the exit reach its own
// private network. announced is true the first time this process sees
// the relay announce a cover that the store does not hold yet.
func (s *Server) relayCamo(lr *liveRelay, h *relaylink.Header) (cs *camo.Server, announced bool, err error) {
	sni, cover := h.SNI, h.Cover
	key := sni + " " + cover
	ann := announceKey(sni, cover, h.Addr)
	lr.mu.Lock()
	defer lr.mu.Unlock()
	if cs := lr.camos[key]; cs != nil && ann == lr.stored {
		return cs, false, nil
	}
	if cs := lr.camos[key]; cs != nil {
		lr.stored = ann
		return cs, true, nil
	}
	cfg := s.camoCfg
	if sni != "" {
		cfg.ServerNames, cfg.Cover = []string{sni}, cover
		cfg.DialCover = s.egress.DialContext
	}
	cs, err = camo.NewServer(cfg)
	if err != nil {
		return nil, false, err
	}
	if len(lr.camos) >= 4 { // a relay changing its cover: keep the newest only
		clear(lr.camos)
	}
	lr.camos[key] = cs
	announced = ann != lr.stored
	lr.stored = ann
	return cs, announced, nil
}

// askStream answers a KindAsk stream: the ClientHello that follows the
// header is read and AskYes sent if it authenticates to cs, and the stream
// is returned with the hello put back in front; otherwise AskNo is sent
// and nil returned.
func askStream(c net.Conn, cs *camo.Server) net.Conn {
	c.SetReadDeadline(time.Now().Add(requestTimeout))
	hello, raw, err := tlshello.ReadRecords(c)
	c.SetReadDeadline(time.Time{})
	c.SetWriteDeadline(time.Now().Add(requestTimeout))
	defer c.SetWriteDeadline(time.Time{})
	if err != nil || !cs.Recognizes(hello) {
		c.Write([]byte{relaylink.AskNo})
		return nil
	}
	if _, err := c.Write([]byte{relaylink.AskYes}); err != nil {
		return nil
	}
	return &prefixedConn{Conn: c, r: io.MultiReader(bytes.NewReader(raw), c)}
}

// prefixedConn is a conn whose first bytes were read already and are
// read again.
type prefixedConn struct {
	net.Conn
	r io.Reader
}

func (p *prefixedConn) Read(b []byte) (int, error) { return p.r.Read(b) }

func (p *prefixedConn) CloseWrite() error {
	if cw, ok := p.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return p.Conn.Close()
}

func announceKey(sni, cover, addr string) string { return sni + " " + cover + " " + addr }
