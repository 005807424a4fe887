package censorlab

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// tcpPath is the censor's state for one relayed TCP connection.
type tcpPath struct {
	c              *Censor
	flow           *Flow
	client, server *net.TCPConn // server is nil until dialed

	eofs atomic.Int32 // directions that ended with a FIN

	mu     sync.Mutex
	action Action // guarded by mu; Pass, Freeze or Reset
}

// relayTCP carries one client connection to server, showing both
// directions to the middleboxes.
func (c *Censor) relayTCP(client *net.TCPConn, server netip.AddrPort) {
	from := client.RemoteAddr().(*net.TCPAddr).AddrPort()
	p := &tcpPath{c: c, flow: c.newFlow("tcp", from, server), client: client}
	defer c.closeFlow(p.flow)
	switch v := c.open(p.flow, p.cut); v.Action {
	case Reset:
		p.cut(Reset)
		return
	case Freeze:
		p.cut(Freeze)
		io.Copy(io.Discard, client)
		c.closeFlow(p.flow)
		client.Close()
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), Budget(5*time.Second))
	up, err := c.dial(ctx, "tcp", server)
	cancel()
	if err != nil {
		resetConn(client)
		return
	}
	p.mu.Lock()
	tcp, ok := up.(*net.TCPConn)
	if !ok {
		p.mu.Unlock()
		up.Close()
		resetConn(client)
		return
	}
	p.server = tcp
	cutEarly := p.action == Reset
	p.mu.Unlock()
	if cutEarly {
		p.cut(Reset)
		return
	}
	var wg sync.WaitGroup
	wg.Go(func() { p.pump(Up, p.server, client) })
	wg.Go(func() { p.pump(Down, client, p.server) })
	wg.Wait()
	client.Close()
	p.server.Close()
}

// cut applies a verdict to the whole connection.
func (p *tcpPath) cut(a Action) {
	p.mu.Lock()
	if a <= p.action {
		p.mu.Unlock()
		return
	}
	p.action = a
	server := p.server
	p.mu.Unlock()
	if a == Reset {
		p.c.closeFlow(p.flow) // the reset ends the flow before the peers see it
		resetConn(p.client)
		if server != nil {
			resetConn(server)
		}
	}
}

func (p *tcpPath) state() Action {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.action
}

// pump copies src to dst through the middleboxes until src ends.
func (p *tcpPath) pump(dir Dir, dst, src *net.TCPConn) {
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			switch p.state() {
			case Reset:
				return
			case Freeze: // the data just stops
			default:
				v := p.c.data(p.flow, dir, buf[:n])
				keep := n
				if v.Action != Pass {
					keep = v.Keep
					p.cut(v.Action)
				}
				if keep > 0 && v.Action != Reset {
					if _, werr := dst.Write(buf[:keep]); werr != nil {
						p.cut(Reset)
						return
					}
				}
			}
		}
		if err != nil {
			switch {
			case p.state() == Freeze:
				// The peer gave up on a frozen connection: forget it.
				p.c.closeFlow(p.flow)
				src.Close()
				dst.Close()
			case errors.Is(err, io.EOF):
				if p.eofs.Add(1) == 2 {
					p.c.closeFlow(p.flow) // FINs both ways: closed, before the peer sees the last one
				}
				dst.CloseWrite()
			case errors.Is(err, syscall.ECONNRESET):
				p.c.closeFlow(p.flow)
				resetConn(dst)
			default:
				p.c.closeFlow(p.flow)
				dst.Close()
			}
			return
		}
	}
}

// resetConn closes c so that the peer gets a TCP reset, not a FIN.
func resetConn(c *net.TCPConn) {
	c.SetLinger(0)
	c.Close()
}

// udpSession is one client address's association with the server.
type udpSession struct {
	flow     *Flow
	upstream net.Conn

	mu   sync.Mutex
	dead bool // guarded by mu; frozen or reset: drop everything
}

func (s *udpSession) kill(Action) {
	s.mu.Lock()
	s.dead = true
	s.mu.Unlock()
}

func (s *udpSession) isDead() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.dead
}

// ExposeUDP starts a relay on c.Listen that carries UDP datagrams to server
// through the censor, one flow per client address, and returns its address.
func (c *Censor) ExposeUDP(ctx context.Context, server netip.AddrPort) (netip.AddrPort, error) {
	var lc net.ListenConfig
	pc, err := lc.ListenPacket(ctx, "udp", c.listenAddr())
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("censorlab: relay listen: %w", err)
	}
	if err := c.track(pc); err != nil {
		return netip.AddrPort{}, err
	}
	uc := pc.(*net.UDPConn)
	c.wg.Go(func() { c.udpLoop(uc, server) })
	return uc.LocalAddr().(*net.UDPAddr).AddrPort(), nil
}

func (c *Censor) udpLoop(pc *net.UDPConn, server netip.AddrPort) {
	sessions := map[netip.AddrPort]*udpSession{}
	defer func() {
		for _, s := range sessions {
			if s.upstream != nil {
				s.upstream.Close()
			}
			c.closeFlow(s.flow)
		}
	}()
	buf := make([]byte, 64<<10)
	for {
		n, from, err := pc.ReadFromUDPAddrPort(buf)
		if err != nil {
			return
		}
		s := sessions[from]
		if s == nil {
			s = &udpSession{flow: c.newFlow("udp", from, server)}
			sessions[from] = s
			if v := c.open(s.flow, s.kill); v.Action != Pass {
				s.kill(v.Action)
				continue
			}
			up, err := c.dial(context.Background(), "udp", server)
			if err != nil {
				s.kill(Reset)
				continue
			}
			s.upstream = up
			c.wg.Go(func() { c.udpDown(pc, s, from) })
		}
		if s.isDead() {
			continue
		}
		if v := c.data(s.flow, Up, buf[:n]); v.Action != Pass {
			s.kill(v.Action)
			continue
		}
		s.upstream.Write(buf[:n])
	}
}

// udpDown carries the server's datagrams back to the client.
func (c *Censor) udpDown(pc *net.UDPConn, s *udpSession, client netip.AddrPort) {
	buf := make([]byte, 64<<10)
	for {
		n, err := s.upstream.Read(buf)
		if err != nil {
			return
		}
		if s.isDead() {
			continue
		}
		if v := c.data(s.flow, Down, buf[:n]); v.Action != Pass {
			s.kill(v.Action)
			continue
		}
		pc.WriteToUDPAddrPort(buf[:n], client)
	}
}
