package interop

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math/big"
	mrand "math/rand/v2"
	"net"
	"net/http"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/proxy"
)

// coverSNI is the server name the cover site answers for and every REALITY
// server here accepts.
const coverSNI = "cover.test"

// coverPage is what the cover site serves at every path; a prober that reaches
// it through a REALITY server must read exactly this.
const coverPage = "<!doctype html><title>Cover</title><p>An ordinary website.</p>\n"

// blobSize is how many deterministic bytes the content site serves at /blob.
// A few MiB make Vision's padding, its switch to direct copy and the splice
// path all carry real traffic.
const blobSize = 4 << 20

// selfSigned returns a fresh ECDSA P-256 certificate for the given names and IPs.
func selfSigned(t *testing.T, dnsNames []string, ips []net.IP) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatalf("generate key: %v", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(time.Now().UnixNano()),
		Subject:               pkix.Name{CommonName: dnsNames[0]},
		DNSNames:              dnsNames,
		IPAddresses:           ips,
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatalf("create certificate: %v", err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatalf("parse certificate: %v", err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}
}

// serveHTTP serves h on l until the test ends.
func serveHTTP(t *testing.T, l net.Listener, h http.Handler, tlsConf *tls.Config) {
	t.Helper()
	srv := &http.Server{Handler: h, TLSConfig: tlsConf, ReadHeaderTimeout: 10 * time.Second}
	done := make(chan struct{})
	go func() {
		defer close(done)
		if tlsConf != nil {
			srv.ServeTLS(l, "", "")
		} else {
			srv.Serve(l)
		}
	}()
	t.Cleanup(func() {
		srv.Close()
		<-done
	})
}

// coverSite is the REALITY target: a real TLS 1.3 web server on loopback.
type coverSite struct {
	Addr    string // 127.0.0.1:port
	CertDER []byte // the leaf certificate a prober must see
}

// startCover starts a TLS 1.3-only, X25519-only HTTPS server that answers
// every request with coverPage.
func startCover(t *testing.T) *coverSite {
	t.Helper()
	cert := selfSigned(t, []string{coverSNI}, nil)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("cover: listen: %v", err)
	}
	tlsConf := &tls.Config{
		Certificates:     []tls.Certificate{cert},
		MinVersion:       tls.VersionTLS13,
		CurvePreferences: []tls.CurveID{tls.X25519},
		NextProtos:       []string{"h2", "http/1.1"},
	}
	serveHTTP(t, l, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		io.WriteString(w, coverPage)
	}), tlsConf)
	return &coverSite{Addr: l.Addr().String(), CertDER: cert.Certificate[0]}
}

// contentSite is what the tests fetch through a tunnel.
type contentSite struct {
	HTTPAddr  string         // plain HTTP, 127.0.0.1:port
	HTTPSAddr string         // HTTPS (inner TLS through the tunnel), 127.0.0.1:port
	Roots     *x509.CertPool // trusts the HTTPS server's certificate
	Sum       [32]byte       // SHA-256 of /blob
}

// startContent starts the plain and TLS content servers; both serve blobSize
// deterministic bytes at /blob.
func startContent(t *testing.T) *contentSite {
	t.Helper()
	blob := make([]byte, blobSize)
	var seed [32]byte
	copy(seed[:], "burrow interop deterministic blob")
	mrand.NewChaCha8(seed).Read(blob)
	mux := http.NewServeMux()
	mux.HandleFunc("/blob", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/octet-stream")
		w.Header().Set("Content-Length", strconv.Itoa(len(blob)))
		w.Write(blob)
	})

	lp, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("content: listen: %v", err)
	}
	serveHTTP(t, lp, mux, nil)

	cert := selfSigned(t, []string{"site.test"}, []net.IP{net.IPv4(127, 0, 0, 1)})
	ls, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("content: listen tls: %v", err)
	}
	serveHTTP(t, ls, mux, &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12})

	roots := x509.NewCertPool()
	roots.AddCert(cert.Leaf)
	return &contentSite{
		HTTPAddr:  lp.Addr().String(),
		HTTPSAddr: ls.Addr().String(),
		Roots:     roots,
		Sum:       sha256.Sum256(blob),
	}
}

// startUDPEcho answers every datagram with "echo:" + the datagram.
func startUDPEcho(t *testing.T) netip.AddrPort {
	t.Helper()
	pc, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatalf("udp echo: listen: %v", err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 64<<10)
		for {
			n, from, err := pc.ReadFromUDPAddrPort(buf)
			if err != nil {
				return
			}
			pc.WriteToUDPAddrPort(append([]byte("echo:"), buf[:n]...), from)
		}
	}()
	t.Cleanup(func() {
		pc.Close()
		<-done
	})
	return pc.LocalAddr().(*net.UDPAddr).AddrPort()
}

