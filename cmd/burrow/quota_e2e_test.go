package main

import (
	"bufio"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/binary"
	"fmt"
	"io"
	"math/big"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/net/proxy"
)

// TestAccessQuotaParallelOvershoot: 40 TLS streams (each on a Vision
// connection of its own, spliced once Vision goes direct), 40 plain-text
// streams inside mux and a UDP flow download at once through one user with
// an 8 MiB quota. Everything delivered, both ways, stays within the quota
// plus 256 KiB: every connection reserves from the user's one budget before
// it sends.
func TestAccessQuotaParallelOvershoot(t *testing.T) {
	const (
		quota   = 8 << 20
		streams = 40
	)
	release := make(chan struct{}) // targets send their bulk once every stream is live
	var upstream atomic.Int64      // bytes the targets received
	tlsAddr := bulkTarget(t, true, release, &upstream)
	plainAddr := bulkTarget(t, false, release, &upstream)
	udpAddr := udpBulkTarget(t, &upstream)

	e := deployServer(t, true)
	socks := strings.TrimPrefix(connect(t, e.addUser(t, "erin", "--quota", "8MiB")), "socks5://")
	dialer, err := proxy.SOCKS5("tcp", socks, nil, proxy.Direct)
	if err != nil {
		t.Fatal(err)
	}

	var down atomic.Int64 // bytes the client's applications received
	var live, ended sync.WaitGroup
	errs := make(chan error, 2*streams)
	for i := range 2 * streams {
		live.Add(1)
		ended.Go(func() {
			useTLS := i < streams
			addr := plainAddr
			if useTLS {
				addr = tlsAddr
			}
			errs <- downloadStream(dialer, addr, useTLS, &down, live.Done)
		})
	}
	stopUDP := make(chan struct{})
	udpDone := make(chan error, 1)
	live.Add(1)
	go func() { udpDone <- udpFlow(socks, udpAddr, &down, live.Done, release, stopUDP) }()
	live.Wait()
	close(release)
	ended.Wait()
	close(stopUDP)
	if err := <-udpDone; err != nil {
		t.Errorf("UDP flow: %v", err)
	}
	close(errs)
	for err := range errs {
		if err != nil {
			t.Errorf("%v\nserver: %s", err, e.srv.stderr)
		}
	}

	total := down.Load() + upstream.Load()
	t.Logf("quota %d: delivered %d bytes (%d down, %d up), overshoot %d", quota, total, down.Load(), upstream.Load(), total-quota)
	if total > quota+256<<10 {
		t.Errorf("delivered %d bytes with an %d-byte quota: %d over, want at most 256 KiB", total, quota, total-quota)
	}
	if total < quota/2 {
		t.Errorf("delivered %d bytes with an %d-byte quota, want most of it (the streams ran until the quota ended them)", total, quota)
	}
}

// bulkTarget listens on loopback; each connection gets a greeting (after the
// client's first line on plain text), then, once release is closed, data
// until it breaks. Bytes read from clients are added to upstream.
func bulkTarget(t *testing.T, useTLS bool, release <-chan struct{}, upstream *atomic.Int64) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	var cfg *tls.Config
	if useTLS {
		cfg = &tls.Config{Certificates: []tls.Certificate{selfSigned(t)}}
	}
	go func() {
		for {
			raw, err := ln.Accept()
			if err != nil {
				return
			}
			go serveBulk(raw, cfg, release, upstream)
		}
	}()
	return ln.Addr().String()
}

func serveBulk(raw net.Conn, cfg *tls.Config, release <-chan struct{}, upstream *atomic.Int64) {
	defer raw.Close()
	raw.SetDeadline(time.Now().Add(2 * time.Minute))
	var c net.Conn = &countingConn{Conn: raw, read: upstream}
	if cfg != nil {
		c = tls.Server(c, cfg)
	}
	if _, err := bufio.NewReader(c).ReadString('\n'); err != nil {
		return
	}
	chunk := make([]byte, 32<<10)
	if _, err := c.Write(chunk[:1024]); err != nil {
		return
	}
	<-release
	go io.Copy(io.Discard, c) // notices the end of the stream
	for {
		if _, err := c.Write(chunk); err != nil {
			return
		}
	}
}

