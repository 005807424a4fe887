package censorlab

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Outcome is what a prober observes on one connection: the answer, how the
// connection ended and when.
type Outcome struct {
	// Answer is the response, normalized to what is stable across runs: HTTP
	// without Date lines; TLS as record types and lengths; for TLS probes the
	// certificate chain's hash, version and ALPN, then the HTTP answer.
	Answer string
	// Records are the TLS records of a raw answer (type, length), compared
	// with a small tolerance (signature lengths vary by a byte or two).
	Records [][2]int
	// End is how the connection ended: "FIN", "RST" or "timeout" (still open
	// when the probe's patience ran out).
	End string
	// Timing is "quick" (ended within a third of the patience), "late"
	// (after two thirds) or "middle"; empty on timeout. Only quick against
	// late is a difference: an answer near one boundary lands on either
	// side of it by the load of the moment, for the cover as for anyone.
	Timing string
}

func (o Outcome) String() string {
	a := o.Answer
	if len(a) > 60 {
		a = a[:60] + "..."
	}
	if a == "" {
		a = "nothing"
	}
	return fmt.Sprintf("%s then %s %s", strings.TrimSpace(fmt.Sprintf("%q", a)), o.End, o.Timing)
}

// Differs returns "" when o and p look like the same server, or what differs.
func (o Outcome) Differs(p Outcome) string {
	switch {
	case o.End != p.End:
		return fmt.Sprintf("close kind %s vs %s", o.End, p.End)
	case o.Timing != p.Timing && o.Timing != "middle" && p.Timing != "middle":
		return fmt.Sprintf("timing %s vs %s", o.Timing, p.Timing)
	case len(o.Records) != len(p.Records):
		return fmt.Sprintf("%d TLS records vs %d", len(o.Records), len(p.Records))
	}
	for i := range o.Records {
		a, b := o.Records[i], p.Records[i]
		if a[0] != b[0] || a[1]-b[1] > 8 || b[1]-a[1] > 8 {
			return fmt.Sprintf("TLS record %d: type %d length %d vs type %d length %d", i, a[0], a[1], b[0], b[1])
		}
	}
	if o.Records == nil && o.Answer != p.Answer {
		return "response bytes differ"
	}
	return ""
}

// Probe is one active probe: what to send and how.
type Probe struct {
	Name string
	// Raw is sent as is when TLS is empty.
	Raw []byte
	// TLS, when set, is the SNI of a TLS handshake followed by GET /.
	TLS string
}

// Probes returns the prober's battery: a replay of flight (if any), random
// bytes of several lengths (fresh each call, the same for both ends of a
// comparison), TLS with sni and with otherSNI, and plain HTTP.
func Probes(flight []byte, sni, otherSNI string) []Probe {
	var ps []Probe
	if len(flight) > 0 {
		ps = append(ps, Probe{Name: "replay", Raw: flight})
	}
	for _, n := range []int{1, 16, 64, 221, 517, 1400} {
		b := make([]byte, n)
		rand.Read(b)
		ps = append(ps, Probe{Name: fmt.Sprintf("random-%d", n), Raw: b})
	}
	ps = append(ps,
		Probe{Name: "tls-sni", TLS: sni},
		Probe{Name: "tls-other-sni", TLS: otherSNI},
		Probe{Name: "http", Raw: fmt.Appendf(nil, "GET / HTTP/1.1\r\nHost: %s\r\nUser-Agent: Mozilla/5.0\r\nAccept: */*\r\n\r\n", sni)},
	)
	return ps
}

// DialFunc dials a network address.
type DialFunc func(ctx context.Context, network, addr string) (net.Conn, error)

// Run sends p to addr and observes the answer for at most patience.
func (p Probe) Run(ctx context.Context, dial DialFunc, addr string, patience time.Duration) Outcome {
	if dial == nil {
		var d net.Dialer
		dial = d.DialContext
	}
	dctx, cancel := context.WithTimeout(ctx, patience)
	defer cancel()
	c, err := dial(dctx, "tcp", addr)
	if err != nil {
		return Outcome{Answer: "connect: " + errKind(err), End: endKind(err)}
	}
	defer c.Close()
	stop := context.AfterFunc(ctx, func() { c.Close() })
	defer stop()
	start := time.Now()
	c.SetDeadline(start.Add(patience))
	var o Outcome
	var rest []byte
	// The timing counts from the moment the probe's request was sent: the
	// TLS handshake before it costs this machine CPU, which a loaded
	// machine pays late at random, for the cover as for the server.
	if p.TLS != "" {
		o.Answer, rest, err = tlsGET(c, p.TLS, &start)
	} else if _, err = c.Write(p.Raw); err == nil {
		start = time.Now()
		rest, err = io.ReadAll(c)
		o.Records = tlsRecords(rest)
	}
	if o.Records != nil {
		o.Answer += fmt.Sprintf("%d TLS records", len(o.Records))
	} else {
		o.Answer += dateLine.ReplaceAllString(string(rest), "")
	}
	o.End = endKind(err)
	if o.End != "timeout" {
		switch took := time.Since(start); {
		case took < patience/3:
			o.Timing = "quick"
		case took < 2*patience/3:
			o.Timing = "middle"
		default:
			o.Timing = "late"
		}
	}
	return o
}

