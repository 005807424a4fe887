package e2e

import (
	"bufio"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/net/dns/dnsmessage"
	"golang.org/x/net/proxy"
	"golang.org/x/sys/unix"

	"github.com/burrow-vpn/burrow/internal/coversite"
)

// The test binary is also the helper programs run inside the namespaces:
// BURROW_E2E_HELPER=1 exe MODE ARGS...
func TestMain(m *testing.M) {
	if os.Getenv("BURROW_E2E_HELPER") == "1" && len(os.Args) > 1 {
		if err := helperMain(os.Args[1], os.Args[2:]); err != nil {
			fmt.Fprintln(os.Stderr, "helper:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	code := checkHostResolv(m.Run)
	if buildPath != "" {
		os.RemoveAll(filepath.Dir(buildPath)) // the binary built for the run
	}
	os.Exit(code)
}

func helperMain(mode string, args []string) error {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	switch mode {
	case "site":
		return runSite(ctx)
	case "cover":
		s, err := coversite.Start("127.0.0.1:8443", "cover.test")
		if err != nil {
			return err
		}
		fmt.Println("ready")
		<-ctx.Done()
		return s.Close()
	case "capture":
		return runCapture(ctx, args[0])
	case "mark":
		return sendMark(args[0], args[1])
	case "udp":
		return udpExchange(args[0], args[1])
	case "dnsq":
		return dnsQuery(args[0], args[1], args[2])
	case "load":
		return runLoad(args)
	}
	return fmt.Errorf("unknown helper mode %q", mode)
}

// Site addresses and names.
const (
	siteAddr4   = "10.200.3.2"
	siteAddr6   = "fd00:200:3::2"
	directAddr4 = "10.200.3.3" // shop.ru: sent around the tunnel by the rules
	siteName    = "site.test"
	directName  = "shop.ru"
)

// runSite serves HTTP on :80 (every address), DNS on siteAddr4:53, UDP echo
// on :7, and the load sink on :5201, until ctx ends.
func runSite(ctx context.Context) error {
	hl, err := net.Listen("tcp", ":80")
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		host, _, _ := net.SplitHostPort(r.RemoteAddr)
		fmt.Fprintf(w, "burrow-site path=%s from=%s\n", r.URL.Path, netip.MustParseAddr(host).Unmap())
	})}
	go srv.Serve(hl)
	defer srv.Close()

	dns, err := net.ListenPacket("udp", siteAddr4+":53")
	if err != nil {
		return err
	}
	defer dns.Close()
	go serveDNS(dns)

	echo, err := net.ListenPacket("udp", ":7")
	if err != nil {
		return err
	}
	defer echo.Close()
	go func() {
		buf := make([]byte, 2048)
		for {
			n, from, err := echo.ReadFrom(buf)
			if err != nil {
				return
			}
			ap := netip.MustParseAddrPort(from.String())
			echo.WriteTo(fmt.Appendf(nil, "echo from=%s %s", ap.Addr().Unmap(), buf[:n]), from)
		}
	}()

	ll, err := net.Listen("tcp", ":5201")
	if err != nil {
		return err
	}
	defer ll.Close()
	go serveLoad(ll)

	fmt.Println("ready")
	<-ctx.Done()
	return nil
}

func serveDNS(pc net.PacketConn) {
	buf := make([]byte, 1500)
	for {
		n, from, err := pc.ReadFrom(buf)
		if err != nil {
			return
		}
		var m dnsmessage.Message
		if m.Unpack(buf[:n]) != nil || len(m.Questions) != 1 {
			continue
		}
		q := m.Questions[0]
		m.Header.Response, m.Header.RecursionAvailable = true, true
		name := strings.ToLower(q.Name.String())
		hdr := dnsmessage.ResourceHeader{Name: q.Name, Type: q.Type, Class: dnsmessage.ClassINET, TTL: 60}
		switch {
		case name == siteName+"." && q.Type == dnsmessage.TypeA:
			m.Answers = []dnsmessage.Resource{{Header: hdr, Body: &dnsmessage.AResource{A: netip.MustParseAddr(siteAddr4).As4()}}}
		case name == siteName+"." && q.Type == dnsmessage.TypeAAAA:
			m.Answers = []dnsmessage.Resource{{Header: hdr, Body: &dnsmessage.AAAAResource{AAAA: netip.MustParseAddr(siteAddr6).As16()}}}
		case name == directName+"." && q.Type == dnsmessage.TypeA:
			m.Answers = []dnsmessage.Resource{{Header: hdr, Body: &dnsmessage.AResource{A: netip.MustParseAddr(directAddr4).As4()}}}
		case name == siteName+"." || name == directName+".":
			// no records of this type
		default:
			m.Header.RCode = dnsmessage.RCodeNameError
		}
		if b, err := m.Pack(); err == nil {
			pc.WriteTo(b, from)
		}
	}
}

