package tun

import (
	"testing"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/checksum"
	"gvisor.dev/gvisor/pkg/tcpip/header"
)

func echo6(payload string) []byte {
	src := tcpip.AddrFrom16Slice([]byte{0xfd, 0, 15: 2})
	dst := tcpip.AddrFrom16Slice([]byte{0x20, 0x01, 0x0d, 0xb8, 15: 5})
	pkt := make([]byte, header.IPv6MinimumSize+header.ICMPv6EchoMinimumSize+len(payload))
	h := header.IPv6(pkt)
	h.Encode(&header.IPv6Fields{PayloadLength: uint16(len(pkt) - header.IPv6MinimumSize),
		TransportProtocol: header.ICMPv6ProtocolNumber, HopLimit: 64, SrcAddr: src, DstAddr: dst})
	icmp := header.ICMPv6(pkt[header.IPv6MinimumSize:])
	icmp.SetType(header.ICMPv6EchoRequest)
	copy(icmp.Payload(), payload)
	icmp.SetChecksum(header.ICMPv6Checksum(header.ICMPv6ChecksumParams{Header: icmp, Src: src, Dst: dst}))
	return pkt
}

func echo4(payload string) []byte {
	pkt := make([]byte, header.IPv4MinimumSize+header.ICMPv4MinimumSize+len(payload))
	h := header.IPv4(pkt)
	h.Encode(&header.IPv4Fields{TotalLength: uint16(len(pkt)), TTL: 64, Protocol: uint8(header.ICMPv4ProtocolNumber),
		SrcAddr: tcpip.AddrFrom4([4]byte{10, 0, 0, 2}), DstAddr: tcpip.AddrFrom4([4]byte{203, 0, 113, 1})})
	h.SetChecksum(^h.CalculateChecksum())
	icmp := header.ICMPv4(pkt[header.IPv4MinimumSize:])
	icmp.SetType(header.ICMPv4Echo)
	copy(icmp.Payload(), payload)
	icmp.SetChecksum(^checksum.Checksum(icmp, 0))
	return pkt
}

func TestEchoReply6(t *testing.T) {
	pkt := echo6("six")
	if !echoReply(pkt) {
		t.Fatal("echoReply(ICMPv6 echo request) = false, want true")
	}
	h := header.IPv6(pkt)
	icmp := header.ICMPv6(h.Payload())
	if icmp.Type() != header.ICMPv6EchoReply || string(icmp.Payload()) != "six" {
		t.Errorf("reply type %d payload %q, want echo reply \"six\"", icmp.Type(), icmp.Payload())
	}
	if h.SourceAddress().String() != "2001:db8::5" || h.DestinationAddress().String() != "fd00::2" {
		t.Errorf("reply %v → %v, want 2001:db8::5 → fd00::2", h.SourceAddress(), h.DestinationAddress())
	}
	want := header.ICMPv6Checksum(header.ICMPv6ChecksumParams{Header: icmp, Src: h.SourceAddress(), Dst: h.DestinationAddress()})
	if got := icmp.Checksum(); got != want { // ICMPv6Checksum skips the field itself
		t.Errorf("reply checksum %#x, want %#x", got, want)
	}
	if echoReply([]byte{0x60, 0, 0}) {
		t.Error("echoReply(truncated IPv6) = true, want false")
	}
}

// FuzzEchoReply: packets from the TUN are whatever local programs send; the
// echo responder must never panic on them.
func FuzzEchoReply(f *testing.F) {
	f.Add(echo4("burrow"))
	f.Add(echo6("burrow"))
	f.Add([]byte{0x45})
	f.Fuzz(func(t *testing.T, pkt []byte) {
		if len(pkt) == 0 {
			return
		}
		echoReply(pkt)
	})
}
