package tun

import (
	"gvisor.dev/gvisor/pkg/tcpip/checksum"
	"gvisor.dev/gvisor/pkg/tcpip/header"
)

// echoReply turns an ICMP or ICMPv6 echo request into its reply, in place,
// and reports whether pkt was one. Everything else is left to the stack
// (which drops ICMP that is not for itself), so no ICMP leaves the device.
func echoReply(pkt []byte) bool {
	switch pkt[0] >> 4 {
	case 4:
		h := header.IPv4(pkt)
		if !h.IsValid(len(pkt)) || h.Protocol() != uint8(header.ICMPv4ProtocolNumber) || h.More() || h.FragmentOffset() != 0 {
			return false
		}
		hl := int(h.HeaderLength())
		end := int(h.TotalLength())
		if end > len(pkt) || end-hl < header.ICMPv4MinimumSize {
			return false
		}
		icmp := header.ICMPv4(pkt[hl:end])
		if icmp.Type() != header.ICMPv4Echo || icmp.Code() != 0 {
			return false
		}
		src, dst := h.SourceAddress(), h.DestinationAddress()
		h.SetSourceAddress(dst)
		h.SetDestinationAddress(src)
		h.SetTTL(64)
		h.SetChecksum(0)
		h.SetChecksum(^h.CalculateChecksum())
		icmp.SetType(header.ICMPv4EchoReply)
		icmp.SetChecksum(0)
		icmp.SetChecksum(^checksum.Checksum(icmp, 0))
		return true
	case 6:
		h := header.IPv6(pkt)
		if !h.IsValid(len(pkt)) || h.NextHeader() != uint8(header.ICMPv6ProtocolNumber) {
			return false
		}
		end := header.IPv6MinimumSize + int(h.PayloadLength())
		if end > len(pkt) || end-header.IPv6MinimumSize < header.ICMPv6EchoMinimumSize {
			return false
		}
		icmp := header.ICMPv6(pkt[header.IPv6MinimumSize:end])
		if icmp.Type() != header.ICMPv6EchoRequest || icmp.Code() != 0 {
			return false
		}
		src, dst := h.SourceAddress(), h.DestinationAddress()
		if dst.Unspecified() || header.IsV6MulticastAddress(dst) {
			return false
		}
		h.SetSourceAddress(dst)
		h.SetDestinationAddress(src)
		h.SetHopLimit(64)
		icmp.SetType(header.ICMPv6EchoReply)
		icmp.SetChecksum(0)
		icmp.SetChecksum(header.ICMPv6Checksum(header.ICMPv6ChecksumParams{Header: icmp, Src: dst, Dst: src}))
		return true
	}
	return false
}
