package tun

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"gvisor.dev/gvisor/pkg/buffer"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/adapters/gonet"
	"gvisor.dev/gvisor/pkg/tcpip/checksum"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/link/channel"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv4"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv6"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
	"gvisor.dev/gvisor/pkg/tcpip/transport/tcp"
	"gvisor.dev/gvisor/pkg/tcpip/transport/udp"
)

// appSide is a second netstack playing the operating system and its
// applications: what it sends goes into the fake TUN, what the Stack under
// test writes comes back to it.
type appSide struct {
	s  *stack.Stack
	ep *channel.Endpoint
}

var (
	app4 = netip.MustParseAddr("10.0.0.2")
	app6 = netip.MustParseAddr("fd00::2")
)

func newAppSide(t *testing.T, dev *ChannelDevice) *appSide {
	t.Helper()
	a := &appSide{ep: channel.New(256, uint32(dev.MTU()), "")}
	a.s = stack.New(stack.Options{
		NetworkProtocols:   []stack.NetworkProtocolFactory{ipv4.NewProtocol, ipv6.NewProtocol},
		TransportProtocols: []stack.TransportProtocolFactory{tcp.NewProtocol, udp.NewProtocol},
	})
	if err := a.s.CreateNIC(1, a.ep); err != nil {
		t.Fatal(err)
	}
	for _, ad := range []netip.Addr{app4, app6} {
		proto := ipv4.ProtocolNumber
		if ad.Is6() {
			proto = ipv6.ProtocolNumber
		}
		pa := tcpip.ProtocolAddress{Protocol: proto, AddressWithPrefix: tcpip.AddrFromSlice(ad.AsSlice()).WithPrefix()}
		if err := a.s.AddProtocolAddress(1, pa, stack.AddressProperties{}); err != nil {
			t.Fatal(err)
		}
	}
	a.s.SetRouteTable([]tcpip.Route{{Destination: header.IPv4EmptySubnet, NIC: 1}, {Destination: header.IPv6EmptySubnet, NIC: 1}})
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { // app → TUN
		defer wg.Done()
		for {
			pkt := a.ep.ReadContext(ctx)
			if pkt == nil {
				return
			}
			var b []byte
			for _, s := range pkt.AsSlices() {
				b = append(b, s...)
			}
			pkt.DecRef()
			select {
			case dev.In <- b:
			case <-ctx.Done():
				return
			}
		}
	}()
	go func() { // TUN → app
		defer wg.Done()
		for {
			select {
			case b := <-dev.Out:
				proto := ipv4.ProtocolNumber
				if b[0]>>4 == 6 {
					proto = ipv6.ProtocolNumber
				}
				pkt := stack.NewPacketBuffer(stack.PacketBufferOptions{Payload: buffer.MakeWithData(b)})
				a.ep.InjectInbound(proto, pkt)
				pkt.DecRef()
			case <-ctx.Done():
				return
			}
		}
	}()
	t.Cleanup(func() {
		cancel()
		a.ep.Close()
		wg.Wait()
		a.s.Close()
		a.s.Wait()
	})
	return a
}

func full(ap netip.AddrPort) (tcpip.FullAddress, tcpip.NetworkProtocolNumber) {
	proto := ipv4.ProtocolNumber
	if ap.Addr().Is6() {
		proto = ipv6.ProtocolNumber
	}
	return tcpip.FullAddress{NIC: 1, Addr: tcpip.AddrFromSlice(ap.Addr().AsSlice()), Port: ap.Port()}, proto
}

// recorder is the upstream side: it echoes in upper case and notes dials.
type recorder struct {
	mu    sync.Mutex
	dials []string
	fail  bool
	dns   int
}

func (r *recorder) dial(ctx context.Context, network string, dst netip.AddrPort) (net.Conn, error) {
	r.mu.Lock()
	r.dials = append(r.dials, network+" "+dst.String())
	fail := r.fail
	r.mu.Unlock()
	if fail {
		return nil, errors.New("tunnel down")
	}
	a, b := net.Pipe()
	go func() {
		defer b.Close()
		buf := make([]byte, 65535)
		for {
			n, err := b.Read(buf)
			if err != nil {
				return
			}
			if _, err := b.Write(bytes.ToUpper(buf[:n])); err != nil {
				return
			}
		}
	}()
	return a, nil
}

func (r *recorder) exchange(ctx context.Context, q []byte) ([]byte, error) {
	r.mu.Lock()
	r.dns++
	r.mu.Unlock()
	return append([]byte("answer:"), q...), nil
}

func (r *recorder) snapshot() ([]string, int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.dials...), r.dns
}

func startStack(t *testing.T) (*appSide, *recorder, *ChannelDevice) {
	t.Helper()
	dev := NewChannelDevice(1500)
	rec := &recorder{}
	st, err := NewStack(dev, Config{Dial: rec.dial, DNS: rec.exchange, UDPIdle: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- st.Run(ctx) }()
	app := newAppSide(t, dev)
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Error("Stack.Run did not return within 10s of cancel")
		}
	})
	return app, rec, dev
}

func TestTCPFlows(t *testing.T) {
	app, rec, _ := startStack(t)
	for _, dst := range []string{"203.0.113.5:80", "[2001:db8::5]:443"} {
		ap := netip.MustParseAddrPort(dst)
		fa, proto := full(ap)
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		c, err := gonet.DialContextTCP(ctx, app.s, fa, proto)
		cancel()
		if err != nil {
			t.Fatalf("dial %s: %v", dst, err)
		}
		msg := strings.Repeat("hello tunnel ", 20000) // larger than one window
		go c.Write([]byte(msg))
		got := make([]byte, len(msg))
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		if _, err := io.ReadFull(c, got); err != nil {
			t.Fatalf("%s: read echo: %v", dst, err)
		}
		if string(got) != strings.ToUpper(msg) {
			t.Errorf("%s: echo differs from the upper-cased message", dst)
		}
		c.Close()
	}
	dials, _ := rec.snapshot()
	want := []string{"tcp 203.0.113.5:80", "tcp [2001:db8::5]:443"}
	if strings.Join(dials, ",") != strings.Join(want, ",") {
		t.Errorf("dials = %v, want %v", dials, want)
	}
}