// udpExchange sends payload to addr and prints the first reply.
func udpExchange(addr, payload string) error {
	c, err := net.Dial("udp", addr)
	if err != nil {
		return err
	}
	defer c.Close()
	buf := make([]byte, 2048)
	for try := 0; try < 5; try++ {
		c.Write([]byte(payload))
		c.SetReadDeadline(time.Now().Add(2 * time.Second))
		n, err := c.Read(buf)
		if err == nil {
			fmt.Printf("%s\n", buf[:n])
			return nil
		}
	}
	return fmt.Errorf("no reply from %s", addr)
}

// dnsQuery asks server (host:port) for name's records of type A or AAAA
// and prints each address, or the rcode.
func dnsQuery(name, typ, server string) error {
	t := dnsmessage.TypeA
	if typ == "AAAA" {
		t = dnsmessage.TypeAAAA
	}
	q := dnsmessage.Message{Header: dnsmessage.Header{ID: 0x4242, RecursionDesired: true},
		Questions: []dnsmessage.Question{{Name: dnsmessage.MustNewName(name + "."), Type: t, Class: dnsmessage.ClassINET}}}
	b, _ := q.Pack()
	c, err := net.Dial("udp", server)
	if err != nil {
		return err
	}
	defer c.Close()
	buf := make([]byte, 1500)
	for try := 0; try < 5; try++ {
		c.Write(b)
		c.SetReadDeadline(time.Now().Add(2 * time.Second))
		n, err := c.Read(buf)
		if err != nil {
			continue
		}
		var m dnsmessage.Message
		if err := m.Unpack(buf[:n]); err != nil {
			return err
		}
		fmt.Println("rcode", m.Header.RCode)
		for _, a := range m.Answers {
			switch r := a.Body.(type) {
			case *dnsmessage.AResource:
				fmt.Println(netip.AddrFrom4(r.A))
			case *dnsmessage.AAAAResource:
				fmt.Println(netip.AddrFrom16(r.AAAA))
			}
		}
		return nil
	}
	return fmt.Errorf("no DNS answer from %s", server)
}

// serveLoad is the load sink: the first byte is 'u' (the client uploads
// until it closes its side; we answer with the count) or 'd' followed by an
// 8-byte count to send.
func serveLoad(l net.Listener) {
	for {
		c, err := l.Accept()
		if err != nil {
			return
		}
		go func() {
			defer c.Close()
			var hdr [9]byte
			if _, err := io.ReadFull(c, hdr[:1]); err != nil {
				return
			}
			switch hdr[0] {
			case 'u':
				n, _ := io.Copy(io.Discard, c)
				fmt.Fprintf(c, "%d\n", n)
			case 'd':
				if _, err := io.ReadFull(c, hdr[1:]); err != nil {
					return
				}
				io.Copy(c, io.LimitReader(zeros{}, int64(binary.BigEndian.Uint64(hdr[1:]))))
			}
		}()
	}
}

type zeros struct{}

func (zeros) Read(p []byte) (int, error) { clear(p); return len(p), nil }

// runLoad: load up|down ADDR BYTES [SOCKS] — prints "BYTES SECONDS".
func runLoad(args []string) error {
	dir, addr := args[0], args[1]
	n, _ := strconv.ParseInt(args[2], 10, 64)
	var c net.Conn
	var err error
	if len(args) > 3 && args[3] != "" {
		d, perr := proxy.SOCKS5("tcp", args[3], nil, proxy.Direct)
		if perr != nil {
			return perr
		}
		c, err = d.Dial("tcp", addr)
	} else {
		c, err = net.Dial("tcp", addr)
	}
	if err != nil {
		return err
	}
	defer c.Close()
	start := time.Now()
	var got int64
	if dir == "up" {
		c.Write([]byte{'u'})
		if _, err := io.Copy(c, io.LimitReader(zeros{}, n)); err != nil {
			return err
		}
		c.(interface{ CloseWrite() error }).CloseWrite()
		line, err := bufio.NewReader(c).ReadString('\n')
		if err != nil {
			return fmt.Errorf("upload: no count: %w", err)
		}
		got, _ = strconv.ParseInt(strings.TrimSpace(line), 10, 64)
	} else {
		var hdr [9]byte
		hdr[0] = 'd'
		binary.BigEndian.PutUint64(hdr[1:], uint64(n))
		c.Write(hdr[:])
		got, err = io.Copy(io.Discard, c)
		if err != nil {
			return err
		}
	}
	fmt.Printf("%d %.6f\n", got, time.Since(start).Seconds())
	return nil
}

