package tlshello

import (
	"errors"
	"fmt"
	"io"
)

// MaxHelloSize caps the ClientHello handshake message (header included) that
// ReadRecords assembles. Real browser hellos, post-quantum key shares
// included, stay well below it.
const MaxHelloSize = 16384

// maxRecordLen is the largest TLSPlaintext fragment (RFC 8446 §5.1).
const maxRecordLen = 16384

const (
	recordHeaderLen     = 5
	recordTypeHandshake = 0x16
)

// ErrNotTLS is returned (wrapped) by ReadRecords as soon as the bytes read so
// far cannot start a TLS record stream carrying a ClientHello: a first byte
// other than 0x16, a record version other than 0x0301 or 0x0303, a record
// length of 0 or above 16384, a handshake type other than 1, or a hello
// larger than MaxHelloSize.
var ErrNotTLS = errors.New("tlshello: not a TLS ClientHello")

func notTLS(what string) error {
	return fmt.Errorf("%w: %s", ErrNotTLS, what)
}

// ReadRecords reads TLS handshake records from r until they hold one complete
// ClientHello handshake message, and parses it. The message may be split
// across several records.
//
// raw holds every byte read from r, also when err != nil, so a caller can
// forward exactly what it consumed. ReadRecords never reads past the last
// record of the hello. Bytes are checked as they arrive: a stream that
// cannot be a ClientHello is rejected with ErrNotTLS after the first Read
// that shows it, without waiting for more input.
func ReadRecords(r io.Reader) (hello *ClientHello, raw []byte, err error) {
	rr := &recordReader{r: r}
	var msg []byte
	msgLen := -1 // total handshake message length, once known
	for msgLen < 0 || len(msg) < msgLen {
		hdr, err := rr.read(recordHeaderLen, checkRecordHeader)
		if err != nil {
			return nil, rr.raw, err
		}
		n := int(hdr[3])<<8 | int(hdr[4])
		first := len(msg) == 0
		frag, err := rr.read(n, func(p []byte) error {
			if first && len(p) > 0 && p[0] != typeClientHello {
				return notTLS(fmt.Sprintf("handshake type %d", p[0]))
			}
			if hdr := append(msg[:len(msg):len(msg)], p[:min(len(p), 4)]...); msgLen < 0 && len(hdr) >= 4 {
				if l := 4 + (int(hdr[1])<<16 | int(hdr[2])<<8 | int(hdr[3])); l > MaxHelloSize {
					return notTLS(fmt.Sprintf("ClientHello of %d bytes", l))
				}
			}
			return nil
		})
		if err != nil {
			return nil, rr.raw, err
		}
		msg = append(msg, frag...)
		if msgLen < 0 && len(msg) >= 4 {
			msgLen = 4 + (int(msg[1])<<16 | int(msg[2])<<8 | int(msg[3])) // <= MaxHelloSize, checked above
		}
	}
	hello, err = Parse(msg[:msgLen:msgLen])
	if err != nil {
		return nil, rr.raw, err
	}
	return hello, rr.raw, nil
}

// checkRecordHeader validates a (possibly partial) record header.
func checkRecordHeader(p []byte) error {
	if len(p) > 0 && p[0] != recordTypeHandshake {
		return notTLS(fmt.Sprintf("record type %d", p[0]))
	}
	if len(p) > 1 && p[1] != 3 {
		return notTLS("record version")
	}
	if len(p) > 2 && p[2] != 1 && p[2] != 3 {
		return notTLS("record version")
	}
	if len(p) >= recordHeaderLen {
		n := int(p[3])<<8 | int(p[4])
		if n == 0 || n > maxRecordLen {
			return notTLS(fmt.Sprintf("record length %d", n))
		}
	}
	return nil
}

// recordReader reads exact byte counts from r into raw, checking each
// partial result as it arrives.
type recordReader struct {
	r   io.Reader
	raw []byte
}

// read appends exactly n bytes from r to raw and returns them. check sees
// the bytes of this call read so far after every Read, and its error stops
// the read at once.
func (rr *recordReader) read(n int, check func(p []byte) error) ([]byte, error) {
	start := len(rr.raw)
	rr.raw = append(rr.raw, make([]byte, n)...)[:start]
	for empty := 0; len(rr.raw) < start+n; {
		k, err := rr.r.Read(rr.raw[len(rr.raw) : start+n])
		rr.raw = rr.raw[:len(rr.raw)+k]
		if k == 0 && err == nil {
			if empty++; empty >= 100 {
				err = io.ErrNoProgress // a broken reader; do not spin
			}
		}
		if cerr := check(rr.raw[start:]); cerr != nil {
			return nil, cerr
		}
		if err != nil {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return nil, fmt.Errorf("tlshello: read record: %w", err)
		}
	}
	return rr.raw[start:], nil
}
