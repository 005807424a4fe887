package mux

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"
)

// DialUDP opens a UDP "connection" to address (host:port, domain not resolved by the caller):
// one Write is one datagram to it, one Read is one datagram from it. The server's egress
// policy belongs in it.
type DialUDP func(ctx context.Context, address string) (net.Conn, error)

// Tunables (variables so tests can shorten them).
var (
	// IdleTimeout ends a UDP session with no datagram in either direction for this long
	// (Xray's default connIdle is 300 s).
	IdleTimeout = 300 * time.Second
	// maxSessions bounds the sessions of one mux connection.
	maxSessions = 128
	// queueLen is how many client datagrams a session buffers before dropping (UDP semantics).
	queueLen = 64
)

// ServerMux serves the client end of one mux.cool connection (a VLESS CommandMux conn):
// it demultiplexes UDP sessions (plain mux UDP and XUDP, the default of Xray clients with
// Vision) onto conns from dialUDP and frames the answers back. TCP sessions are refused with
// an End frame carrying the error option, as Xray servers refuse them for Vision users.
// XUDP's GlobalID (session migration between connections) is read but not used.
//
// It returns when conn fails (nil on a clean EOF) or ctx is cancelled, after all its
// goroutines have stopped. It does not close conn, but sets its deadlines in the past on
// the way out to unblock its own writers.
func ServerMux(ctx context.Context, conn net.Conn, dialUDP DialUDP) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	s := &server{ctx: ctx, conn: conn, dial: dialUDP, sessions: make(map[uint16]*session)}
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	err := s.readLoop()
	interrupted := ctx.Err() != nil
	cancel()
	s.closeAll()
	conn.SetDeadline(time.Unix(1, 0))
	s.wg.Wait()
	if interrupted || errors.Is(err, io.EOF) {
		return nil
	}
	return fmt.Errorf("mux: %w", err)
}

type server struct {
	ctx  context.Context
	conn net.Conn
	dial DialUDP
	wg   sync.WaitGroup

	wmu sync.Mutex // serialises frames on conn

	mu       sync.Mutex // guards sessions
	sessions map[uint16]*session
}

// readLoop handles frames until the conn fails.
func (s *server) readLoop() error {
	fr := &frameReader{r: s.conn}
	for {
		f, err := fr.read()
		if err != nil {
			return err
		}
		switch f.status {
		case statusNew:
			s.handleNew(f)
		case statusKeep:
			if ss := s.session(f.id); ss != nil {
				if f.option&optData != 0 {
					ss.enqueue(f.dest, f.data)
				}
			} else if err := s.writeFrame(f.id, statusEnd, 0, netip.AddrPort{}, nil); err != nil {
				return err
			}
		case statusEnd:
			if ss := s.session(f.id); ss != nil {
				ss.close(false)
			}
		case statusKeepAlive:
		default:
			return fmt.Errorf("%w: status %d", ErrFrame, f.status)
		}
	}
}

func (s *server) session(id uint16) *session {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.sessions[id]
}

func (s *server) handleNew(f *frame) {
	if f.network != netUDP {
		s.writeFrame(f.id, statusEnd, optError, netip.AddrPort{}, nil)
		return
	}
	s.mu.Lock()
	if old := s.sessions[f.id]; old != nil {
		s.mu.Unlock()
		old.close(false)
		s.mu.Lock()
	}
	if len(s.sessions) >= maxSessions {
		s.mu.Unlock()
		s.writeFrame(f.id, statusEnd, optError, netip.AddrPort{}, nil)
		return
	}
	ctx, cancel := context.WithCancel(s.ctx)
	ss := &session{
		srv:    s,
		id:     f.id,
		dest:   f.dest,
		ctx:    ctx,
		cancel: cancel,
		queue:  make(chan packet, queueLen),
		conns:  make(map[string]net.Conn),
	}
	ss.touch()
	s.sessions[f.id] = ss
	s.mu.Unlock()
	if f.option&optData != 0 {
		ss.enqueue(f.dest, f.data)
	}
	s.wg.Go(ss.sendLoop)
}