// runCapture prints one line per frame seen on iface (AF_PACKET, both
// directions) until ctx ends:
//
//	arp
//	ip4 PROTO SRC DST SPORT DPORT      (ports 0 unless TCP/UDP)
//	ip6 NEXTHDR SRC DST SPORT DPORT    (for ICMPv6, SPORT is the type)
//	other ETHERTYPE
func runCapture(ctx context.Context, iface string) error {
	ifi, err := net.InterfaceByName(iface)
	if err != nil {
		return err
	}
	proto := int(htons(unix.ETH_P_ALL))
	fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, proto)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	if err := unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ALL), Ifindex: ifi.Index}); err != nil {
		return err
	}
	tv := unix.Timeval{Usec: 200000}
	unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv)
	out := bufio.NewWriter(os.Stdout)
	fmt.Fprintln(out, "ready")
	out.Flush()
	buf := make([]byte, 65536)
	for ctx.Err() == nil {
		n, _, err := unix.Recvfrom(fd, buf, 0)
		if err != nil {
			continue
		}
		fmt.Fprintln(out, describeFrame(buf[:n]))
		out.Flush()
	}
	return nil
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

// markType is the EtherType of the capture's marker frames (IEEE 802 local
// experimental): no stack handles it, so a marker moves no state.
const markType = 0x88b5

// sendMark sends one broadcast frame of type markType carrying token out of
// iface, from a packet socket, so that neither routes nor the kill switch's
// rules stand in its way. A capture on the same link prints it as
// "mark TOKEN" after every frame that went over the link before it.
func sendMark(iface, token string) error {
	ifi, err := net.InterfaceByName(iface)
	if err != nil {
		return err
	}
	fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	bcast := [8]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}
	frame := append(bcast[:6:6], ifi.HardwareAddr...)
	frame = binary.BigEndian.AppendUint16(frame, markType)
	frame = append(frame, token...)
	for len(frame) < 60 { // the Ethernet minimum, without the FCS
		frame = append(frame, 0)
	}
	return unix.Sendto(fd, frame, 0, &unix.SockaddrLinklayer{Ifindex: ifi.Index, Protocol: htons(markType), Halen: 6, Addr: bcast})
}

func describeFrame(f []byte) string {
	if len(f) < 14 {
		return "short"
	}
	et := binary.BigEndian.Uint16(f[12:14])
	p := f[14:]
	switch et {
	case 0x0806:
		return "arp"
	case markType:
		return "mark " + strings.TrimRight(string(p), "\x00")
	case 0x0800:
		if len(p) < 20 {
			return "ip4 short"
		}
		hl := int(p[0]&0xf) * 4
		src, _ := netip.AddrFromSlice(p[12:16])
		dst, _ := netip.AddrFromSlice(p[16:20])
		sp, dp := ports(p[9], p[min(hl, len(p)):])
		return fmt.Sprintf("ip4 %d %s %s %d %d", p[9], src, dst, sp, dp)
	case 0x86dd:
		if len(p) < 40 {
			return "ip6 short"
		}
		src, _ := netip.AddrFromSlice(p[8:24])
		dst, _ := netip.AddrFromSlice(p[24:40])
		sp, dp := ports(p[6], p[40:])
		return fmt.Sprintf("ip6 %d %s %s %d %d", p[6], src, dst, sp, dp)
	}
	return fmt.Sprintf("other %#04x", et)
}

func ports(proto byte, l4 []byte) (uint16, uint16) {
	switch proto {
	case 6, 17:
		if len(l4) >= 4 {
			return binary.BigEndian.Uint16(l4[0:2]), binary.BigEndian.Uint16(l4[2:4])
		}
	case 58:
		if len(l4) >= 1 {
			return uint16(l4[0]), 0
		}
	}
	return 0, 0
}
