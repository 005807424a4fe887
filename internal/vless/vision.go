package vless

import (
	"bytes"
	"math/rand/v2"
	"sync"
)

// Vision block commands.
const (
	cmdContinue byte = 0 // another padded block follows
	cmdEnd      byte = 1 // padding ends; plain data follows inside the outer TLS
	cmdDirect   byte = 2 // padding ends; raw data follows on the TCP conn under the outer TLS
)

// Xray's fixed padding parameters ("testseed" default {900, 500, 900, 256}): a block whose
// content is shorter than longPadBelow gets rand[0,longPadRand)+longPadBase-len padding when long
// padding is on (inner TLS handshake, or the empty block hiding the VLESS header); otherwise
// rand[0,shortPadRand).
const (
	longPadBelow = 900
	longPadRand  = 500
	longPadBase  = 900
	shortPadRand = 256

	bufSize       = 8192         // Xray's buf.Size: unit of filtering and padding
	maxBlockTotal = bufSize - 21 // content+padding cap of a block (16 UUID + 5 header)
	packetsToScan = 8            // NumberOfPacketToFilter
)

var (
	tlsAppData     = []byte{0x17, 0x03, 0x03}
	tlsServerHS    = []byte{0x16, 0x03, 0x03}
	tlsClientHS    = []byte{0x16, 0x03}
	tls13Supported = []byte{0x00, 0x2b, 0x00, 0x02, 0x03, 0x04} // supported_versions = TLS 1.3
)

// trafficState is what both directions of one Vision conn learn about the inner traffic
// (Xray's TrafficState minus the per-direction parts). The reader's and writer's filters
// update it; the writer decides from it when padding ends and whether to go direct.
type trafficState struct {
	mu                   sync.Mutex
	toFilter             int  // packets (≤8 KiB pieces) still to inspect
	isTLS                bool // a TLS ClientHello or ServerHello was seen
	isTLS12orAbove       bool // a ServerHello was seen
	enableDirect         bool // inner TLS 1.3 with a cipher other than AES_128_CCM_8
	cipher               uint16
	remainingServerHello int // bytes of the ServerHello record not yet inspected; -1 = none
}

func newTrafficState() *trafficState {
	return &trafficState{toFilter: packetsToScan, remainingServerHello: -1}
}

// filterLocked inspects pieces of inner plaintext in order, like Xray's XtlsFilterTls.
func (s *trafficState) filterLocked(pieces ...[]byte) {
	for _, b := range pieces {
		s.toFilter--
		if len(b) >= 6 {
			switch {
			case bytes.HasPrefix(b, tlsServerHS) && b[5] == 2: // ServerHello
				s.remainingServerHello = (int(b[3])<<8 | int(b[4])) + 5
				s.isTLS12orAbove = true
				s.isTLS = true
				if len(b) >= 79 && s.remainingServerHello >= 79 {
					sid := int(b[43])
					if 43+sid+3 <= len(b) {
						s.cipher = uint16(b[43+sid+1])<<8 | uint16(b[43+sid+2])
					}
				}
			case bytes.HasPrefix(b, tlsClientHS) && b[5] == 1: // ClientHello
				s.isTLS = true
			}
		}
		if s.remainingServerHello > 0 {
			end := min(s.remainingServerHello, len(b))
			s.remainingServerHello -= len(b)
			if bytes.Contains(b[:end], tls13Supported) {
				// TLS 1.3: go direct unless the cipher is unknown or TLS_AES_128_CCM_8_SHA256.
				if s.cipher >= 0x1301 && s.cipher <= 0x1304 {
					s.enableDirect = true
				}
				s.toFilter = 0
				return
			}
			if s.remainingServerHello <= 0 { // TLS 1.2 or older
				s.toFilter = 0
				return
			}
		}
	}
}

// chunkPieces cuts p into ≤8 KiB pieces, the buffers Xray's filter and padding work on.
func chunkPieces(dst [][]byte, p []byte) [][]byte {
	for len(p) > 0 {
		n := min(len(p), bufSize)
		dst = append(dst, p[:n])
		p = p[n:]
	}
	return dst
}

