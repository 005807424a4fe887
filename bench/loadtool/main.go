// Command loadtool is the load generator and the stand-in servers of Burrow's
// side-by-side benchmark (bench/run.sh). It imports nothing of Burrow: it
// talks to every system under test only through SOCKS5 on loopback, so the
// same code measures a direct connection, a plain TCP forwarder, Xray-core
// and Burrow.
//
// Subcommands:
//
//	loadtool sink -plain ADDR -tls ADDR -cover ADDR   data sink, inner-TLS sink, cover site
//	loadtool forward -listen ADDR                     plain SOCKS5 TCP forwarder (splice)
//	loadtool bench -systems FILE [flags]              runs the measurements, prints a table, writes JSON
//	loadtool keys                                     prints an X25519 key pair, a UUID and a short ID
//	loadtool freeport [-n N]                          prints N free loopback TCP ports
//	loadtool waitport -addr ADDR [-timeout D]         waits until ADDR accepts TCP connections
//
// # Sink protocol
//
// A client opens a TCP connection to the sink (or a TLS 1.3 connection to the
// TLS sink; the protocol then runs inside TLS) and sends a 9-byte request:
//
//	+------+----------------------+
//	| mode | count (uint64, BE)   |
//	+------+----------------------+
//	  1 B          8 B
//
// mode 'D' (download): the sink writes count bytes of a fixed random pattern
// and closes. mode 'E' (echo): the sink echoes every byte back until the
// client closes; count is ignored. Anything else closes the connection.
//
// The forwarder speaks the CONNECT subset of SOCKS5 (RFC 1928, no
// authentication) and relays with io.Copy between *net.TCPConn, which splices
// on Linux: it is the floor a proxy cannot beat on this machine.
//
// Only loopback addresses are ever dialed; the tool is a benchmark, not a
// proxy to run anywhere else.
package main

import (
	"crypto/ecdh"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"flag"
	"fmt"
	"net"
	"os"
	"time"
)

func main() {
	if len(os.Args) < 2 {
		usage()
	}
	var err error
	args := os.Args[2:]
	switch os.Args[1] {
	case "sink":
		err = runSink(args)
	case "forward":
		err = runForward(args)
	case "bench":
		err = runBench(args)
	case "keys":
		err = runKeys()
	case "freeport":
		err = runFreeport(args)
	case "waitport":
		err = runWaitport(args)
	default:
		usage()
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "loadtool %s: %v\n", os.Args[1], err)
		os.Exit(1)
	}
}

func usage() {
	fmt.Fprintln(os.Stderr, "usage: loadtool sink|forward|bench|keys|freeport|waitport [flags]")
	os.Exit(2)
}

// runKeys prints "PRIVATE PUBLIC UUID SHORTID": an X25519 key pair in
// unpadded base64url (the encoding of Xray's config and of vless:// links),
// a random version-4 UUID and an 8-byte short ID in hex.
func runKeys() error {
	priv, err := ecdh.X25519().GenerateKey(rand.Reader)
	if err != nil {
		return fmt.Errorf("generate key: %w", err)
	}
	var u [16]byte
	rand.Read(u[:])
	u[6] = u[6]&0x0f | 0x40
	u[8] = u[8]&0x3f | 0x80
	sid := make([]byte, 8)
	rand.Read(sid)
	enc := base64.RawURLEncoding
	fmt.Printf("%s %s %x-%x-%x-%x-%x %s\n",
		enc.EncodeToString(priv.Bytes()), enc.EncodeToString(priv.PublicKey().Bytes()),
		u[0:4], u[4:6], u[6:8], u[8:10], u[10:16], hex.EncodeToString(sid))
	return nil
}

func runFreeport(args []string) error {
	fs := flag.NewFlagSet("freeport", flag.ExitOnError)
	n := fs.Int("n", 1, "number of ports")
	fs.Parse(args)
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	for range *n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return err
		}
		ls = append(ls, l)
		fmt.Println(l.Addr().(*net.TCPAddr).Port)
	}
	return nil
}

func runWaitport(args []string) error {
	fs := flag.NewFlagSet("waitport", flag.ExitOnError)
	addr := fs.String("addr", "", "host:port")
	timeout := fs.Duration("timeout", 20*time.Second, "give up after")
	fs.Parse(args)
	return waitPort(*addr, *timeout)
}

// waitPort polls addr until a TCP connection succeeds or timeout passes.
func waitPort(addr string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s not accepting connections after %v: %w", addr, timeout, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
