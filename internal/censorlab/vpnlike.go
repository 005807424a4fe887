package censorlab

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"
)

// OpenVPN-shaped TCP, as on the wire (no TLS control channel: the shape is
// what a DPI box matches):
//
//	every packet:  length(2) | opcode<<3 | key id(1) | body
//	client reset:  0x38 (P_CONTROL_HARD_RESET_CLIENT_V2) | session id(8) | ack len(1)=0 | packet id(4)
//	server reset:  0x40 (P_CONTROL_HARD_RESET_SERVER_V2) | session id(8) | ack len(1)=1 | acked id(4) | remote session(8) | packet id(4)
//	data:          0x48 (P_DATA_V2) | peer id(3) | AES-CTR payload (the first starts with "host:port\n")
const (
	ovpnResetClient = 7 << 3
	ovpnResetServer = 8 << 3
	ovpnData        = 9 << 3
)

// ovpnConn carries a byte stream in P_DATA_V2 packets.
type ovpnConn struct {
	net.Conn
	enc, dec cipher.Stream
	rbuf     []byte
	wmu      sync.Mutex
}

func ovpnStream(sid []byte, dir string) cipher.Stream {
	key := sha256.Sum256(append([]byte("ovpn "+dir), sid...))
	block, _ := aes.NewCipher(key[:])
	return cipher.NewCTR(block, make([]byte, aes.BlockSize))
}

func (c *ovpnConn) Write(p []byte) (int, error) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	total := 0
	for len(p) > 0 {
		n := min(len(p), 1400)
		pkt := make([]byte, 6+n)
		binary.BigEndian.PutUint16(pkt, uint16(4+n))
		pkt[2] = ovpnData
		c.enc.XORKeyStream(pkt[6:], p[:n])
		if _, err := c.Conn.Write(pkt); err != nil {
			return total, err
		}
		total += n
		p = p[n:]
	}
	return total, nil
}

func (c *ovpnConn) Read(p []byte) (int, error) {
	for len(c.rbuf) == 0 {
		var l [2]byte
		if _, err := io.ReadFull(c.Conn, l[:]); err != nil {
			return 0, err
		}
		pkt := make([]byte, binary.BigEndian.Uint16(l[:]))
		if _, err := io.ReadFull(c.Conn, pkt); err != nil {
			return 0, err
		}
		if len(pkt) < 4 || pkt[0] != ovpnData {
			return 0, errors.New("censorlab: openvpn: unexpected packet")
		}
		c.rbuf = pkt[4:]
		c.dec.XORKeyStream(c.rbuf, c.rbuf)
	}
	n := copy(p, c.rbuf)
	c.rbuf = c.rbuf[n:]
	return n, nil
}

func (c *ovpnConn) CloseWrite() error { return c.Conn.(*net.TCPConn).CloseWrite() }

// OpenVPNTCP is OpenVPN-shaped TCP.
func OpenVPNTCP() System {
	return System{
		Name: "openvpn-tcp", Baseline: true, Network: "tcp",
		CaughtBy: caught("signatures", "prober"),
		Start: func(ctx context.Context, env Env) (*Instance, error) {
			srv, err := listenTCP(ctx, env.IP, func(ctx context.Context, c net.Conn) {
				c.SetDeadline(time.Now().Add(Budget(10 * time.Second)))
				reset := make([]byte, 16)
				if _, err := io.ReadFull(c, reset); err != nil || reset[2] != ovpnResetClient {
					return
				}
				sid := reset[3:11]
				reply := make([]byte, 28)
				binary.BigEndian.PutUint16(reply, 26)
				reply[2] = ovpnResetServer
				rand.Read(reply[3:11])
				reply[11] = 1
				copy(reply[16:24], sid)
				if _, err := c.Write(reply); err != nil {
					return
				}
				oc := &ovpnConn{Conn: c, enc: ovpnStream(sid, "down"), dec: ovpnStream(sid, "up")}
				target, err := readLine(oc)
				if err != nil {
					return
				}
				c.SetDeadline(time.Time{})
				relayTo(ctx, oc, target)
			})
			if err != nil {
				return nil, err
			}
			return &Instance{Server: srv.addr(), Close: srv.Close,
				Dial: func(ctx context.Context, via netip.AddrPort, target string) (net.Conn, error) {
					c, err := dialVia(ctx, via)
					if err != nil {
						return nil, err
					}
					reset := make([]byte, 16)
					binary.BigEndian.PutUint16(reset, 14)
					reset[2] = ovpnResetClient
					rand.Read(reset[3:11])
					c.SetDeadline(time.Now().Add(Budget(5 * time.Second)))
					if _, err := c.Write(reset); err != nil {
						c.Close()
						return nil, err
					}
					reply := make([]byte, 28)
					if _, err := io.ReadFull(c, reply); err != nil || reply[2] != ovpnResetServer {
						c.Close()
						return nil, errors.New("censorlab: openvpn: no server reset")
					}
					c.SetDeadline(time.Time{})
					oc := &ovpnConn{Conn: c, enc: ovpnStream(reset[3:11], "up"), dec: ovpnStream(reset[3:11], "down")}
					if _, err := io.WriteString(oc, target+"\n"); err != nil {
						c.Close()
						return nil, err
					}
					return oc, nil
				}}, nil
		},
	}
}