// reshapePieces splits pieces too long to pad (≥ 8171 bytes) like Xray's ReshapeMultiBuffer:
// at the last TLS application-data header if it lies in [21, 8171], else in the middle.
func reshapePieces(dst, pieces [][]byte) [][]byte {
	for _, b := range pieces {
		if len(b) >= maxBlockTotal {
			i := bytes.LastIndex(b, tlsAppData)
			if i < 21 || i > maxBlockTotal {
				i = bufSize / 2
			}
			dst = append(dst, b[:i], b[i:])
			continue
		}
		dst = append(dst, b)
	}
	return dst
}

// isCompleteRecords reports whether p is a whole number of TLS application-data records.
func isCompleteRecords(p []byte) bool {
	if len(p) == 0 {
		return false
	}
	for len(p) > 0 {
		if len(p) < 5 || !bytes.HasPrefix(p, tlsAppData) {
			return false
		}
		n := int(p[3])<<8 | int(p[4])
		if n == 0 || len(p)-5 < n {
			return false
		}
		p = p[5+n:]
	}
	return true
}

// Burrow's client pads the block that ends padding beyond Xray's lengths (Xray's readers
// accept any padding length): content+padding is drawn from [endPadMin, endPadMin+endPadRand),
// or from [endPadEarlyMin, …) when that block goes out in one of the client's first two writes.
//
// Why: the flight holding the client's last padded blocks (its inner Finished, 900–1399
// bytes, and its first request) is followed by raw inner records. Padded to hello sizes, that
// flight, the server's answer and the client's next small record have the shape of a TLS
// handshake inside TLS (hello, server flight, Finished), which censors look for in every
// flight of a connection. A record above any ClientHello's size (≤ 3 KB, post-quantum key
// shares included) breaks it. The outer TLS conn (crypto/tls, utls, REALITY) sizes its
// first records dynamically: 1186, 2372, 3558, 4744 … bytes of plaintext. A block from the
// third write on starts in the third record or later, so endPadMin lands in one record above
// 3 KB; a block that may start in the second record needs endPadEarlyMin to reach the third.
const (
	endPadMin      = 3200
	endPadEarlyMin = 2372 + endPadMin
	endPadRand     = 1500
)

// padLen is Xray's padding for a block of n content bytes.
func padLen(n int, long bool) int {
	if n < longPadBelow && long {
		return rand.IntN(longPadRand) + longPadBase - n
	}
	return rand.IntN(shortPadRand)
}

// appendBlock appends one padded block: [uuid] cmd contentLen(2) paddingLen(2) content padding.
// pad is clamped to what a block can carry.
func appendBlock(dst []byte, uuid []byte, content []byte, cmd byte, pad int) []byte {
	n := len(content)
	pad = max(0, min(pad, maxBlockTotal-n))
	dst = append(dst, uuid...)
	dst = append(dst, cmd, byte(n>>8), byte(n), byte(pad>>8), byte(pad))
	dst = append(dst, content...)
	return append(dst, zeroPad[:pad]...)
}

var zeroPad [maxBlockTotal]byte

// padder is the writing half of Vision; its fields are guarded by the conn's write lock.
type padder struct {
	uuid    []byte // sent once, before the first block; nil afterwards
	padding bool   // still writing padded blocks
	endLong bool   // a client's: the block ending padding gets endPad (see endPadMin)
	writes  int    // encode calls so far
	chunks  [][]byte
	pieces  [][]byte
}

// endPad is the padding of the block with n content bytes that ends an inner TLS
// connection's padding.
func (w *padder) endPad(n int) int {
	if !w.endLong {
		return padLen(n, true)
	}
	lo := endPadMin
	if w.writes < 2 {
		lo = endPadEarlyMin
	}
	return max(lo+rand.IntN(endPadRand)-n, rand.IntN(shortPadRand))
}

