// Package telemetry is Burrow's block telemetry: clients report, through
// the tunnel, anonymous outcomes of their connections to a server (which
// transport they used, how many connections opened or failed, after how
// many bytes connections froze, which byte budget and connection cap they
// learned, handshake resets, switches to the other transport); the server
// adds them up per UTC day and keeps nothing else, so its operator sees
// where and how the node is being blocked (`burrow server stats`, the
// metrics) and the subscription can put first the link that works best.
//
// What a report never holds: destinations, addresses, the user's identity,
// times (the server files a report under the day it arrived), exact byte
// counts (bytes are bucketed to powers of two KiB).
//
// # Wire
//
// A report rides an ordinary authenticated VLESS request (TCP command, no
// flow) to the reserved destination Dest, telemetry.burrow.invalid port 0:
// no real destination has port 0, and no name under .invalid resolves (RFC
// 2606, 6761), so a server that is not Burrow's (Xray) fails to dial it and
// closes, which costs nothing. A Burrow server handles it in-process and
// never dials it. After the request header the client sends
//
//	length   uint16 big endian, at most MaxReport: the bytes that follow
//	version  uint8 = 1
//	count    uint8, at most MaxEntries
//	count × entry:
//	  transport uint8   1 tcp, 2 xhttp
//	  metric    uint8   see Metric
//	  bucket    uint8   Freeze, Budget: log2 of the KiB (0: under 2 KiB, 15: 32 MiB and more);
//	                    Cap: the connection cap, 1..64; other metrics: 0
//	  count     uint16  big endian, at least 1
//
// No (transport, metric, bucket) appears twice. The server answers an
// accepted report with a bare VLESS response header and closes; anything
// else (a bad length, version, enum or bucket, a repeated entry, a short
// read) is closed without an answer and counted as rejected.
package telemetry

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/bits"

	"github.com/burrow-vpn/burrow/internal/vless"
)

// Dest is the reserved destination of a report.
var Dest = vless.Addr{Host: "telemetry.burrow.invalid"}

// IsReport reports whether req carries a report.
func IsReport(req *vless.Request) bool {
	return req.Command == vless.CommandTCP && req.Dest.Host == Dest.Host && req.Dest.Port == Dest.Port && !req.Dest.IP.IsValid()
}

const (
	// Version is the report format this package writes and reads.
	Version = 1
	// MaxEntries is the most entries a report holds.
	MaxEntries = 64
	// MaxReport is the most bytes a report's body may have.
	MaxReport = 2 + 5*MaxEntries
	// MaxCap is the largest connection cap a report carries.
	MaxCap = 64
	// maxSizeBucket is the largest size bucket: 32 MiB and more.
	maxSizeBucket = 15
)

// Transport is the transport an entry is about.
type Transport uint8

const (
	TCP   Transport = 1
	XHTTP Transport = 2
)

func (t Transport) String() string {
	switch t {
	case TCP:
		return "tcp"
	case XHTTP:
		return "xhttp"
	}
	return fmt.Sprintf("transport(%d)", uint8(t))
}

// Metric is what an entry counts.
type Metric uint8

const (
	ConnOK     Metric = 1 // connections whose REALITY handshake succeeded
	ConnFailed Metric = 2 // connections that failed to open or to handshake
	Freeze     Metric = 3 // connections that froze, by the bytes received before (bucket)
	Budget     Metric = 4 // byte budgets learned from freezes, by size (bucket)
	Cap        Metric = 5 // connection caps learned, by the cap (bucket)
	Reset      Metric = 6 // handshakes reset right after the ClientHello
	Fallback   Metric = 7 // switches of a tcp link to the xhttp transport
	maxMetric         = Fallback
)

// Reports is the metric the server adds for each accepted report, per
// transport the report names; it is never on the wire.
const Reports = "reports"

func (m Metric) String() string {
	switch m {
	case ConnOK:
		return "conns_ok"
	case ConnFailed:
		return "conns_failed"
	case Freeze:
		return "freeze"
	case Budget:
		return "budget"
	case Cap:
		return "cap"
	case Reset:
		return "reset"
	case Fallback:
		return "fallback"
	}
	return fmt.Sprintf("metric(%d)", uint8(m))
}

// Entry is one count of a report.
type Entry struct {
	Transport Transport
	Metric    Metric
	Bucket    uint8
	Count     uint16
}

