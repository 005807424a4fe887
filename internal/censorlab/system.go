package censorlab

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/burrow-vpn/burrow/internal/bidi"
)

// System is a tunnel or proxy under test: a server started once per lab
// run, and a client that reaches it through each cell's censor.
type System struct {
	// Name is "burrow-..." for Burrow's transports, or a baseline's name.
	Name string
	// Baseline systems are known-blockable: the lab must catch them.
	Baseline bool
	// Network is how the client reaches the server: "tcp" or "udp".
	Network string
	// CaughtBy are the scenarios that must detect this baseline; the CI
	// rule fails when one stops doing so.
	CaughtBy []string
	// Control systems are benign controls: ordinary browsing with no
	// tunnel, to the cover's own network. A rule that flags one is not
	// usable by a censor (collateral damage), and the lab's CI rule fails.
	Control bool
	// ExpectedFail maps a scenario this system cannot survive yet to the
	// rules expected to catch it and the bytes that must still arrive; its
	// cell is shown as "expected fail" and does not fail the build as long
	// as only those rules fire and at least Floor bytes arrive.
	ExpectedFail map[string]Expect
	// Start runs the server. The returned Instance's Dial goes through the
	// address it is given (the censor's relay).
	Start func(ctx context.Context, env Env) (*Instance, error)
}

// Expect is a known weakness of a system in one scenario.
type Expect struct {
	// Rules are the rules (Middlebox names, or a Verdict's Rule) expected
	// to catch the system; any other rule firing fails the cell.
	Rules []string
	// Floor is the least the workload still delivers, in bytes; fewer
	// fails the cell.
	Floor int64
	// Why says why, in the table.
	Why string
}

// Env is what a system's server gets from the lab.
type Env struct {
	// IP is the address the server listens on (its network decides the
	// byte budget and the whitelist).
	IP netip.Addr
	// CoverIP is an address of the system's own in the cover's network (the
	// whitelisted one, Path.CoverNet), in the servers' network: the relay
	// systems put their entry relay there, in front of a server at IP.
	CoverIP netip.Addr
	// Cover is the lab's cover site (host:port) and its name.
	Cover, CoverSNI string
	// Neighbor is a real site in the servers' own network (host:port) and
	// its name: a cover whose name belongs where the server is.
	Neighbor, NeighborSNI string
	Log                   *slog.Logger
	// CoverSite starts another instance of the lab's cover (the same
	// certificate and pages, and the controls' bigger site) at ip, in the
	// network of the calling goroutine's thread, and returns its address
	// and how to stop it.
	CoverSite func(ip netip.Addr) (netip.AddrPort, func() error, error)
	// ClientDial dials from the client's network. Instance.Dial runs
	// there, but a socket belongs to the network of the thread that made
	// it, so a client that dials later from goroutines of its own (warm-up
	// and rotation connections) must dial with ClientDial. Never nil.
	ClientDial DialFunc
	// ServerDial dials from the servers' network: it reaches the other
	// servers' addresses (IP, CoverIP) from goroutines of the system's own,
	// as a relay dialing its exit must. Never nil.
	ServerDial DialFunc
}

// Instance is a running system.
type Instance struct {
	// Server is the address the server listens on.
	Server netip.AddrPort
	// Dial opens a stream to target (host:port) through the server, which
	// the client reaches at via.
	Dial func(ctx context.Context, via netip.AddrPort, target string) (net.Conn, error)
	// Close stops the server.
	Close func() error
	// EndCell, when set, is told that the cell which reached the server at
	// via is over: a client kept for that route goes, so that the next
	// cell (whose censor may listen on the same port again) starts with a
	// fresh one, as a client entering another network does.
	EndCell func(via netip.AddrPort)
	// Run, when set, is the system's own traffic through via instead of the
	// lab's Workload (the benign controls browse). It reports the bytes it
	// expected and delivered, every byte checked.
	Run func(ctx context.Context, via netip.AddrPort) Tally
}

// endCell tells the system that the cell which reached it at via is over.
func (i *Instance) endCell(via netip.AddrPort) {
	if i.EndCell != nil {
		i.EndCell(via)
	}
}

// tcpServer runs handle for every connection on a listener at ip until
// Close, and waits for the handlers.
type tcpServer struct {
	ln     net.Listener
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

func listenTCP(ctx context.Context, ip netip.Addr, handle func(ctx context.Context, c net.Conn)) (*tcpServer, error) {
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", netip.AddrPortFrom(ip, 0).String())
	if err != nil {
		return nil, fmt.Errorf("censorlab: listen on %s: %w", ip, err)
	}
	s := &tcpServer{ln: ln}
	s.ctx, s.cancel = context.WithCancel(context.WithoutCancel(ctx))
	s.wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s.wg.Go(func() {
				stop := context.AfterFunc(s.ctx, func() { c.Close() })
				defer stop()
				defer c.Close()
				handle(s.ctx, c)
			})
		}
	})
	return s, nil
}

func (s *tcpServer) addr() netip.AddrPort { return s.ln.Addr().(*net.TCPAddr).AddrPort() }

func (s *tcpServer) Close() error {
	s.cancel()
	err := s.ln.Close()
	s.wg.Wait()
	return err
}

// relayTo dials target and copies both ways between c and it until both
// directions end. first is sent to the target before anything else.
func relayTo(ctx context.Context, c io.ReadWriteCloser, target string) error {
	var d net.Dialer
	dctx, cancel := context.WithTimeout(ctx, Budget(5*time.Second))
	t, err := d.DialContext(dctx, "tcp", target)
	cancel()
	if err != nil {
		return err
	}
	defer t.Close()
	return bidi.Copy(ctx, c, t)
}

// readLine reads one '\n'-terminated line of at most 300 bytes, byte by
// byte, so nothing after it is consumed.
func readLine(r io.Reader) (string, error) {
	var b []byte
	var one [1]byte
	for len(b) < 300 {
		if _, err := io.ReadFull(r, one[:]); err != nil {
			return "", err
		}
		if one[0] == '\n' {
			return string(b), nil
		}
		b = append(b, one[0])
	}
	return "", errors.New("censorlab: line too long")
}

// bufferedConn is a net.Conn whose first reads come from a bufio.Reader.
type bufferedConn struct {
	net.Conn
	r *bufio.Reader
}

func (c *bufferedConn) Read(p []byte) (int, error) { return c.r.Read(p) }
