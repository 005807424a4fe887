// Package tun is Burrow's full-device mode: a TUN device, a userspace TCP/IP
// stack (gVisor's netstack) that turns the packets the operating system
// routes into the device back into TCP streams and UDP flows, and, on Linux,
// the routes, rules and resolver settings that send the machine's traffic
// into the device and take it out again on exit.
//
//	app ─► kernel ─► route table 0x4255 ─► TUN ─► Stack (netstack) ─► Config.Dial / Config.DNS
//	                                                                    (the client's router + tunnel)
//
// The Stack answers for every address (promiscuous): a TCP SYN to any
// destination becomes one Config.Dial("tcp", dst) — the handshake with the
// application completes only after the dial succeeded, and is reset if it
// failed; each new UDP source/destination pair becomes one Config.Dial("udp",
// dst), a message-oriented conn, closed after Config.UDPIdle without traffic.
// Every packet to port 53 (UDP or TCP, to any address) is a DNS query given to
// Config.DNS, so no query can leave around the tunnel. ICMP echo requests are
// answered by the stack itself (the reply says "the tunnel is up", not "the
// host is up"); no ICMP leaves the machine.
//
// What it does not do: pick between tunnel and direct, or parse rules —
// that is the caller's Dial (internal/client with internal/route).
//
// # Device contract
//
// A Device moves whole IP packets (IPv4 or IPv6, no link header, no packet
// information prefix): one Read returns one packet, one Write sends one. Close
// unblocks a pending Read. ChannelDevice is the in-memory stand-in for tests.
package tun

import (
	"errors"
	"io"
	"sync"
)

// Device is a TUN device: whole IP packets in and out.
type Device interface {
	// Read reads one packet into p and returns its length. After Close it
	// returns an error wrapping io.EOF or os.ErrClosed.
	Read(p []byte) (int, error)
	// Write sends one packet.
	Write(p []byte) (int, error)
	// MTU is the largest packet the device carries.
	MTU() int
	// Name is the interface name ("burrow0"), or a description for fakes.
	Name() string
	Close() error
}

// ChannelDevice is an in-memory Device: packets written to In are read by
// the stack as if the operating system had routed them into the TUN, and
// packets the stack writes appear on Out. It is for tests.
type ChannelDevice struct {
	In   chan []byte // to the stack
	Out  chan []byte // from the stack
	mtu  int
	done chan struct{}
	once sync.Once
}

// NewChannelDevice returns a ChannelDevice with buffered channels.
func NewChannelDevice(mtu int) *ChannelDevice {
	return &ChannelDevice{In: make(chan []byte, 256), Out: make(chan []byte, 256), mtu: mtu, done: make(chan struct{})}
}

func (d *ChannelDevice) Read(p []byte) (int, error) {
	select {
	case pkt := <-d.In:
		return copy(p, pkt), nil
	case <-d.done:
		return 0, io.EOF
	}
}

func (d *ChannelDevice) Write(p []byte) (int, error) {
	b := append([]byte(nil), p...)
	select {
	case d.Out <- b:
		return len(p), nil
	case <-d.done:
		return 0, errClosed
	}
}

func (d *ChannelDevice) MTU() int     { return d.mtu }
func (d *ChannelDevice) Name() string { return "chan" }

// Close unblocks Read and Write; it is safe to call more than once.
func (d *ChannelDevice) Close() error {
	d.once.Do(func() { close(d.done) })
	return nil
}

var errClosed = errors.New("tun: device closed")