// Report is what one client says about one tunnel since its last report.
type Report struct {
	Entries []Entry
}

// SizeBucket is the bucket of n bytes: log2 of the whole KiB, so 16 KiB up
// to 32 KiB less a byte share one bucket (0: under 2 KiB; at most 15).
func SizeBucket(n int64) uint8 {
	kib := n >> 10
	if kib < 1 {
		return 0
	}
	return uint8(min(bits.Len64(uint64(kib))-1, maxSizeBucket))
}

// BucketKiB is the least KiB of size bucket b (b <= 15).
func BucketKiB(b uint8) int { return 1 << b }

// validBucket reports whether b is a bucket metric m can have.
func validBucket(m Metric, b uint8) bool {
	switch m {
	case Freeze, Budget:
		return b <= maxSizeBucket
	case Cap:
		return b >= 1 && b <= MaxCap
	}
	return b == 0
}

// ErrBadReport is wrapped by every error of Parse and Read.
var ErrBadReport = errors.New("telemetry: bad report")

func bad(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrBadReport}, args...)...)
}

// Append appends r's body (without the length) to b. It checks r as Parse
// would, so what it writes Parse reads back.
func (r *Report) Append(b []byte) ([]byte, error) {
	if len(r.Entries) > MaxEntries {
		return nil, bad("%d entries, at most %d", len(r.Entries), MaxEntries)
	}
	start := len(b)
	b = append(b, Version, byte(len(r.Entries)))
	for _, e := range r.Entries {
		b = append(b, byte(e.Transport), byte(e.Metric), e.Bucket)
		b = binary.BigEndian.AppendUint16(b, e.Count)
	}
	if _, err := Parse(b[start:]); err != nil {
		return nil, err
	}
	return b, nil
}

// Parse reads a report's body (without the length), strictly.
func Parse(b []byte) (*Report, error) {
	if len(b) < 2 {
		return nil, bad("%d bytes", len(b))
	}
	if b[0] != Version {
		return nil, bad("version %d, want %d", b[0], Version)
	}
	n := int(b[1])
	if n > MaxEntries {
		return nil, bad("%d entries, at most %d", n, MaxEntries)
	}
	if len(b) != 2+5*n {
		return nil, bad("%d bytes for %d entries, want %d", len(b), n, 2+5*n)
	}
	r := &Report{Entries: make([]Entry, 0, n)}
	seen := make(map[[3]uint8]bool, n)
	for i := range n {
		p := b[2+5*i:]
		e := Entry{Transport: Transport(p[0]), Metric: Metric(p[1]), Bucket: p[2], Count: binary.BigEndian.Uint16(p[3:])}
		switch {
		case e.Transport != TCP && e.Transport != XHTTP:
			return nil, bad("entry %d: transport %d", i, p[0])
		case e.Metric < ConnOK || e.Metric > maxMetric:
			return nil, bad("entry %d: metric %d", i, p[1])
		case !validBucket(e.Metric, e.Bucket):
			return nil, bad("entry %d: bucket %d for %s", i, e.Bucket, e.Metric)
		case e.Count == 0:
			return nil, bad("entry %d: count 0", i)
		}
		k := [3]uint8{p[0], p[1], p[2]}
		if seen[k] {
			return nil, bad("entry %d: %s %s bucket %d repeated", i, e.Transport, e.Metric, e.Bucket)
		}
		seen[k] = true
		r.Entries = append(r.Entries, e)
	}
	return r, nil
}

// Write writes r with its length to w.
func Write(w io.Writer, r *Report) error {
	b, err := r.Append(make([]byte, 2, 2+MaxReport))
	if err != nil {
		return err
	}
	binary.BigEndian.PutUint16(b, uint16(len(b)-2))
	_, err = w.Write(b)
	return err
}

// Read reads one report (its length, then at most MaxReport bytes) from r.
func Read(r io.Reader) (*Report, error) {
	var lb [2]byte
	if _, err := io.ReadFull(r, lb[:]); err != nil {
		return nil, bad("length: %v", err)
	}
	n := int(binary.BigEndian.Uint16(lb[:]))
	if n > MaxReport {
		return nil, bad("length %d, at most %d", n, MaxReport)
	}
	b := make([]byte, n)
	if _, err := io.ReadFull(r, b); err != nil {
		return nil, bad("body: %v", err)
	}
	return Parse(b)
}
