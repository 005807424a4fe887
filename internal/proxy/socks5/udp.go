package socks5

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

const (
	// maxUDPSessions bounds the destinations one association relays to at
	// once; datagrams for further destinations are dropped.
	maxUDPSessions = 256
	// udpQueueLen is how many datagrams wait for one destination's upstream
	// (while it dials, or when it is slow) before further ones are dropped.
	udpQueueLen = 32
	maxDatagram = 64 << 10
)

// udpAssociate serves UDP ASSOCIATE on the control conn: bind the relay
// socket on the listener's IP, reply with its address, and relay until the
// control conn ends.
func (s *Server) udpAssociate(ctx context.Context, conn net.Conn) error {
	local, ok1 := conn.LocalAddr().(*net.TCPAddr)
	remote, ok2 := conn.RemoteAddr().(*net.TCPAddr)
	if !ok1 || !ok2 {
		s.refuse(conn, ReplyGeneralFailure)
		return errors.New("socks5: udp associate: control connection is not TCP")
	}
	pc, err := net.ListenUDP("udp", &net.UDPAddr{IP: local.IP, Zone: local.Zone})
	if err != nil {
		s.refuse(conn, ReplyGeneralFailure)
		return fmt.Errorf("socks5: udp associate: %w", err)
	}
	actx, cancel := context.WithCancel(ctx)
	a := &association{
		srv:      s,
		ctx:      actx,
		pc:       pc,
		clientIP: remote.AddrPort().Addr().Unmap(),
		sessions: make(map[string]*udpSession),
	}
	defer a.close(cancel)

	if err := s.writeReply(conn, ReplySucceeded, addrFromNet(pc.LocalAddr())); err != nil {
		return err
	}
	a.wg.Go(a.clientLoop)
	// The association lives as long as the control connection; anything the
	// client sends on it is ignored.
	if _, err := io.Copy(io.Discard, conn); err != nil && ctx.Err() == nil && !errors.Is(err, net.ErrClosed) {
		return fmt.Errorf("socks5: udp associate: control connection: %w", err)
	}
	return nil
}

// association is one UDP ASSOCIATE: the relay socket facing the client and an
// upstream per destination.
type association struct {
	srv      *Server
	ctx      context.Context // cancelled when the association ends
	pc       *net.UDPConn
	clientIP netip.Addr
	// peer is the client's UDP address: the first source address seen from
	// clientIP. Written by clientLoop before it starts the first session
	// goroutine and never again, so sessions read it without locking.
	peer netip.AddrPort
	wg   sync.WaitGroup // clientLoop and sessions; Add only under mu while !closed

	mu       sync.Mutex
	closed   bool                   // guarded by mu
	sessions map[string]*udpSession // by destination; guarded by mu
}

// close ends the association and waits for all its goroutines.
func (a *association) close(cancel context.CancelFunc) {
	a.mu.Lock()
	a.closed = true
	a.mu.Unlock()
	cancel()
	a.pc.Close()
	a.wg.Wait()
}

// clientLoop reads datagrams from the client and queues them for their
// destination's upstream.
func (a *association) clientLoop() {
	buf := make([]byte, maxDatagram)
	for {
		n, from, err := a.pc.ReadFromUDPAddrPort(buf)
		if err != nil {
			if a.ctx.Err() == nil && !errors.Is(err, net.ErrClosed) {
				a.srv.logger().Debug("socks5: udp relay read", "err", err)
			}
			return
		}
		from = netip.AddrPortFrom(from.Addr().Unmap(), from.Port())
		if from.Addr() != a.clientIP {
			continue
		}
		if !a.peer.IsValid() {
			a.peer = from
		} else if from != a.peer {
			continue
		}
		dst, payload, err := parseUDPHeader(buf[:n])
		if err != nil {
			continue
		}
		a.send(dst, payload)
	}
}