func TestTCPDialFailureResets(t *testing.T) {
	app, rec, _ := startStack(t)
	rec.fail = true
	fa, proto := full(netip.MustParseAddrPort("203.0.113.6:80"))
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err := gonet.DialContextTCP(ctx, app.s, fa, proto)
	if err == nil || !strings.Contains(err.Error(), "refused") {
		t.Errorf("dial with the tunnel down = %v, want connection refused (reset)", err)
	}
}

func TestUDPAndDNS(t *testing.T) {
	app, rec, _ := startStack(t)
	tests := []struct {
		dst, send, want string
	}{
		{"203.0.113.9:7", "ping", "PING"},
		{"[2001:db8::9]:7", "ping6", "PING6"},
		{"198.51.100.1:53", "q1", "answer:q1"}, // DNS to any address is hijacked
		{"[2001:db8::53]:53", "q2", "answer:q2"},
	}
	for _, tt := range tests {
		fa, proto := full(netip.MustParseAddrPort(tt.dst))
		c, err := gonet.DialUDP(app.s, nil, &fa, proto)
		if err != nil {
			t.Fatalf("dial udp %s: %v", tt.dst, err)
		}
		got := make([]byte, 100)
		var n int
		for try := 0; try < 3; try++ { // UDP: retry like a resolver would
			c.Write([]byte(tt.send))
			c.SetReadDeadline(time.Now().Add(2 * time.Second))
			if n, err = c.Read(got); err == nil {
				break
			}
		}
		if string(got[:n]) != tt.want {
			t.Errorf("UDP %s %q: got %q (%v), want %q", tt.dst, tt.send, got[:n], err, tt.want)
		}
		c.Close()
	}
	dials, dns := rec.snapshot()
	if strings.Join(dials, ",") != "udp 203.0.113.9:7,udp [2001:db8::9]:7" {
		t.Errorf("dials = %v, want the two echo flows only (DNS never dialled)", dials)
	}
	if dns < 2 {
		t.Errorf("DNS exchanges = %d, want 2", dns)
	}

	// DNS over TCP: two-byte length prefix, also hijacked.
	fa, proto := full(netip.MustParseAddrPort("198.51.100.1:53"))
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := gonet.DialContextTCP(ctx, app.s, fa, proto)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.Write([]byte{0, 3, 'q', 't', 'c'})
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	var hdr [2]byte
	if _, err := io.ReadFull(c, hdr[:]); err != nil {
		t.Fatal(err)
	}
	body := make([]byte, binary.BigEndian.Uint16(hdr[:]))
	io.ReadFull(c, body)
	if string(body) != "answer:qtc" {
		t.Errorf("DNS over TCP = %q, want %q", body, "answer:qtc")
	}
}

// TestICMPEcho: an echo request to any address is answered by the stack and
// nothing is dialled.
func TestICMPEcho(t *testing.T) {
	dev := NewChannelDevice(1500)
	rec := &recorder{}
	st, err := NewStack(dev, Config{Dial: rec.dial})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- st.Run(ctx) }()
	defer func() { cancel(); <-done }()

	src, dst := netip.MustParseAddr("10.0.0.2"), netip.MustParseAddr("203.0.113.77")
	payload := []byte("burrow-ping")
	pkt := make([]byte, header.IPv4MinimumSize+header.ICMPv4MinimumSize+len(payload))
	ipv4h := header.IPv4(pkt)
	ipv4h.Encode(&header.IPv4Fields{
		TotalLength: uint16(len(pkt)), TTL: 64, Protocol: uint8(header.ICMPv4ProtocolNumber),
		SrcAddr: tcpip.AddrFrom4(src.As4()), DstAddr: tcpip.AddrFrom4(dst.As4()),
	})
	ipv4h.SetChecksum(^ipv4h.CalculateChecksum())
	icmp := header.ICMPv4(pkt[header.IPv4MinimumSize:])
	icmp.SetType(header.ICMPv4Echo)
	icmp.SetIdent(7)
	icmp.SetSequence(1)
	copy(icmp.Payload(), payload)
	icmp.SetChecksum(^checksum.Checksum(icmp, 0))
	dev.In <- pkt

	select {
	case out := <-dev.Out:
		h := header.IPv4(out)
		if !h.IsValid(len(out)) || h.Protocol() != uint8(header.ICMPv4ProtocolNumber) {
			t.Fatalf("reply is not ICMPv4: % x", out)
		}
		r := header.ICMPv4(h.Payload())
		if r.Type() != header.ICMPv4EchoReply || !bytes.Equal(r.Payload(), payload) {
			t.Errorf("reply type %d payload %q, want echo reply %q", r.Type(), r.Payload(), payload)
		}
		if h.SourceAddress() != tcpip.AddrFrom4(dst.As4()) {
			t.Errorf("reply from %v, want %v", h.SourceAddress(), dst)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no echo reply within 5s")
	}
	if dials, _ := rec.snapshot(); len(dials) != 0 {
		t.Errorf("dials = %v, want none for ICMP", dials)
	}
}

func TestNewStackNeedsDial(t *testing.T) {
	if _, err := NewStack(NewChannelDevice(1500), Config{}); err == nil {
		t.Error("NewStack without Dial = nil error, want one")
	}
}
