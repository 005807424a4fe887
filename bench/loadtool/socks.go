package main

import (
	"context"
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/signal"
	"syscall"
	"time"
)

// dialSOCKS opens a TCP connection to target (an IP:port) through the SOCKS5
// proxy at proxy, with the round trips an ordinary client makes: greeting,
// then CONNECT. An empty proxy dials target directly.
func dialSOCKS(ctx context.Context, proxy string, target netip.AddrPort) (net.Conn, error) {
	var d net.Dialer
	if proxy == "" {
		return d.DialContext(ctx, "tcp", target.String())
	}
	c, err := d.DialContext(ctx, "tcp", proxy)
	if err != nil {
		return nil, fmt.Errorf("socks: dial %s: %w", proxy, err)
	}
	if dl, ok := ctx.Deadline(); ok {
		c.SetDeadline(dl)
	}
	if err := socksConnect(c, target); err != nil {
		c.Close()
		return nil, err
	}
	c.SetDeadline(time.Time{})
	return c, nil
}

func socksConnect(c net.Conn, target netip.AddrPort) error {
	if _, err := c.Write([]byte{5, 1, 0}); err != nil {
		return fmt.Errorf("socks: write greeting: %w", err)
	}
	var b [4]byte
	if _, err := io.ReadFull(c, b[:2]); err != nil {
		return fmt.Errorf("socks: read method: %w", err)
	}
	if b[0] != 5 || b[1] != 0 {
		return fmt.Errorf("socks: method reply %x, want 0500", b[:2])
	}
	ip := target.Addr().Unmap()
	req := []byte{5, 1, 0, 1}
	if ip.Is6() {
		req[3] = 4
	}
	req = append(req, ip.AsSlice()...)
	req = binary.BigEndian.AppendUint16(req, target.Port())
	if _, err := c.Write(req); err != nil {
		return fmt.Errorf("socks: write connect: %w", err)
	}
	if _, err := io.ReadFull(c, b[:4]); err != nil {
		return fmt.Errorf("socks: read reply: %w", err)
	}
	if b[1] != 0 {
		return fmt.Errorf("socks: connect refused, reply code %d", b[1])
	}
	var skip int
	switch b[3] {
	case 1:
		skip = 4 + 2
	case 4:
		skip = 16 + 2
	case 3:
		var l [1]byte
		if _, err := io.ReadFull(c, l[:]); err != nil {
			return fmt.Errorf("socks: read reply: %w", err)
		}
		skip = int(l[0]) + 2
	default:
		return fmt.Errorf("socks: reply address type %d", b[3])
	}
	if _, err := io.ReadFull(c, make([]byte, skip)); err != nil {
		return fmt.Errorf("socks: read reply address: %w", err)
	}
	return nil
}

func runForward(args []string) error {
	fs := flag.NewFlagSet("forward", flag.ExitOnError)
	listen := fs.String("listen", "127.0.0.1:1080", "SOCKS5 listen address")
	fs.Parse(args)
	l, err := net.Listen("tcp", *listen)
	if err != nil {
		return err
	}
	go serveForward(l)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	<-ctx.Done()
	return nil
}

// serveForward accepts SOCKS5 CONNECT requests on l and relays each to its
// target, until l is closed.
func serveForward(l net.Listener) error {
	for {
		c, err := l.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return err
			}
			// Out of descriptors or similar: say so, back off, keep serving.
			fmt.Fprintln(os.Stderr, "forward: accept:", err)
			time.Sleep(10 * time.Millisecond)
			continue
		}
		go forwardConn(c.(*net.TCPConn))
	}
}

func forwardConn(c *net.TCPConn) {
	defer c.Close()
	target, err := readConnect(c)
	if err != nil {
		return
	}
	ap, err := netip.ParseAddrPort(target)
	if err != nil || !ap.Addr().Unmap().IsLoopback() {
		c.Write([]byte{5, 2, 0, 1, 0, 0, 0, 0, 0, 0}) // not allowed: loopback IPs only
		return
	}
	u, err := net.DialTimeout("tcp", target, 10*time.Second)
	if err != nil {
		c.Write([]byte{5, 5, 0, 1, 0, 0, 0, 0, 0, 0})
		return
	}
	defer u.Close()
	if _, err := c.Write([]byte{5, 0, 0, 1, 0, 0, 0, 0, 0, 0}); err != nil {
		return
	}
	uc := u.(*net.TCPConn)
	done := make(chan struct{})
	go func() {
		io.Copy(uc, c)
		uc.CloseWrite()
		close(done)
	}()
	io.Copy(c, uc)
	c.CloseWrite()
	<-done
}

// readConnect reads a SOCKS5 greeting and CONNECT request from c and answers
// the greeting; it returns the target as host:port.
func readConnect(c net.Conn) (string, error) {
	c.SetReadDeadline(time.Now().Add(30 * time.Second))
	defer c.SetReadDeadline(time.Time{})
	var b [262]byte
	if _, err := io.ReadFull(c, b[:2]); err != nil || b[0] != 5 {
		return "", errors.New("forward: bad greeting")
	}
	if _, err := io.ReadFull(c, b[:b[1]]); err != nil {
		return "", err
	}
	if _, err := c.Write([]byte{5, 0}); err != nil {
		return "", err
	}
	if _, err := io.ReadFull(c, b[:4]); err != nil || b[0] != 5 || b[1] != 1 {
		return "", errors.New("forward: bad request")
	}
	var host string
	switch b[3] {
	case 1, 4:
		n := 4
		if b[3] == 4 {
			n = 16
		}
		if _, err := io.ReadFull(c, b[:n]); err != nil {
			return "", err
		}
		ip, _ := netip.AddrFromSlice(b[:n])
		host = ip.String()
	case 3:
		if _, err := io.ReadFull(c, b[:1]); err != nil {
			return "", err
		}
		n := int(b[0])
		if _, err := io.ReadFull(c, b[:n]); err != nil {
			return "", err
		}
		host = string(b[:n])
	default:
		return "", errors.New("forward: bad address type")
	}
	if _, err := io.ReadFull(c, b[:2]); err != nil {
		return "", err
	}
	return net.JoinHostPort(host, fmt.Sprint(binary.BigEndian.Uint16(b[:2]))), nil
}