// send queues a copy of payload for dst, starting dst's session if needed.
// It drops the datagram when the queue is full or there are too many
// sessions, as a congested UDP path would.
func (a *association) send(dst addr, payload []byte) {
	key := dst.String()
	a.mu.Lock()
	sess := a.sessions[key]
	if sess == nil {
		if a.closed || len(a.sessions) >= maxUDPSessions {
			a.mu.Unlock()
			return
		}
		sess = &udpSession{
			key:   key,
			hdr:   appendUDPHeader(nil, dst),
			queue: make(chan []byte, udpQueueLen),
		}
		sess.touch()
		a.sessions[key] = sess
		a.wg.Go(func() { a.runSession(sess) })
	}
	// Queued under mu: a session that goes idle retires under mu only
	// with an empty queue (retire), so no datagram is left in the queue
	// of a session that has ended.
	select {
	case sess.queue <- append([]byte(nil), payload...):
	default:
	}
	a.mu.Unlock()
}

// udpSession relays between the client and one destination.
type udpSession struct {
	key        string       // destination, host:port
	hdr        []byte       // UDP header put in front of replies: the destination as the client sent it
	queue      chan []byte  // datagrams from the client
	lastActive atomic.Int64 // unix nanoseconds of the last datagram either way
}

func (u *udpSession) touch() { u.lastActive.Store(time.Now().UnixNano()) }

func (u *udpSession) idleFor() time.Duration {
	return time.Duration(time.Now().UnixNano() - u.lastActive.Load())
}

func (a *association) removeSession(sess *udpSession) {
	a.mu.Lock()
	if a.sessions[sess.key] == sess {
		delete(a.sessions, sess.key)
	}
	a.mu.Unlock()
}

// retire removes an idle session, unless a datagram was queued for it
// meanwhile: then it stays, and reports false.
func (a *association) retire(sess *udpSession) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	if len(sess.queue) > 0 {
		return false
	}
	if a.sessions[sess.key] == sess {
		delete(a.sessions, sess.key)
	}
	return true
}

// runSession dials the destination, then writes queued datagrams upstream
// until the session is idle, the upstream fails or the association ends.
func (a *association) runSession(sess *udpSession) {
	defer a.removeSession(sess)
	dctx, cancel := context.WithTimeout(a.ctx, a.srv.dialTimeout())
	up, err := a.srv.Dialer.DialContext(dctx, "udp", sess.key)
	cancel()
	if err != nil {
		a.srv.logger().Debug("socks5: udp dial", "dst", sess.key, "err", err)
		return
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		a.upstreamLoop(sess, up)
	}()
	defer func() {
		up.Close() // ends upstreamLoop
		<-done
	}()

	idle := a.srv.udpIdleTimeout()
	timer := time.NewTimer(idle)
	defer timer.Stop()
	for {
		select {
		case p := <-sess.queue:
			if _, err := up.Write(p); err != nil {
				a.srv.logger().Debug("socks5: udp write", "dst", sess.key, "err", err)
				a.removeSession(sess)
				return
			}
			sess.touch()
		case <-timer.C:
			if d := sess.idleFor(); d < idle {
				timer.Reset(idle - d)
				continue
			}
			if !a.retire(sess) {
				timer.Reset(idle) // a datagram came as it went idle
				continue
			}
			return
		case <-done:
			a.removeSession(sess)
			return
		case <-a.ctx.Done():
			return
		}
	}
}

// upstreamLoop sends each datagram from up to the client, behind sess.hdr.
func (a *association) upstreamLoop(sess *udpSession, up net.Conn) {
	buf := make([]byte, len(sess.hdr)+maxDatagram)
	n0 := copy(buf, sess.hdr)
	for {
		n, err := up.Read(buf[n0:])
		if err != nil {
			return
		}
		sess.touch()
		if _, err := a.pc.WriteToUDPAddrPort(buf[:n0+n], a.peer); err != nil && a.ctx.Err() != nil {
			return
		}
	}
}
