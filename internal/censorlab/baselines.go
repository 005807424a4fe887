package censorlab

import (
	"bufio"
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"time"
)

// Scenario names every baseline must be caught in, besides its own.
var caughtEverywhere = []string{"byte-budget", "conn-count", "ip-blocklist", "russia-2026", "russia-2026-mobile"}

// Baselines returns the known-blockable systems the lab must catch.
func Baselines() []System {
	return []System{GoTLSProxy(), ShadowsocksLike(), WireGuardLike(), OpenVPNTCP(), PlainSOCKS5(), PlainHTTPConnect()}
}

func caught(own ...string) []string { return append(own, caughtEverywhere...) }

func dialVia(ctx context.Context, via netip.AddrPort) (net.Conn, error) {
	var d net.Dialer
	return d.DialContext(ctx, "tcp", via.String())
}

// GoTLSProxy is a plain Go crypto/tls proxy: the client opens TLS with Go's
// default ClientHello to a server with its own certificate, sends
// "host:port\n" and relays.
func GoTLSProxy() System {
	return System{
		Name: "go-tls-proxy", Baseline: true, Network: "tcp",
		CaughtBy: caught("clienthello", "prober", "tls-in-tls"),
		Start: func(ctx context.Context, env Env) (*Instance, error) {
			cert, err := selfSigned("vpn.example.net")
			if err != nil {
				return nil, err
			}
			cfg := &tls.Config{Certificates: []tls.Certificate{cert}}
			srv, err := listenTCP(ctx, env.IP, func(ctx context.Context, c net.Conn) {
				tc := tls.Server(c, cfg)
				tc.SetDeadline(time.Now().Add(Budget(10 * time.Second)))
				target, err := readLine(tc)
				if err != nil {
					return
				}
				tc.SetDeadline(time.Time{})
				relayTo(ctx, tc, target)
			})
			if err != nil {
				return nil, err
			}
			return &Instance{Server: srv.addr(), Close: srv.Close,
				Dial: func(ctx context.Context, via netip.AddrPort, target string) (net.Conn, error) {
					raw, err := dialVia(ctx, via)
					if err != nil {
						return nil, err
					}
					tc := tls.Client(raw, &tls.Config{ServerName: "vpn.example.net", InsecureSkipVerify: true})
					if err := tc.HandshakeContext(ctx); err != nil {
						raw.Close()
						return nil, err
					}
					if _, err := io.WriteString(tc, target+"\n"); err != nil {
						tc.Close()
						return nil, err
					}
					return tc, nil
				}}, nil
		},
	}
}

// selfSigned makes a certificate for name.
func selfSigned(name string) (tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2), DNSNames: []string{name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return tls.Certificate{}, err
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, nil
}

// ssKey is the Shadowsocks-like pre-shared password.
const ssPassword = "lab-password"

// ssStream returns AES-256-CTR keyed by the password and salt.
func ssStream(salt []byte) cipher.Stream {
	key := sha256.Sum256(append([]byte(ssPassword), salt...))
	block, _ := aes.NewCipher(key[:])
	return cipher.NewCTR(block, make([]byte, aes.BlockSize))
}

// ssConn encrypts a stream like Shadowsocks: each direction starts with a
// random 32-byte salt, then everything is AES-CTR output — from the first
// byte on, nothing but random-looking bytes.
//
//	client → server: salt(32) | E(len(1) | "host:port" | data...)
//	server → client: salt(32) | E(data...)
type ssConn struct {
	net.Conn
	header   []byte // sent with the first write (client side)
	enc, dec cipher.Stream
}

// newSalt returns a random salt whose first byte is not printable ASCII.
// Real clients are exempted by Ex2 0.26% of the time (first six bytes
// printable); the lab baseline avoids that so its cell is deterministic.
func newSalt() []byte {
	s := make([]byte, 32)
	rand.Read(s)
	s[0] |= 0x80
	return s
}