// freePort returns a loopback TCP port that was free a moment ago. Xray and
// burrow take ports in their configs, so the test must choose them.
func freePort(t *testing.T) int {
	t.Helper()
	// From just below the ephemeral range: a port-0 listener or an outgoing
	// connection elsewhere on the machine cannot take it before the peer
	// process binds it.
	low := 32768
	if b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range"); err == nil {
		if f := strings.Fields(string(b)); len(f) == 2 {
			if n, err := strconv.Atoi(f[0]); err == nil && n > 2048 {
				low = n
			}
		}
	}
	for range 64 {
		p := low - 1 - mrand.IntN(min(low-1024, 8192))
		if l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(p))); err == nil {
			l.Close()
			return p
		}
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("free port: %v", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// waitTCP waits until something accepts TCP connections at addr.
func waitTCP(t *testing.T, addr string, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("nothing listens on %s after %v: %v", addr, timeout, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// socksHTTPClient returns an HTTP client that reaches every site through the
// SOCKS5 proxy at socksAddr (CONNECT with the target IP), trusting roots for
// HTTPS. It uses golang.org/x/net/proxy as an independent SOCKS5 client.
func socksHTTPClient(t *testing.T, socksAddr string, roots *x509.CertPool) *http.Client {
	t.Helper()
	d, err := proxy.SOCKS5("tcp", socksAddr, nil, &net.Dialer{Timeout: 10 * time.Second})
	if err != nil {
		t.Fatalf("socks5 dialer: %v", err)
	}
	tr := &http.Transport{
		DialContext:         d.(proxy.ContextDialer).DialContext,
		TLSClientConfig:     &tls.Config{RootCAs: roots, ServerName: "site.test"},
		DisableCompression:  true,
		TLSHandshakeTimeout: 15 * time.Second,
		ForceAttemptHTTP2:   false,
	}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 60 * time.Second}
}

// fetchBlob GETs url and checks the body's length and SHA-256.
func fetchBlob(t *testing.T, c *http.Client, url string, want [32]byte) {
	t.Helper()
	start := time.Now()
	resp, err := c.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: status = %s, want 200", url, resp.Status)
	}
	h := sha256.New()
	n, err := io.Copy(h, resp.Body)
	if err != nil {
		t.Fatalf("GET %s: read body after %d bytes: %v", url, n, err)
	}
	if n != blobSize {
		t.Fatalf("GET %s: body length = %d, want %d", url, n, blobSize)
	}
	if got := h.Sum(nil); !equal32(got, want) {
		t.Fatalf("GET %s: sha256 = %s, want %s", url, hex.EncodeToString(got), hex.EncodeToString(want[:]))
	}
	t.Logf("GET %s: %d bytes, sha256 ok, %v", url, n, time.Since(start).Round(time.Millisecond))
}

func equal32(b []byte, want [32]byte) bool {
	return len(b) == 32 && [32]byte(b) == want
}

// errUDPNotSupported means the SOCKS5 server refused UDP ASSOCIATE.
var errUDPNotSupported = errors.New("socks5: UDP ASSOCIATE refused")

// socksUDPExchange sends payload to target through the SOCKS5 server's UDP
// ASSOCIATE and returns the first datagram that comes back. Written by hand
// (x/net/proxy has no UDP) from RFC 1928:
//
//	request : VER=5 CMD=3 RSV=0 ATYP=1 DST.ADDR=0.0.0.0 DST.PORT=0
//	reply   : VER=5 REP ATYP BND.ADDR BND.PORT   (REP 0 = succeeded)
//	datagram: RSV(2)=0 FRAG=0 ATYP=1 DST.ADDR(4) DST.PORT(2) DATA
func socksUDPExchange(ctx context.Context, socksAddr string, target netip.AddrPort, payload []byte) ([]byte, error) {
	var d net.Dialer
	ctrl, err := d.DialContext(ctx, "tcp", socksAddr)
	if err != nil {
		return nil, fmt.Errorf("socks5: dial: %w", err)
	}
	defer ctrl.Close()
	if dl, ok := ctx.Deadline(); ok {
		ctrl.SetDeadline(dl)
	}
	br := bufio.NewReader(ctrl)
	if _, err := ctrl.Write([]byte{5, 1, 0}); err != nil {
		return nil, fmt.Errorf("socks5: greeting: %w", err)
	}
	var method [2]byte
	if _, err := io.ReadFull(br, method[:]); err != nil {
		return nil, fmt.Errorf("socks5: read method: %w", err)
	}
	if method != [2]byte{5, 0} {
		return nil, fmt.Errorf("socks5: method reply = %x, want 0500", method)
	}
	if _, err := ctrl.Write([]byte{5, 3, 0, 1, 0, 0, 0, 0, 0, 0}); err != nil {
		return nil, fmt.Errorf("socks5: udp associate: %w", err)
	}
	var head [4]byte
	if _, err := io.ReadFull(br, head[:]); err != nil {
		return nil, fmt.Errorf("socks5: read associate reply: %w", err)
	}
	if head[1] != 0 {
		return nil, fmt.Errorf("%w (reply code %d)", errUDPNotSupported, head[1])
	}
	var relay netip.AddrPort
	switch head[3] {
	case 1, 4:
		ip := make([]byte, 4)
		if head[3] == 4 {
			ip = make([]byte, 16)
		}
		var port [2]byte
		if _, err := io.ReadFull(br, ip); err != nil {
			return nil, fmt.Errorf("socks5: read bound address: %w", err)
		}
		if _, err := io.ReadFull(br, port[:]); err != nil {
			return nil, fmt.Errorf("socks5: read bound port: %w", err)
		}
		a, _ := netip.AddrFromSlice(ip)
		relay = netip.AddrPortFrom(a.Unmap(), uint16(port[0])<<8|uint16(port[1]))
	default:
		return nil, fmt.Errorf("socks5: bound address type %d not handled by this test", head[3])
	}
	if relay.Addr().IsUnspecified() {
		host, _, _ := net.SplitHostPort(socksAddr)
		relay = netip.AddrPortFrom(netip.MustParseAddr(host), relay.Port())
	}
	uc, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(relay))
	if err != nil {
		return nil, fmt.Errorf("socks5: dial udp relay %v: %w", relay, err)
	}
	defer uc.Close()
	if dl, ok := ctx.Deadline(); ok {
		uc.SetDeadline(dl)
	}
	ip4 := target.Addr().As4()
	pkt := append([]byte{0, 0, 0, 1}, ip4[:]...)
	pkt = append(pkt, byte(target.Port()>>8), byte(target.Port()))
	pkt = append(pkt, payload...)
	buf := make([]byte, 64<<10)
	// UDP may be lost even on loopback while the tunnel is being set up:
	// resend until an answer arrives or the context ends.
	for {
		if _, err := uc.Write(pkt); err != nil {
			return nil, fmt.Errorf("socks5: send datagram: %w", err)
		}
		uc.SetReadDeadline(time.Now().Add(time.Second))
		n, err := uc.Read(buf)
		if err == nil {
			return parseSocksDatagram(buf[:n])
		}
		if ctx.Err() != nil {
			return nil, fmt.Errorf("socks5: no answer through UDP relay %v: %w", relay, err)
		}
	}
}

