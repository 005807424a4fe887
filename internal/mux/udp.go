package mux

import (
	"context"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"
)

type packet struct {
	dest string
	data *[]byte // pooled
}

// udpSession is one UDP session: datagrams from the client go to its destinations (the New
// frame's, or the one a Keep frame names, XUDP's full-cone addressing) through one dialed
// conn per destination; datagrams from those conns come back as Keep frames naming their
// source.
type udpSession struct {
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

func newUDPSession(s *server, id uint16, dest string) *udpSession {
	ctx, cancel := context.WithCancel(s.ctx)
	ss := &udpSession{
		srv:    s,
		id:     id,
		dest:   dest,
		ctx:    ctx,
		cancel: cancel,
		queue:  make(chan packet, queueLen),
		conns:  make(map[string]net.Conn),
	}
	ss.touch()
	return ss
}

func (ss *udpSession) touch() { ss.last.Store(time.Now().UnixNano()) }

// deliver queues a client datagram, dropping it if the queue is full (UDP semantics: the
// mux reader never waits for a UDP session).
func (ss *udpSession) deliver(dest string, data *[]byte) {
	if dest == "" {
		dest = ss.dest
	}
	select {
	case ss.queue <- packet{dest, data}:
	default:
		putBuf(data)
	}
}

// end is the client's End: the session stops at once.
func (ss *udpSession) end() { ss.close(false) }

func (ss *udpSession) close(notify bool) {
	if ss.closed.Swap(true) {
		return
	}
	ss.cancel()
	ss.srv.remove(ss.id, ss)
	if notify {
		ss.srv.writeFrame(ss.id, statusEnd, 0, netip.AddrPort{}, nil)
	}
}

// sendLoop owns the session's conns: it dials destinations on first use, writes queued
// datagrams, and ends the session when idle. It waits for the receive loops it started.
func (ss *udpSession) sendLoop() {
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
				if c, err = ss.srv.dial(ss.ctx, "udp", p.dest); err != nil {
					putBuf(p.data)
					continue // dropped, like any undeliverable datagram
				}
				ss.conns[p.dest] = c
				ss.wg.Go(func() { ss.receiveLoop(c) })
			}
			c.Write(*p.data)
			putBuf(p.data)
		}
	}
}

// udpRoom is the room a receive buffer keeps for the frame header before the datagram.
const udpRoom = 32

// receiveLoop frames datagrams arriving on c back to the client. Datagrams over 8 KiB are
// dropped: an Xray client would tear the whole mux connection down for one. It reads each
// into a pooled buffer, one byte over the limit to see those, behind room for the header,
// and holds no buffer while it waits.
func (ss *udpSession) receiveLoop(c net.Conn) {
	src := sourceOf(c)
	wait := readyWaiter(c)
	for {
		if wait != nil {
			wait()
		}
		b := getBuf(smallBuf)
		n, err := c.Read((*b)[udpRoom : udpRoom+maxPacketData+1])
		if n > 0 && n <= maxPacketData {
			ss.touch()
			var h [maxSrcHeader]byte
			hdr := appendHeader(h[:0], ss.id, statusKeep, optData, src, n)
			start := udpRoom - len(hdr)
			copy((*b)[start:], hdr)
			if ss.srv.write((*b)[start:udpRoom+n]) != nil {
				putBuf(b)
				ss.close(false)
				return
			}
		}
		putBuf(b)
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