func (c *ssConn) Write(p []byte) (int, error) {
	out := make([]byte, 0, len(c.header)+len(p))
	if c.enc == nil {
		salt := newSalt()
		c.enc = ssStream(salt)
		out = append(out, salt...)
		h := make([]byte, len(c.header))
		c.enc.XORKeyStream(h, c.header)
		out = append(out, h...)
	}
	start := len(out)
	out = append(out, p...)
	c.enc.XORKeyStream(out[start:], out[start:])
	if _, err := c.Conn.Write(out); err != nil {
		return 0, err
	}
	return len(p), nil
}

func (c *ssConn) Read(p []byte) (int, error) {
	if c.dec == nil {
		salt := make([]byte, 32)
		if _, err := io.ReadFull(c.Conn, salt); err != nil {
			return 0, err
		}
		c.dec = ssStream(salt)
	}
	n, err := c.Conn.Read(p)
	c.dec.XORKeyStream(p[:n], p[:n])
	return n, err
}

func (c *ssConn) CloseWrite() error { return c.Conn.(*net.TCPConn).CloseWrite() }

// ShadowsocksLike is a Shadowsocks-style fully random stream.
func ShadowsocksLike() System {
	return System{
		Name: "shadowsocks-like", Baseline: true, Network: "tcp",
		CaughtBy: caught("fully-encrypted", "prober"),
		Start: func(ctx context.Context, env Env) (*Instance, error) {
			srv, err := listenTCP(ctx, env.IP, func(ctx context.Context, c net.Conn) {
				sc := &ssConn{Conn: c}
				c.SetDeadline(time.Now().Add(Budget(10 * time.Second)))
				var l [1]byte
				if _, err := io.ReadFull(sc, l[:]); err != nil {
					return
				}
				target := make([]byte, l[0])
				if _, err := io.ReadFull(sc, target); err != nil {
					return
				}
				c.SetDeadline(time.Time{})
				relayTo(ctx, sc, string(target))
			})
			if err != nil {
				return nil, err
			}
			return &Instance{Server: srv.addr(), Close: srv.Close,
				Dial: func(ctx context.Context, via netip.AddrPort, target string) (net.Conn, error) {
					raw, err := dialVia(ctx, via)
					if err != nil {
						return nil, err
					}
					return &ssConn{Conn: raw, header: append([]byte{byte(len(target))}, target...)}, nil
				}}, nil
		},
	}
}

// PlainSOCKS5 is an unencrypted SOCKS5 proxy (no authentication, CONNECT).
func PlainSOCKS5() System {
	return System{
		Name: "socks5", Baseline: true, Network: "tcp",
		CaughtBy: caught("signatures", "prober"),
		Start: func(ctx context.Context, env Env) (*Instance, error) {
			srv, err := listenTCP(ctx, env.IP, func(ctx context.Context, c net.Conn) {
				c.SetDeadline(time.Now().Add(Budget(10 * time.Second)))
				target, err := socks5Accept(c)
				if err != nil {
					return
				}
				c.SetDeadline(time.Time{})
				c.Write([]byte{5, 0, 0, 1, 0, 0, 0, 0, 0, 0})
				relayTo(ctx, c, target)
			})
			if err != nil {
				return nil, err
			}
			return &Instance{Server: srv.addr(), Close: srv.Close, Dial: socks5Dial}, nil
		},
	}
}