// parseSocksDatagram strips the SOCKS5 UDP header from a relayed datagram.
func parseSocksDatagram(b []byte) ([]byte, error) {
	if len(b) < 4 || b[2] != 0 {
		return nil, fmt.Errorf("socks5: bad datagram header %x", b[:min(len(b), 4)])
	}
	var skip int
	switch b[3] {
	case 1:
		skip = 4 + 4 + 2
	case 4:
		skip = 4 + 16 + 2
	case 3:
		if len(b) < 5 {
			return nil, errors.New("socks5: short datagram")
		}
		skip = 4 + 1 + int(b[4]) + 2
	default:
		return nil, fmt.Errorf("socks5: datagram address type %d", b[3])
	}
	if len(b) < skip {
		return nil, errors.New("socks5: short datagram")
	}
	return b[skip:], nil
}

// probeTLS opens TLS 1.3 to addr with the given SNI the way a censor's prober
// would (no REALITY authenticator), returns the leaf certificate it was shown
// and the body of GET /.
func probeTLS(t *testing.T, addr, sni string) (leaf []byte, body string) {
	t.Helper()
	d := &net.Dialer{Timeout: 10 * time.Second}
	conn, err := tls.DialWithDialer(d, "tcp", addr, &tls.Config{
		ServerName:         sni,
		InsecureSkipVerify: true, // the prober looks at the certificate, it does not trust it
		MinVersion:         tls.VersionTLS13,
		NextProtos:         []string{"http/1.1"},
	})
	if err != nil {
		t.Fatalf("probe %s: TLS handshake: %v", addr, err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(15 * time.Second))
	st := conn.ConnectionState()
	if len(st.PeerCertificates) == 0 {
		t.Fatalf("probe %s: no certificate", addr)
	}
	fmt.Fprintf(conn, "GET / HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n", sni)
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("probe %s: read response: %v", addr, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("probe %s: read body: %v", addr, err)
	}
	return st.PeerCertificates[0].Raw, string(b)
}

func dialTimeout(addr string, d time.Duration) (net.Conn, error) {
	return net.DialTimeout("tcp", addr, d)
}

// expectNoTunnel checks that a GET through the SOCKS5 proxy at socksAddr fails
// (or at least returns none of the site's bytes) within 30s.
func expectNoTunnel(t *testing.T, socksAddr, url string) {
	t.Helper()
	c := socksHTTPClient(t, socksAddr, nil)
	c.Timeout = 30 * time.Second
	resp, err := c.Get(url)
	if err != nil {
		t.Logf("GET %s through %s failed as it should: %v", url, socksAddr, err)
		return
	}
	defer resp.Body.Close()
	n, _ := io.Copy(io.Discard, resp.Body)
	t.Fatalf("GET %s through %s = %s with %d body bytes, want no tunnel", url, socksAddr, resp.Status, n)
}

// portOf returns the port of a host:port address.
func portOf(addr string) string {
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		panic(err)
	}
	return port
}
