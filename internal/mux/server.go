package mux

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"sync"
	"time"
)

// Dial opens a connection for one mux session: network is "tcp" (a stream) or "udp" (one
// Write is one datagram to address, one Read is one datagram from it); address is host:port
// with a domain not resolved by the caller. The server's egress policy belongs in it; a
// refusal is an error, which the client sees as an End frame with the error option.
type Dial func(ctx context.Context, network, address string) (net.Conn, error)

// Tunables (variables so tests can shorten them).
var (
	// IdleTimeout ends a session with no data in either direction for this long (Xray's
	// default connIdle is 300 s).
	IdleTimeout = 300 * time.Second
	// IdleConnCheck is how often ServerMux checks for an idle connection: one that has had
	// no session, and opened none, over a whole period ends (as Xray's server worker does
	// with its 60 s ticker), so it lives 1 to 2 periods after its last session.
	IdleConnCheck = 60 * time.Second
	// DialTimeout bounds the dial of a TCP session's target.
	DialTimeout = 10 * time.Second
	// maxSessions bounds the live sessions of one mux connection; a New frame beyond it is
	// answered with End and the error option.
	maxSessions = 128
	// queueLen is how many client datagrams a UDP session buffers before dropping (UDP
	// semantics).
	queueLen = 64
	// tcpQueueLen is how many Keep frames a TCP session buffers for its target before the
	// mux reader waits (the only flow control mux.cool has, as in Xray: a slow target
	// stalls the whole connection, and TCP pushes back on the client).
	tcpQueueLen = 8
)

// Frame sizes. Xray splits stream data into frames of at most 8 KiB and reads stream frames
// of any length; its packet reader refuses a datagram over 8 KiB (buf.Size), breaking the
// whole mux connection. Stream frames here carry at most 8184 bytes so that two of them with
// their 8-byte headers fill one 16 KiB TLS record exactly: a batch of 8 frames is 4 full
// records, where 8 KiB frames would leave a 64-byte record (and a syscall) behind each batch.
const (
	chunkSize     = 16<<10/2 - keepHeader
	maxPacketData = 8 << 10
)

// ServerMux serves the client end of one mux.cool connection (a VLESS CommandMux conn):
// it demultiplexes TCP sessions and UDP sessions (plain mux UDP and XUDP, the default of Xray
// clients with Vision) onto conns from dial and frames the answers back. XUDP's GlobalID
// (session migration between connections) is read but not used.
//
// It returns when conn fails (nil on a clean EOF) or ctx is cancelled, after all its
// goroutines have stopped and every dialed conn is closed. It does not close conn, but sets
// its deadlines in the past on the way out to unblock its own writers.
func ServerMux(ctx context.Context, conn net.Conn, dial Dial) error {
	return ServeMux(ctx, conn, dial, ServerOptions{})
}

// ServerOptions change how ServeMux serves a connection.
type ServerOptions struct {
	// RefuseTLS ends a TCP session whose first bytes from the client are a TLS handshake
	// record (0x16) with End and the error option, before anything reaches the target (and
	// before it is dialled when those bytes ride in the New frame, as Xray's and Burrow's
	// clients send them): a TLS connection inside mux on a plain TLS tunnel is TLS in TLS without Vision's
	// padding, the record-size pattern censors look for. Other sessions go on.
	RefuseTLS bool
}

// ServeMux is ServerMux with options.
func ServeMux(ctx context.Context, conn net.Conn, dial Dial, opts ServerOptions) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	s := &server{ctx: ctx, conn: conn, dial: dial, opts: opts, sessions: make(map[uint16]muxSession)}
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	s.wg.Go(func() { s.idleLoop(cancel) })
	err := s.readLoop()
	interrupted := ctx.Err() != nil
	cancel()
	s.closeAll()
	conn.SetDeadline(time.Unix(1, 0))
	s.wg.Wait()
	switch {
	case interrupted || errors.Is(err, io.EOF):
		return nil
	case errors.Is(err, ErrFrame):
		return err // says "mux: malformed frame" itself
	}
	return fmt.Errorf("mux: %w", err)
}

// muxSession is a TCP or UDP session as the reader loop sees it.
type muxSession interface {
	// deliver hands the data of a Keep (or New) frame to the session, which owns the pooled
	// buffer from then on; dest is the XUDP destination the frame names, or "". It may
	// block (TCP back-pressure) until the session or the server ends.
	deliver(dest string, data *[]byte)
	// end handles the client's End frame.
	end()
	// close ends the session at once; notify sends an End frame (the session ended on our
	// side).
	close(notify bool)
}

type server struct {
	ctx  context.Context
	conn net.Conn
	dial Dial
	opts ServerOptions
	wg   sync.WaitGroup // session goroutines

	wmu sync.Mutex // serialises frames on conn

	mu       sync.Mutex // guards sessions and opened
	sessions map[uint16]muxSession
	opened   int // sessions opened so far
}

