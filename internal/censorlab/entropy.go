package censorlab

import (
	"bytes"
	"fmt"
	"math/bits"
	"time"
)

// FullyEncrypted is the GFW's 2023 rule against "looks like nothing"
// protocols (Wu et al., USENIX Security 2023): the first data a client sends
// on a TCP connection is exempt if any of Ex1..Ex5 holds (see Exemption);
// otherwise the connection is reset and the (client, server IP, server port)
// triple blocked for BlockFor. The GFW blocks only ~26% of such
// connections; the lab blocks all of them so the table is deterministic.
type FullyEncrypted struct {
	// BlockFor is how long the triple stays blocked. Default 180s.
	BlockFor time.Duration

	c *Censor
}

func (*FullyEncrypted) Name() string       { return "fully-encrypted" }
func (m *FullyEncrypted) attach(c *Censor) { m.c = c }
func (*FullyEncrypted) Open(*Flow) Verdict { return Verdict{} }
func (*FullyEncrypted) Close(*Flow)        {}
func (m *FullyEncrypted) blockFor() time.Duration {
	if m.BlockFor == 0 {
		return 180 * time.Second
	}
	return m.BlockFor
}

func (m *FullyEncrypted) Data(f *Flow, dir Dir, p []byte) Verdict {
	// Only the first piece the client sends: the GFW looks at one packet.
	if dir != Up || f.Network != "tcp" || f.Pieces(Up) != 1 {
		return Verdict{}
	}
	if ex := Exemption(p); ex != "" {
		return Verdict{}
	}
	reason := fmt.Sprintf("first packet (%d bytes, %.2f set bits per byte) meets no exemption", len(p), popcount(p))
	if m.c != nil {
		m.c.BlockPair(f.Client.Addr(), f.Server, m.blockFor(), m.Name(), reason)
	}
	return Verdict{Action: Reset, Reason: reason}
}

// Exemption returns which of the GFW's exemptions lets a first packet p
// through ("Ex1".."Ex5", with a note), or "" if none does:
//
//	Ex1  average set bits per byte <= 3.4 or >= 4.6
//	Ex2  the first six bytes are printable ASCII (0x20-0x7e)
//	Ex3  more than half of the bytes are printable
//	Ex4  more than 20 contiguous printable bytes
//	Ex5  starts like TLS ([16|17] 03 [00-09]) or HTTP (GET, PUT, POST, HEAD)
func Exemption(p []byte) string {
	if len(p) == 0 {
		return "empty"
	}
	if pc := popcount(p); pc <= 3.4 || pc >= 4.6 {
		return fmt.Sprintf("Ex1: %.2f set bits per byte", pc)
	}
	if len(p) >= 6 && printableRun(p[:6]) == 6 {
		return "Ex2: first six bytes printable"
	}
	printable, run, best := 0, 0, 0
	for _, b := range p {
		if isPrintable(b) {
			printable++
			run++
			best = max(best, run)
		} else {
			run = 0
		}
	}
	if printable*2 > len(p) {
		return "Ex3: more than half printable"
	}
	if best > 20 {
		return "Ex4: printable run longer than 20"
	}
	if len(p) >= 3 && (p[0] == 0x16 || p[0] == 0x17) && p[1] == 3 && p[2] <= 9 {
		return "Ex5: TLS prefix"
	}
	for _, m := range []string{"GET ", "PUT ", "POST", "HEAD"} {
		if bytes.HasPrefix(p, []byte(m)) {
			return "Ex5: HTTP prefix"
		}
	}
	return ""
}

func popcount(p []byte) float64 {
	if len(p) == 0 {
		return 0
	}
	n := 0
	for _, b := range p {
		n += bits.OnesCount8(b)
	}
	return float64(n) / float64(len(p))
}

func isPrintable(b byte) bool { return b >= 0x20 && b <= 0x7e }

func printableRun(p []byte) int {
	for i, b := range p {
		if !isPrintable(b) {
			return i
		}
	}
	return len(p)
}