// socks5Accept reads a no-auth greeting and a CONNECT request.
func socks5Accept(c net.Conn) (string, error) {
	var g [2]byte
	if _, err := io.ReadFull(c, g[:]); err != nil || g[0] != 5 {
		return "", errors.New("not socks5")
	}
	methods := make([]byte, g[1])
	if _, err := io.ReadFull(c, methods); err != nil {
		return "", err
	}
	c.Write([]byte{5, 0})
	var h [4]byte
	if _, err := io.ReadFull(c, h[:]); err != nil || h[0] != 5 || h[1] != 1 {
		return "", errors.New("not a CONNECT")
	}
	var host string
	switch h[3] {
	case 1:
		var ip [4]byte
		if _, err := io.ReadFull(c, ip[:]); err != nil {
			return "", err
		}
		host = netip.AddrFrom4(ip).String()
	case 3:
		var l [1]byte
		if _, err := io.ReadFull(c, l[:]); err != nil {
			return "", err
		}
		b := make([]byte, l[0])
		if _, err := io.ReadFull(c, b); err != nil {
			return "", err
		}
		host = string(b)
	default:
		return "", errors.New("address type")
	}
	var port [2]byte
	if _, err := io.ReadFull(c, port[:]); err != nil {
		return "", err
	}
	return net.JoinHostPort(host, strconv.Itoa(int(binary.BigEndian.Uint16(port[:])))), nil
}

func socks5Dial(ctx context.Context, via netip.AddrPort, target string) (net.Conn, error) {
	c, err := dialVia(ctx, via)
	if err != nil {
		return nil, err
	}
	host, port, _ := net.SplitHostPort(target)
	p, _ := strconv.Atoi(port)
	req := []byte{5, 1, 0, 5, 1, 0, 3, byte(len(host))}
	req = binary.BigEndian.AppendUint16(append(req, host...), uint16(p))
	c.SetDeadline(time.Now().Add(Budget(5 * time.Second)))
	if _, err := c.Write(req[:3]); err != nil {
		c.Close()
		return nil, err
	}
	var sel [2]byte
	if _, err := io.ReadFull(c, sel[:]); err != nil {
		c.Close()
		return nil, fmt.Errorf("socks5 greeting: %w", err)
	}
	if _, err := c.Write(req[3:]); err != nil {
		c.Close()
		return nil, err
	}
	var rep [10]byte
	if _, err := io.ReadFull(c, rep[:]); err != nil || rep[1] != 0 {
		c.Close()
		return nil, fmt.Errorf("socks5 reply: %v", err)
	}
	c.SetDeadline(time.Time{})
	return c, nil
}

// PlainHTTPConnect is an unencrypted HTTP proxy answering CONNECT.
func PlainHTTPConnect() System {
	return System{
		Name: "http-connect", Baseline: true, Network: "tcp",
		CaughtBy: caught("signatures", "prober"),
		Start: func(ctx context.Context, env Env) (*Instance, error) {
			srv, err := listenTCP(ctx, env.IP, func(ctx context.Context, c net.Conn) {
				c.SetDeadline(time.Now().Add(Budget(10 * time.Second)))
				br := bufio.NewReader(c)
				req, err := http.ReadRequest(br)
				if err != nil {
					io.WriteString(c, "HTTP/1.1 400 Bad Request\r\nConnection: close\r\n\r\n")
					return
				}
				if req.Method != http.MethodConnect {
					io.WriteString(c, "HTTP/1.1 405 Method Not Allowed\r\nProxy-Agent: lab\r\nConnection: close\r\n\r\n")
					return
				}
				c.SetDeadline(time.Time{})
				io.WriteString(c, "HTTP/1.1 200 Connection established\r\n\r\n")
				relayTo(ctx, &bufferedConn{Conn: c, r: br}, req.Host)
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
					c.SetDeadline(time.Now().Add(Budget(5 * time.Second)))
					fmt.Fprintf(c, "CONNECT %s HTTP/1.1\r\nHost: %s\r\n\r\n", target, target)
					br := bufio.NewReader(c)
					resp, err := http.ReadResponse(br, nil)
					if err != nil || resp.StatusCode != 200 {
						c.Close()
						return nil, fmt.Errorf("http connect: %v", err)
					}
					c.SetDeadline(time.Time{})
					return &bufferedConn{Conn: c, r: br}, nil
				}}, nil
		},
	}
}
