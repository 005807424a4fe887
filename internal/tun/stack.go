package tun

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/burrow-vpn/burrow/internal/bidi"
	"gvisor.dev/gvisor/pkg/buffer"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/adapters/gonet"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/link/channel"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv4"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv6"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
	"gvisor.dev/gvisor/pkg/tcpip/transport/icmp"
	"gvisor.dev/gvisor/pkg/tcpip/transport/tcp"
	"gvisor.dev/gvisor/pkg/tcpip/transport/udp"
	"gvisor.dev/gvisor/pkg/waiter"
)

// Config is what the Stack hands flows to. Dial is required.
type Config struct {
	// Dial opens the upstream for one flow: network "tcp" or "udp", dst the
	// address the application sent to. A "udp" conn must be message-oriented
	// (one Read or Write is one datagram).
	Dial func(ctx context.Context, network string, dst netip.AddrPort) (net.Conn, error)
	// DNS answers one DNS query (a whole DNS message, no length prefix).
	// Every UDP or TCP packet to port 53 goes here. Nil: port 53 is dialled
	// like any other port.
	DNS func(ctx context.Context, query []byte) ([]byte, error)
	// DialTimeout bounds each Dial. Default 20s.
	DialTimeout time.Duration
	// UDPIdle closes a UDP flow after this long without a datagram either
	// way. Default 60s.
	UDPIdle time.Duration
	// Logger receives per-flow errors at debug level; nil discards.
	Logger *slog.Logger
}

const nicID = 1

// Stack is a running netstack bound to one Device.
type Stack struct {
	cfg Config
	dev Device
	ep  *channel.Endpoint
	s   *stack.Stack

	ctx    context.Context
	cancel context.CancelFunc

	mu     sync.Mutex
	closed bool           // guarded by mu; no new flows once set
	flows  sync.WaitGroup // flow goroutines; Add under mu while !closed
}

// NewStack builds a stack for dev. Run starts it.
func NewStack(dev Device, cfg Config) (*Stack, error) {
	if cfg.Dial == nil {
		return nil, errors.New("tun: Config.Dial is required")
	}
	if cfg.DialTimeout == 0 {
		cfg.DialTimeout = 20 * time.Second
	}
	if cfg.UDPIdle == 0 {
		cfg.UDPIdle = 60 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	st := &Stack{cfg: cfg, dev: dev}
	st.ctx, st.cancel = context.WithCancel(context.Background())
	st.ep = channel.New(1024, uint32(dev.MTU()), "")
	st.s = stack.New(stack.Options{
		NetworkProtocols:   []stack.NetworkProtocolFactory{ipv4.NewProtocol, ipv6.NewProtocol},
		TransportProtocols: []stack.TransportProtocolFactory{tcp.NewProtocol, udp.NewProtocol, icmp.NewProtocol4, icmp.NewProtocol6},
	})
	fail := func(what string, err tcpip.Error) (*Stack, error) {
		st.s.Close()
		return nil, fmt.Errorf("tun: netstack %s: %s", what, err)
	}
	if err := st.s.CreateNIC(nicID, st.ep); err != nil {
		return fail("create nic", err)
	}
	// Answer for every address: the NIC is the whole Internet to the kernel.
	if err := st.s.SetPromiscuousMode(nicID, true); err != nil {
		return fail("promiscuous", err)
	}
	if err := st.s.SetSpoofing(nicID, true); err != nil {
		return fail("spoofing", err)
	}
	st.s.SetRouteTable([]tcpip.Route{
		{Destination: header.IPv4EmptySubnet, NIC: nicID},
		{Destination: header.IPv6EmptySubnet, NIC: nicID},
	})
	sack := tcpip.TCPSACKEnabled(true)
	st.s.SetTransportProtocolOption(tcp.ProtocolNumber, &sack)
	rcv := tcpip.TCPReceiveBufferSizeRangeOption{Min: 4 << 10, Default: 1 << 20, Max: 8 << 20}
	st.s.SetTransportProtocolOption(tcp.ProtocolNumber, &rcv)
	snd := tcpip.TCPSendBufferSizeRangeOption{Min: 4 << 10, Default: 1 << 20, Max: 8 << 20}
	st.s.SetTransportProtocolOption(tcp.ProtocolNumber, &snd)
	moderate := tcpip.TCPModerateReceiveBufferOption(true)
	st.s.SetTransportProtocolOption(tcp.ProtocolNumber, &moderate)

	tcpFwd := tcp.NewForwarder(st.s, 0, 1024, st.handleTCP)
	st.s.SetTransportProtocolHandler(tcp.ProtocolNumber, tcpFwd.HandlePacket)
	udpFwd := udp.NewForwarder(st.s, st.handleUDP)
	st.s.SetTransportProtocolHandler(udp.ProtocolNumber, udpFwd.HandlePacket)
	return st, nil
}

// Run moves packets between the device and the stack until ctx ends or the
// device fails, then closes the device and the stack and waits for every
// flow and its own goroutines to finish.
func (st *Stack) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	errc := make(chan error, 2)
	wg.Add(2)
	go func() { defer wg.Done(); errc <- st.deviceToStack() }()
	go func() { defer wg.Done(); errc <- st.stackToDevice() }()
	var err error
	select {
	case <-ctx.Done():
	case err = <-errc:
	}
	st.shutdown()
	st.dev.Close()
	wg.Wait()
	st.flows.Wait()
	st.s.Close()
	st.s.Wait()
	return err
}