// writeFrame sends one frame as a single write.
func (s *server) writeFrame(id uint16, status, option byte, src netip.AddrPort, data []byte) error {
	b := appendFrame(make([]byte, 0, 32+len(data)), id, status, option, src, data)
	s.wmu.Lock()
	defer s.wmu.Unlock()
	_, err := s.conn.Write(b)
	return err
}

func (s *server) closeAll() {
	s.mu.Lock()
	all := make([]*session, 0, len(s.sessions))
	for _, ss := range s.sessions {
		all = append(all, ss)
	}
	s.mu.Unlock()
	for _, ss := range all {
		ss.close(false)
	}
}

type packet struct {
	dest string
	data []byte
}

// session is one UDP session: datagrams from the client go to its destinations (the New
// frame's, or the one a Keep frame names, XUDP's full-cone addressing) through one dialed
// conn per destination; datagrams from those conns come back as Keep frames naming their
// source.
type session struct {
	srv    *server
	id     uint16
	dest   string
	ctx    context.Context
	cancel context.CancelFunc
	queue  chan packet
	last   atomic.Int64 // unix nanoseconds of the last datagram either way
	closed atomic.Bool

	conns map[string]net.Conn // owned by sendLoop
	wg    sync.WaitGroup      // receive loops
}

func (ss *session) touch() { ss.last.Store(time.Now().UnixNano()) }

// enqueue copies a client datagram into the session's queue, dropping it if the queue is full.
func (ss *session) enqueue(dest string, data []byte) {
	if dest == "" {
		dest = ss.dest
	}
	select {
	case ss.queue <- packet{dest, append([]byte(nil), data...)}:
	default:
	}
}

// close ends the session; notify sends an End frame (the session ended on our side).
func (ss *session) close(notify bool) {
	if ss.closed.Swap(true) {
		return
	}
	ss.cancel()
	s := ss.srv
	s.mu.Lock()
	if s.sessions[ss.id] == ss {
		delete(s.sessions, ss.id)
	}
	s.mu.Unlock()
	if notify {
		s.writeFrame(ss.id, statusEnd, 0, netip.AddrPort{}, nil)
	}
}

// sendLoop owns the session's conns: it dials destinations on first use, writes queued
// datagrams, and ends the session when idle. It waits for the receive loops it started.
func (ss *session) sendLoop() {
	defer func() {
		for _, c := range ss.conns {
			c.Close()
		}
		ss.wg.Wait()
	}()
	idle := time.NewTimer(IdleTimeout)
	defer idle.Stop()
	for {
		select {
		case <-ss.ctx.Done():
			return
		case <-idle.C:
			if left := IdleTimeout - time.Since(time.Unix(0, ss.last.Load())); left > 0 {
				idle.Reset(left)
				continue
			}
			ss.close(true)
			return
		case p := <-ss.queue:
			ss.touch()
			c := ss.conns[p.dest]
			if c == nil {
				var err error
				if c, err = ss.srv.dial(ss.ctx, p.dest); err != nil {
					continue // dropped, like any undeliverable datagram
				}
				ss.conns[p.dest] = c
				ss.wg.Go(func() { ss.receiveLoop(c) })
			}
			c.Write(p.data)
		}
	}
}

// receiveLoop frames datagrams arriving on c back to the client.
func (ss *session) receiveLoop(c net.Conn) {
	src := sourceOf(c)
	buf := make([]byte, 65535)
	for {
		n, err := c.Read(buf)
		if n > 0 {
			ss.touch()
			if ss.srv.writeFrame(ss.id, statusKeep, optData, src, buf[:n]) != nil {
				ss.close(false)
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// sourceOf is the address response frames name: the conn's remote IP address and port.
func sourceOf(c net.Conn) netip.AddrPort {
	if ua, ok := c.RemoteAddr().(*net.UDPAddr); ok {
		return ua.AddrPort()
	}
	ap, _ := netip.ParseAddrPort(c.RemoteAddr().String())
	return ap
}