// encode appends p, padded as Xray's VisionWriter would pad it, to dst. It reports whether the
// writer must switch to the raw conn after dst is written (the block carried cmdDirect).
// A zero-length p writes one empty long-padded block (what hides the request header).
func (w *padder) encode(dst, p []byte, s *trafficState) (out []byte, direct bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	defer func() { w.writes++ }()
	w.chunks = chunkPieces(w.chunks[:0], p)
	if s.toFilter > 0 {
		s.filterLocked(w.chunks...)
	}
	w.pieces = reshapePieces(w.pieces[:0], w.chunks)
	clear(w.chunks)
	if len(p) == 0 {
		dst = appendBlock(dst, w.uuid, nil, cmdContinue, padLen(0, true))
		w.uuid = nil
		return dst, false
	}
	complete := isCompleteRecords(p)
	long := s.isTLS
	last := len(w.pieces) - 1
	for i, b := range w.pieces {
		if s.isTLS && len(b) >= 6 && bytes.HasPrefix(b, tlsAppData) && complete {
			if s.enableDirect {
				direct = true
			}
			cmd, pad := cmdContinue, padLen(len(b), true)
			if i == last {
				cmd, pad = w.endCommand(s), w.endPad(len(b))
			}
			dst = appendBlock(dst, w.uuid, b, cmd, pad)
			w.uuid = nil
			w.padding = false
			long = false
			continue
		}
		if !s.isTLS12orAbove && s.toFilter <= 1 {
			// Not TLS, or no ServerHello within the first packets: end padding now and send
			// the rest of this write unpadded (Xray ends one packet early for old receivers).
			w.padding = false
			dst = appendBlock(dst, w.uuid, b, cmdEnd, padLen(len(b), long))
			w.uuid = nil
			for _, rest := range w.pieces[i+1:] {
				dst = append(dst, rest...)
			}
			break
		}
		cmd := cmdContinue
		if i == last && !w.padding {
			cmd = w.endCommand(s)
		}
		dst = appendBlock(dst, w.uuid, b, cmd, padLen(len(b), long))
		w.uuid = nil
	}
	clear(w.pieces)
	return dst, direct
}

func (w *padder) endCommand(s *trafficState) byte {
	if s.enableDirect {
		return cmdDirect
	}
	return cmdEnd
}

// unpadder states.
const (
	upUUID    = iota // expecting the 16-byte UUID before the first block
	upHeader         // reading a 5-byte block header
	upContent        // inside a block's content
	upPadding        // inside a block's padding
	upPlain          // padding ended (cmdEnd, unknown command, or the peer never padded)
	upDirect         // padding ended with cmdDirect
)

// unpadder is the reading half of Vision: a byte-driven state machine, so any segmentation
// of the padded stream decodes the same. It releases a block's content only when the block is
// complete, so the TLS filter sees whole records however the stream was cut.
type unpadder struct {
	uuid       [16]byte
	state      int
	seen       []byte // UUID bytes matched so far (upUUID)
	hdr        [5]byte
	hdrN       int
	cmd        byte
	contentRem int
	paddingRem int
	block      []byte // content of the current block
}

// feed consumes in. Completed block contents are passed to emit. When padding ends, feed
// returns the bytes of in after the last block (plain data, or the start of direct data,
// which the caller must deliver before anything else) and sets the final state.
func (u *unpadder) feed(in []byte, emit func([]byte)) (rest []byte) {
	for len(in) > 0 {
		switch u.state {
		case upUUID:
			n := min(16-len(u.seen), len(in))
			if !bytes.Equal(in[:n], u.uuid[len(u.seen):len(u.seen)+n]) {
				// The peer is not padding: everything so far is data.
				u.state = upPlain
				rest = append(u.seen, in...)
				u.seen = nil
				return rest
			}
			u.seen = append(u.seen, in[:n]...)
			in = in[n:]
			if len(u.seen) == 16 {
				u.seen = nil
				u.state = upHeader
			}
		case upHeader:
			n := copy(u.hdr[u.hdrN:], in)
			u.hdrN += n
			in = in[n:]
			if u.hdrN == 5 {
				u.hdrN = 0
				u.cmd = u.hdr[0]
				u.contentRem = int(u.hdr[1])<<8 | int(u.hdr[2])
				u.paddingRem = int(u.hdr[3])<<8 | int(u.hdr[4])
				u.state = upContent
			}
		case upContent:
			n := min(u.contentRem, len(in))
			u.block = append(u.block, in[:n]...)
			u.contentRem -= n
			in = in[n:]
			if u.contentRem == 0 {
				u.state = upPadding
			}
		case upPadding:
			n := min(u.paddingRem, len(in))
			u.paddingRem -= n
			in = in[n:]
		}
		if (u.state == upContent || u.state == upPadding) && u.contentRem == 0 && u.paddingRem == 0 {
			if len(u.block) > 0 {
				emit(u.block)
				u.block = u.block[:0]
			}
			switch u.cmd {
			case cmdContinue:
				u.state = upHeader
			case cmdDirect:
				u.state = upDirect
				return in
			default: // cmdEnd; Xray also stops unpadding on unknown commands
				u.state = upPlain
				return in
			}
		}
	}
	return nil
}