// WireGuard-shaped UDP, message types and sizes as WireGuard's (the
// cryptography is not: only the shape matters to a DPI box):
//
//	initiation (148):  01 00 00 00 | sender(4) | random(140)
//	response    (92):  02 00 00 00 | sender(4) | receiver(4) | random(80)
//	transport:         04 00 00 00 | receiver(4) | counter(8) | kind(1) | seq(4) | data | tag(16)
//
// The transport messages carry a stop-and-wait reliable byte stream
// (kind 0 data, 1 ack, 2 close); its first bytes are "host:port\n".
const (
	wgData  = 0
	wgAck   = 1
	wgClose = 2
	wgChunk = 8000
)

// wgStream is one reliable stream over transport messages. App is the
// net.Conn the user of the stream reads and writes (one end of a net.Pipe,
// so deadlines work).
type wgStream struct {
	app, pump net.Conn
	send      func([]byte) error
	in        chan []byte // transport payloads: kind | seq | data
	acks      chan uint32
	deliver   chan []byte
	done      chan struct{}
	once      sync.Once
	counter   atomic.Uint64
	rseq      uint32
}

// newWGStream starts a stream whose loops wg waits for; they end once the
// app side is closed or the stream fails.
func newWGStream(wg *sync.WaitGroup, send func([]byte) error) *wgStream {
	a, b := net.Pipe()
	s := &wgStream{app: a, pump: b, send: send, in: make(chan []byte, 256), acks: make(chan uint32, 64),
		deliver: make(chan []byte, 4096), done: make(chan struct{})}
	wg.Go(s.sendLoop)
	wg.Go(s.recvLoop)
	wg.Go(s.deliverLoop)
	return s
}

func (s *wgStream) close() {
	s.once.Do(func() {
		close(s.done)
		s.pump.Close()
	})
}

func (s *wgStream) transport(kind byte, seq uint32, data []byte) error {
	m := make([]byte, 16, 16+5+len(data)+16)
	m[0] = 4
	binary.LittleEndian.PutUint64(m[8:], s.counter.Add(1))
	m = append(m, kind)
	m = binary.BigEndian.AppendUint32(m, seq)
	m = append(m, data...)
	m = append(m, make([]byte, 16)...)
	return s.send(m)
}

// sendLoop sends what the app writes, one chunk at a time, until acked.
func (s *wgStream) sendLoop() {
	defer s.close()
	buf := make([]byte, wgChunk)
	var seq uint32
	for {
		n, err := s.pump.Read(buf)
		if err != nil {
			s.transport(wgClose, seq, nil)
			return
		}
		acked := false
		for try := 0; try < 25 && !acked; try++ {
			s.transport(wgData, seq, buf[:n])
			t := time.NewTimer(Budget(200 * time.Millisecond))
		wait:
			for {
				select {
				case a := <-s.acks:
					if a == seq {
						acked = true
						break wait
					}
				case <-t.C:
					break wait
				case <-s.done:
					t.Stop()
					return
				}
			}
			t.Stop()
		}
		if !acked {
			return
		}
		seq++
	}
}