// downloadStream opens a stream to addr through the proxy, says hello, reads
// the greeting, calls live, then reads until the stream ends. It counts the
// bytes it received on the wire (TLS records included) on down.
func downloadStream(d proxy.Dialer, addr string, useTLS bool, down *atomic.Int64, live func()) error {
	once := sync.OnceFunc(live)
	defer once()
	kind := "plain-text"
	if useTLS {
		kind = "TLS"
	}
	raw, err := d.Dial("tcp", addr)
	if err != nil {
		return fmt.Errorf("%s stream: %w", kind, err)
	}
	defer raw.Close()
	raw.SetDeadline(time.Now().Add(2 * time.Minute))
	var c net.Conn = &countingConn{Conn: raw, read: down}
	if useTLS {
		c = tls.Client(c, &tls.Config{InsecureSkipVerify: true})
	}
	if _, err := io.WriteString(c, "hello\n"); err != nil {
		return fmt.Errorf("%s stream: hello: %w", kind, err)
	}
	if _, err := io.ReadFull(c, make([]byte, 1024)); err != nil {
		return fmt.Errorf("%s stream: greeting: %w", kind, err)
	}
	once()
	_, err = io.Copy(io.Discard, c)
	if ne, ok := err.(net.Error); ok && ne.Timeout() {
		return fmt.Errorf("%s stream: %w", kind, err) // the quota never ended it
	}
	return nil
}

// udpBulkTarget answers every datagram with eight of 1,200 bytes.
func udpBulkTarget(t *testing.T, upstream *atomic.Int64) string {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	go func() {
		buf := make([]byte, 2048)
		reply := make([]byte, 1200)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			upstream.Add(int64(n))
			for range 8 {
				pc.WriteTo(reply, from)
			}
		}
	}()
	return pc.LocalAddr().String()
}

// udpFlow sends datagrams to target through the proxy's UDP ASSOCIATE and
// counts the payload of the replies on down: one until a reply comes back,
// then (live called) from release until stop is closed.
func udpFlow(socks, target string, down *atomic.Int64, live func(), release, stop <-chan struct{}) error {
	once := sync.OnceFunc(live)
	defer once()
	ctrl, err := net.Dial("tcp", socks)
	if err != nil {
		return err
	}
	defer ctrl.Close()
	ctrl.SetDeadline(time.Now().Add(20 * time.Second))
	ctrl.Write([]byte{5, 1, 0, 5, 3, 0, 1, 0, 0, 0, 0, 0, 0})
	var rep [12]byte // greeting reply, then the UDP ASSOCIATE reply
	if _, err := io.ReadFull(ctrl, rep[:]); err != nil {
		return err
	}
	if rep[1] != 0 || rep[3] != 0 || rep[5] != 1 {
		return fmt.Errorf("SOCKS5 UDP ASSOCIATE: reply % x", rep)
	}
	relay := &net.UDPAddr{IP: net.IP(rep[6:10]), Port: int(binary.BigEndian.Uint16(rep[10:12]))}
	uc, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		return err
	}
	defer uc.Close()
	host, port, _ := net.SplitHostPort(target)
	p, _ := strconv.Atoi(port)
	msg := append([]byte{0, 0, 0, 1}, net.ParseIP(host).To4()...)
	msg = binary.BigEndian.AppendUint16(msg, uint16(p))
	msg = append(msg, make([]byte, 100)...)
	buf := make([]byte, 2048)
	for {
		select {
		case <-stop:
			return nil
		default:
		}
		if _, err := uc.WriteTo(msg, relay); err != nil {
			return err
		}
		uc.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
		for {
			n, _, err := uc.ReadFrom(buf)
			if err != nil {
				break // a lost or refused reply: send the next one
			}
			if n > 10 {
				down.Add(int64(n - 10)) // the SOCKS UDP header is ours
			}
			if once(); release != nil {
				<-release
				release = nil
				break
			}
		}
	}
}

// countingConn adds the bytes read from it to read.
type countingConn struct {
	net.Conn
	read *atomic.Int64
}

func (c *countingConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.read.Add(int64(n))
	return n, err
}

func selfSigned(t *testing.T) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "bulk.test"},
		DNSNames: []string{"bulk.test"}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}