// tlsGET does a TLS handshake with sni and a GET /, and returns what it
// learned, the HTTP answer, and how reading ended. It sets sent to when the
// GET was written.
func tlsGET(c net.Conn, sni string, sent *time.Time) (info string, answer []byte, err error) {
	tc := tls.Client(c, &tls.Config{
		ServerName:         sni,
		InsecureSkipVerify: true, // the chain is compared, not verified
		NextProtos:         []string{"http/1.1"},
	})
	if err := tc.Handshake(); err != nil {
		return "handshake: " + errKind(err) + "\n", nil, err
	}
	st := tc.ConnectionState()
	h := sha256.New()
	for _, cert := range st.PeerCertificates {
		h.Write(cert.Raw)
	}
	info = fmt.Sprintf("chain %x version %#x alpn %q\n", h.Sum(nil)[:8], st.Version, st.NegotiatedProtocol)
	if _, err := fmt.Fprintf(tc, "GET / HTTP/1.1\r\nHost: %s\r\nUser-Agent: Mozilla/5.0\r\nConnection: close\r\n\r\n", sni); err != nil {
		return info, nil, err
	}
	*sent = time.Now()
	answer, err = io.ReadAll(tc)
	return info, answer, err
}

var dateLine = regexp.MustCompile(`(?m)^Date: .*\r\n`)

// tlsRecords returns the record types and lengths of b if b starts like TLS
// records (handshake or alert), else nil.
func tlsRecords(b []byte) [][2]int {
	if len(b) < 5 || b[1] != 3 || (b[0] != 0x15 && b[0] != 0x16) {
		return nil
	}
	recs := [][2]int{}
	for len(b) >= 5 {
		n := int(b[3])<<8 | int(b[4])
		recs = append(recs, [2]int{int(b[0]), n})
		b = b[min(len(b), 5+n):]
	}
	if len(b) > 0 {
		recs = append(recs, [2]int{-1, len(b)})
	}
	return recs
}

// endKind classifies how reading ended.
func endKind(err error) string {
	var ne net.Error
	switch {
	case err == nil, errors.Is(err, io.EOF):
		return "FIN"
	case errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE), errors.Is(err, syscall.ECONNREFUSED):
		return "RST"
	case errors.Is(err, os.ErrDeadlineExceeded), errors.Is(err, context.DeadlineExceeded), errors.As(err, &ne) && ne.Timeout():
		return "timeout"
	}
	return "FIN" // a TLS alert or a close we saw as an error: the peer ended cleanly
}

// errKind describes an error without addresses, so outcomes compare.
func errKind(err error) string {
	var alert tls.AlertError
	var rh tls.RecordHeaderError
	switch {
	case errors.As(err, &alert):
		return "alert " + alert.Error()
	case errors.As(err, &rh):
		return "answer is not TLS"
	}
	return endKind(err)
}

// ProbeResult compares one probe against the server and the cover.
type ProbeResult struct {
	Probe string
	// Server and Cover are the outcomes of the first try that differed, or
	// of the last try when none did.
	Server, Cover Outcome
	Differs       string // "" when every try matched; else what differed first
	// Tries is how many times the probe ran against both; Differed is in how
	// many of them the answers differed. One difference is a difference: a
	// tell that shows one time in three is still a tell.
	Tries, Differed int
}

// Compare runs every probe tries times (at least once) against server and
// cover, each pair concurrently so load affects both alike, and reports for
// each probe how often the answers differed. Nothing is retried away: a
// probe that differs in any try differs. Patience is for a quiet machine:
// Compare stretches it by Budget, so that a busy machine does not turn a
// slow answer into a timeout on one side only.
func Compare(ctx context.Context, dial DialFunc, server, cover string, probes []Probe, patience time.Duration, tries int) []ProbeResult {
	patience = Budget(patience)
	tries = max(tries, 1)
	out := make([]ProbeResult, len(probes))
	var wg sync.WaitGroup
	for i, p := range probes {
		wg.Go(func() {
			r := ProbeResult{Probe: p.Name}
			for range tries {
				if ctx.Err() != nil {
					break
				}
				var s, c Outcome
				var pair sync.WaitGroup
				pair.Go(func() { s = p.Run(ctx, dial, server, patience) })
				pair.Go(func() { c = p.Run(ctx, dial, cover, patience) })
				pair.Wait()
				r.Tries++
				d := s.Differs(c)
				if d != "" {
					r.Differed++
				}
				if r.Differs == "" {
					r.Server, r.Cover, r.Differs = s, c, d
				}
			}
			out[i] = r
		})
	}
	wg.Wait()
	return out
}