func (s *wgStream) recvLoop() {
	for {
		var p []byte
		select {
		case p = <-s.in:
		case <-s.done:
			return
		}
		if len(p) < 5 {
			continue
		}
		kind, seq, data := p[0], binary.BigEndian.Uint32(p[1:5]), p[5:]
		switch kind {
		case wgAck:
			select {
			case s.acks <- seq:
			default:
			}
		case wgClose:
			close(s.deliver)
			return
		case wgData:
			if seq == s.rseq {
				select {
				case s.deliver <- data:
				case <-s.done:
					return
				}
				s.rseq++
			}
			if seq < s.rseq {
				s.transport(wgAck, seq, nil)
			}
		}
	}
}

func (s *wgStream) deliverLoop() {
	defer s.close()
	for {
		select {
		case d, ok := <-s.deliver:
			if !ok {
				return
			}
			if _, err := s.pump.Write(d); err != nil {
				return
			}
		case <-s.done:
			return
		}
	}
}

// WireGuardLike is WireGuard-shaped UDP.
func WireGuardLike() System {
	return System{
		Name: "wireguard-udp", Baseline: true, Network: "udp",
		CaughtBy: []string{"signatures", "ip-blocklist", "russia-2026"},
		Start:    startWG,
	}
}

func startWG(ctx context.Context, env Env) (*Instance, error) {
	pc, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(env.IP, 0)))
	if err != nil {
		return nil, err
	}
	sctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	var wg sync.WaitGroup
	wg.Go(func() {
		sessions := map[netip.AddrPort]*wgStream{}
		defer func() {
			for _, s := range sessions {
				s.close()
			}
		}()
		buf := make([]byte, 64<<10)
		for {
			n, from, err := pc.ReadFromUDPAddrPort(buf)
			if err != nil {
				return
			}
			switch {
			case n == 148 && buf[0] == 1:
				resp := make([]byte, 92)
				resp[0] = 2
				rand.Read(resp[4:])
				copy(resp[8:12], buf[4:8])
				pc.WriteToUDPAddrPort(resp, from)
				if sessions[from] == nil {
					s := newWGStream(&wg, func(m []byte) error { _, err := pc.WriteToUDPAddrPort(m, from); return err })
					sessions[from] = s
					wg.Go(func() {
						defer s.app.Close()
						target, err := readLine(s.app)
						if err == nil {
							relayTo(sctx, s.app, target)
						}
					})
				}
			case n >= 16+5+16 && buf[0] == 4:
				if s := sessions[from]; s != nil {
					select {
					case s.in <- append([]byte(nil), buf[16:n-16]...):
					default:
					}
				}
			}
		}
	})
	var clients sync.WaitGroup // client streams; they end when the workload closes them
	inst := &Instance{
		Server: pc.LocalAddr().(*net.UDPAddr).AddrPort(),
		Close: func() error {
			cancel()
			err := pc.Close()
			wg.Wait()
			clients.Wait()
			return err
		},
		Dial: func(ctx context.Context, via netip.AddrPort, target string) (net.Conn, error) {
			uc, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(via))
			if err != nil {
				return nil, err
			}
			init := make([]byte, 148)
			init[0] = 1
			rand.Read(init[4:])
			buf := make([]byte, 64<<10)
			ok := false
			for try := 0; try < 2 && !ok; try++ {
				uc.Write(init)
				uc.SetReadDeadline(time.Now().Add(Budget(200 * time.Millisecond)))
				if n, err := uc.Read(buf); err == nil && n == 92 && buf[0] == 2 {
					ok = true
				}
			}
			if !ok {
				uc.Close()
				return nil, errors.New("censorlab: wireguard: no handshake response")
			}
			uc.SetReadDeadline(time.Time{})
			s := newWGStream(&clients, func(m []byte) error { _, err := uc.Write(m); return err })
			clients.Go(func() {
				defer uc.Close()
				b := make([]byte, 64<<10)
				for {
					n, err := uc.Read(b)
					if err != nil {
						s.close()
						return
					}
					if n >= 16+5+16 && b[0] == 4 {
						select {
						case s.in <- append([]byte(nil), b[16:n-16]...):
						case <-s.done:
							return
						}
					}
				}
			})
			clients.Go(func() { <-s.done; uc.Close() })
			if _, err := io.WriteString(s.app, target+"\n"); err != nil {
				s.app.Close()
				return nil, err
			}
			return s.app, nil
		},
	}
	return inst, nil
}