// idleLoop ends the connection (through cancel) once it has been without sessions for a
// whole IdleConnCheck period.
func (s *server) idleLoop(cancel context.CancelFunc) {
	t := time.NewTicker(IdleConnCheck)
	defer t.Stop()
	lastLive, lastOpened := -1, -1
	for {
		select {
		case <-s.ctx.Done():
			return
		case <-t.C:
			s.mu.Lock()
			live, opened := len(s.sessions), s.opened
			s.mu.Unlock()
			if live == 0 && lastLive == 0 && opened == lastOpened {
				cancel()
				return
			}
			lastLive, lastOpened = live, opened
		}
	}
}

// readLoop handles frames until the conn fails. A frame's data is read into a pooled
// buffer that goes to its session (or back to the pool).
func (s *server) readLoop() error {
	fr := &frameReader{r: s.conn}
	f := new(frame)
	for {
		if err := fr.next(f); err != nil {
			return err
		}
		var data *[]byte
		if f.option&optData != 0 {
			data = getBuf(f.size)
			if _, err := io.ReadFull(fr.r, *data); err != nil {
				putBuf(data)
				return noEOF(err)
			}
		}
		if err := s.handle(f, data); err != nil {
			return err
		}
	}
}

// handle acts on one frame; data is its data (nil without the data option), which it hands
// to the session or returns to the pool.
func (s *server) handle(f *frame, data *[]byte) error {
	switch f.status {
	case statusNew:
		s.handleNew(f, data)
	case statusKeep:
		// Xray: data for an unknown session is discarded and answered with End.
		if data == nil {
			return nil
		}
		if f.destErr != nil {
			// A datagram to a destination that cannot be decoded is lost, as UDP
			// allows; the session and the connection go on.
			putBuf(data)
			return nil
		}
		if ss := s.session(f.id); ss != nil {
			ss.deliver(f.dest, data)
			return nil
		}
		putBuf(data)
		return s.writeFrame(f.id, statusEnd, 0, netip.AddrPort{}, nil)
	case statusEnd:
		// The client is done with the session in both directions (an Xray client
		// forgets it as it sends End), so this is a full close.
		putBuf(data)
		if ss := s.session(f.id); ss != nil {
			ss.end()
		}
	case statusKeepAlive:
		// Ignored, as Xray does; its data (if any) is dropped.
		putBuf(data)
	default:
		putBuf(data)
		return fmt.Errorf("%w: status %d", ErrFrame, f.status)
	}
	return nil
}

func (s *server) session(id uint16) muxSession {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.sessions[id]
}

// remove forgets ss if it is still the session under id.
func (s *server) remove(id uint16, ss muxSession) {
	s.mu.Lock()
	if s.sessions[id] == ss {
		delete(s.sessions, id)
	}
	s.mu.Unlock()
}

// handleNew opens the session of a New frame and hands it data (nil without the data
// option).
func (s *server) handleNew(f *frame, data *[]byte) {
	if old := s.session(f.id); old != nil {
		old.close(false) // a reused id replaces its session
	}
	// A destination that cannot be decoded ends this session only (the frame's length
	// prefixes still frame the stream); a TLS session refused by its first bytes is
	// refused before its target is dialled.
	refused := f.destErr != nil || f.network != netUDP && data != nil && s.refusesFirst(*data)
	s.mu.Lock()
	if refused || len(s.sessions) >= maxSessions || s.ctx.Err() != nil {
		s.mu.Unlock()
		putBuf(data)
		s.writeFrame(f.id, statusEnd, optError, netip.AddrPort{}, nil)
		return
	}
	var ss muxSession
	var run func()
	switch f.network {
	case netUDP:
		u := newUDPSession(s, f.id, f.dest)
		ss, run = u, u.sendLoop
	default:
		t := newTCPSession(s, f.id, f.dest)
		ss, run = t, t.run
	}
	s.sessions[f.id] = ss
	s.opened++
	s.mu.Unlock()
	s.wg.Go(run)
	if data != nil {
		ss.deliver(f.dest, data)
	}
}

// refusesFirst reports whether a TCP session whose client data starts with first is
// refused (ServerOptions.RefuseTLS).
func (s *server) refusesFirst(first []byte) bool {
	return s.opts.RefuseTLS && len(first) > 0 && first[0] == 0x16
}

// writeFrame sends one frame as a single write.
func (s *server) writeFrame(id uint16, status, option byte, src netip.AddrPort, data []byte) error {
	b := getBuf(maxSrcHeader + len(data))
	*b = appendFrame((*b)[:0], id, status, option, src, data)
	err := s.write(*b)
	putBuf(b)
	return err
}

// write sends b, whole frames, with one conn.Write.
func (s *server) write(b []byte) error {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	_, err := s.conn.Write(b)
	return err
}

func (s *server) closeAll() {
	s.mu.Lock()
	all := make([]muxSession, 0, len(s.sessions))
	for _, ss := range s.sessions {
		all = append(all, ss)
	}
	s.mu.Unlock()
	for _, ss := range all {
		ss.close(false)
	}
}