func (st *Stack) shutdown() {
	st.mu.Lock()
	st.closed = true
	st.mu.Unlock()
	st.cancel()
	st.ep.Close()
}

// startFlow registers a flow goroutine; false once the stack is shutting down.
func (st *Stack) startFlow() bool {
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.closed {
		return false
	}
	st.flows.Add(1)
	return true
}

func (st *Stack) deviceToStack() error {
	buf := make([]byte, st.dev.MTU()+64)
	for {
		n, err := st.dev.Read(buf)
		if err != nil {
			return fmt.Errorf("tun: read %s: %w", st.dev.Name(), err)
		}
		if n == 0 || st.ctx.Err() != nil {
			continue
		}
		if echoReply(buf[:n]) {
			if _, err := st.dev.Write(buf[:n]); err != nil && st.ctx.Err() == nil {
				st.cfg.Logger.Debug("echo reply", "err", err)
			}
			continue
		}
		var proto tcpip.NetworkProtocolNumber
		switch buf[0] >> 4 {
		case 4:
			proto = ipv4.ProtocolNumber
		case 6:
			proto = ipv6.ProtocolNumber
		default:
			continue
		}
		// MakeWithData copies into a pooled chunk, so buf can be reused.
		pkt := stack.NewPacketBuffer(stack.PacketBufferOptions{Payload: buffer.MakeWithData(buf[:n])})
		st.ep.InjectInbound(proto, pkt)
		pkt.DecRef()
	}
}

func (st *Stack) stackToDevice() error {
	buf := make([]byte, st.dev.MTU()+64)
	for {
		pkt := st.ep.ReadContext(st.ctx)
		if pkt == nil {
			return nil
		}
		n := 0
		for _, s := range pkt.AsSlices() {
			n += copy(buf[n:], s)
		}
		pkt.DecRef()
		if _, err := st.dev.Write(buf[:n]); err != nil {
			if st.ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("tun: write %s: %w", st.dev.Name(), err)
		}
	}
}

func addrPort(a tcpip.Address, port uint16) netip.AddrPort {
	ip, _ := netip.AddrFromSlice(a.AsSlice())
	return netip.AddrPortFrom(ip.Unmap(), port)
}

// handleTCP runs in its own goroutine (the forwarder starts one per SYN).
func (st *Stack) handleTCP(r *tcp.ForwarderRequest) {
	if !st.startFlow() {
		r.Complete(true)
		return
	}
	defer st.flows.Done()
	id := r.ID()
	dst := addrPort(id.LocalAddress, id.LocalPort)
	log := st.cfg.Logger.With("tcp", dst.String())

	var up net.Conn
	dns := dst.Port() == 53 && st.cfg.DNS != nil
	if !dns {
		ctx, cancel := context.WithTimeout(st.ctx, st.cfg.DialTimeout)
		var err error
		up, err = st.cfg.Dial(ctx, "tcp", dst)
		cancel()
		if err != nil {
			log.Debug("dial failed", "err", err)
			r.Complete(true)
			return
		}
	}
	var wq waiter.Queue
	ep, terr := r.CreateEndpoint(&wq)
	if terr != nil {
		if up != nil {
			up.Close()
		}
		r.Complete(true)
		return
	}
	r.Complete(false)
	ep.SocketOptions().SetKeepAlive(true)
	conn := gonet.NewTCPConn(&wq, ep)
	stop := context.AfterFunc(st.ctx, func() {
		conn.Close()
		if up != nil {
			up.Close()
		}
	})
	defer stop()
	if dns {
		st.serveDNSTCP(conn)
		conn.Close()
		return
	}
	bidi.Copy(st.ctx, conn, up)
}

// serveDNSTCP answers DNS over TCP (two-byte length prefix) on conn.
func (st *Stack) serveDNSTCP(conn net.Conn) {
	var hdr [2]byte
	for {
		conn.SetReadDeadline(time.Now().Add(st.cfg.UDPIdle))
		if _, err := io.ReadFull(conn, hdr[:]); err != nil {
			return
		}
		q := make([]byte, binary.BigEndian.Uint16(hdr[:]))
		if _, err := io.ReadFull(conn, q); err != nil {
			return
		}
		ctx, cancel := context.WithTimeout(st.ctx, st.cfg.DialTimeout)
		resp, err := st.cfg.DNS(ctx, q)
		cancel()
		if err != nil || len(resp) > 0xffff {
			return
		}
		out := binary.BigEndian.AppendUint16(nil, uint16(len(resp)))
		if _, err := conn.Write(append(out, resp...)); err != nil {
			return
		}
	}
}

// handleUDP runs on the packet path and must not block: it creates the
// endpoint for the new flow and hands it to a goroutine.
func (st *Stack) handleUDP(r *udp.ForwarderRequest) bool {
	if !st.startFlow() {
		return true
	}
	id := r.ID()
	dst := addrPort(id.LocalAddress, id.LocalPort)
	var wq waiter.Queue
	ep, terr := r.CreateEndpoint(&wq)
	if terr != nil {
		st.flows.Done()
		return true
	}
	conn := gonet.NewUDPConn(&wq, ep)
	go func() {
		defer st.flows.Done()
		defer conn.Close()
		stop := context.AfterFunc(st.ctx, func() { conn.Close() })
		defer stop()
		if dst.Port() == 53 && st.cfg.DNS != nil {
			st.serveDNSUDP(conn)
			return
		}
		st.relayUDP(conn, dst)
	}()
	return true
}

func (st *Stack) serveDNSUDP(conn *gonet.UDPConn) {
	buf := make([]byte, 65535)
	for {
		conn.SetReadDeadline(time.Now().Add(st.cfg.UDPIdle))
		n, err := conn.Read(buf)
		if err != nil {
			return
		}
		q := append([]byte(nil), buf[:n]...)
		// Answer queries concurrently: one slow name must not hold up others.
		if !st.startFlow() {
			return
		}
		go func() {
			defer st.flows.Done()
			ctx, cancel := context.WithTimeout(st.ctx, st.cfg.DialTimeout)
			defer cancel()
			if resp, err := st.cfg.DNS(ctx, q); err == nil {
				conn.Write(resp)
			}
		}()
	}
}

func (st *Stack) relayUDP(conn *gonet.UDPConn, dst netip.AddrPort) {
	ctx, cancel := context.WithTimeout(st.ctx, st.cfg.DialTimeout)
	up, err := st.cfg.Dial(ctx, "udp", dst)
	cancel()
	if err != nil {
		st.cfg.Logger.Debug("dial failed", "udp", dst.String(), "err", err)
		return
	}
	defer up.Close()
	stop := context.AfterFunc(st.ctx, func() { up.Close() })
	defer stop()
	idle := st.cfg.UDPIdle
	var last sync.Mutex
	lastAct := time.Now()
	touch := func() { last.Lock(); lastAct = time.Now(); last.Unlock() }
	expired := func() bool { last.Lock(); defer last.Unlock(); return time.Since(lastAct) >= idle }
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 65535)
		for {
			up.SetReadDeadline(time.Now().Add(idle))
			n, err := up.Read(buf)
			if err != nil {
				if isTimeout(err) && !expired() {
					continue
				}
				conn.Close()
				return
			}
			touch()
			if _, err := conn.Write(buf[:n]); err != nil {
				return
			}
		}
	}()
	buf := make([]byte, 65535)
	for {
		conn.SetReadDeadline(time.Now().Add(idle))
		n, err := conn.Read(buf)
		if err != nil {
			if isTimeout(err) && !expired() {
				continue
			}
			break
		}
		touch()
		if _, err := up.Write(buf[:n]); err != nil {
			break
		}
	}
	up.Close()
	<-done
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}
