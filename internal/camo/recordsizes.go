package camo

import (
	"context"
	"crypto/x509"
	"encoding/binary"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"time"

	utls "github.com/refraction-networking/utls"
)

// After its handshake, reality.Server sends an authenticated client fake
// records of the sizes the cover sends right after its own handshake
// (session tickets; for h2, the SETTINGS frame), so that both look alike.
// It reads those sizes from reality.GlobalPostHandshakeRecordsLens under
// "cover SNI class" (recordLensKey; internals.go holds every access to
// that map), class "0" (no ALPN), "1" (http/1.1 first) or "2" (h2
// first). This file measures them. (reality's own detector,
// reality.DetectPostHandshakeRecordsLens, has a data race and dials with
// net.Dial regardless of our dial function.)

// recordSizeDetectTimeout bounds one detection: dial, handshake and the
// read window. It is shorter than recordSizeWait, so that authenticated
// handshakes waiting for the sizes see the detection's result.
const recordSizeDetectTimeout = 8 * time.Second

// postHandshakeWindow is how long at most a detection collects the
// records the cover sends after the handshake (reality's detector always
// waits this long). It ends earlier when the cover ends the connection or
// has sent nothing for a quiet spell: a cover sends its tickets within a
// round trip of the client's Finished, and an h2 cover its SETTINGS at
// once. The quiet spell is postHandshakeQuiet, or quietPerHandshake times
// the handshake's own duration when that is longer, so that a slow path or
// a busy machine (each slowing the handshake as much as the tickets) does
// not cut the window short.
const (
	postHandshakeWindow = 5 * time.Second
	postHandshakeQuiet  = time.Second
	quietPerHandshake   = 4
)

// maxRecordLen bounds a TLS record's body (TLS 1.3 ciphertext: 2^14 + 256).
const maxRecordLen = 1<<14 + 256

// alpnClasses are reality's ALPN classes and the ALPN a client of each
// class offers.
var alpnClasses = []struct {
	class string
	alpn  []string
}{
	{"0", nil},
	{"1", []string{"http/1.1"}},
	{"2", []string{"h2", "http/1.1"}},
}

type dialFunc func(ctx context.Context, network, addr string) (net.Conn, error)

// detectRecordSizes starts the detection of the cover's post-handshake
// record sizes for s's server names; see startRecordSizeDetection. The
// cover's certificate is checked against the system's roots, as reality
// does: a cover without a valid certificate is not measured.
func (s *Server) detectRecordSizes() <-chan struct{} {
	names := make([]string, 0, len(s.serverNames))
	for n := range s.serverNames {
		names = append(names, n)
	}
	return startRecordSizeDetection(s.dial, s.cover, names, nil, s.log)
}

// startRecordSizeDetection measures, for each server name and ALPN class
// whose sizes are neither known nor being measured in this process, the
// sizes of the records cover sends after its handshake, and stores them in
// reality.GlobalPostHandshakeRecordsLens; "no records" ([]int{}) if the
// measurement fails. The cover's certificate must verify under roots (nil:
// the system's). Each measurement runs in its own goroutine and ends
// within recordSizeDetectTimeout; the returned channel is closed when all
// have ended.
func startRecordSizeDetection(dial dialFunc, cover string, names []string, roots *x509.CertPool, log *slog.Logger) <-chan struct{} {
	var wg sync.WaitGroup
	for _, sni := range names {
		for _, c := range alpnClasses {
			key := recordLensKey(cover, sni, c.class)
			if !claimRecordLens(key) {
				continue
			}
			wg.Go(func() {
				ctx, cancel := context.WithTimeout(context.Background(), recordSizeDetectTimeout)
				defer cancel()
				lens, err := detectRecordSize(ctx, dial, cover, sni, c.alpn, roots)
				if err != nil {
					// Debug: a stand-in cover with its own certificate (burrow cover,
					// the demo, the lab) always ends here; a real cover that cannot
					// be reached is reported by the start-up cover check.
					log.Debug("camo: cannot measure the cover's post-handshake records; authenticated clients get none", "cover", cover, "sni", sni, "alpn", c.class, "err", err)
					giveUpRecordLens(key)
					return
				}
				log.Debug("camo: cover's post-handshake records", "cover", cover, "sni", sni, "alpn", c.class, "sizes", lens)
				storeRecordLens(key, lens)
			})
		}
	}
	done := make(chan struct{})
	go func() {
		wg.Wait()
		close(done)
	}()
	return done
}

// detectRecordSize handshakes with cover as a client offering alpn would
// (Chrome's hello when it offers h2, Go's otherwise, as reality does) and
// returns the lengths, header included, of the records the cover sends
// after its handshake (see postHandshakeWindow). A record that ends the
// connection (such as the cover's close_notify when it gives up waiting
// for a request) is not one of them.
func detectRecordSize(ctx context.Context, dial dialFunc, cover, sni string, alpn []string, roots *x509.CertPool) ([]int, error) {
	raw, err := dial(ctx, "tcp", cover)
	if err != nil {
		return nil, fmt.Errorf("dial: %w", err)
	}
	defer raw.Close()
	stop := context.AfterFunc(ctx, func() { raw.SetDeadline(time.Now()) })
	defer stop()
	if d, ok := ctx.Deadline(); ok {
		raw.SetDeadline(d)
	}
	rc := &recordConn{Conn: raw}
	hello := utls.HelloGolang
	if len(alpn) > 0 && alpn[0] == "h2" {
		hello = utls.HelloChrome_Auto
	}
	uc := utls.UClient(rc, &utls.Config{ServerName: sni, NextProtos: alpn, RootCAs: roots}, hello)
	start := time.Now()
	if err := uc.HandshakeContext(ctx); err != nil {
		return nil, fmt.Errorf("handshake: %w", err)
	}
	rc.quiet = max(postHandshakeQuiet, quietPerHandshake*time.Since(start))
	rc.windowEnd = time.Now().Add(postHandshakeWindow)
	if d, ok := ctx.Deadline(); ok && d.Before(rc.windowEnd) {
		rc.windowEnd = d
	}
	buf := make([]byte, 4096)
	for err == nil {
		// Session tickets are handled inside Read; application data
		// (an h2 SETTINGS frame) is returned and dropped.
		_, err = uc.Read(buf)
	}
	lens := rc.lens
	if rc.err == nil && len(lens) > 0 {
		// The record uc failed on, an alert, ended the connection.
		lens = lens[:len(lens)-1]
	}
	if lens == nil {
		lens = []int{}
	}
	// Whatever ended the window (its end, the cover's FIN or alert), the
	// records before it are what a client sees after the handshake.
	return lens, nil
}

// recordConn hands its reader one TLS record at a time, never bytes of the
// next record, so that when the TLS handshake is done, every record after
// it still passes through here. Once windowEnd is set, it records each
// record's length, and a read of the next record ends at windowEnd or
// after quiet.
type recordConn struct {
	net.Conn
	windowEnd time.Time     // set by the reader between its reads
	quiet     time.Duration // set with windowEnd
	pending   []byte        // rest of the record being handed out
	lens      []int         // lengths, header included, of the records after the handshake
	err       error         // the error that ended reading records from Conn
}

func (c *recordConn) Read(p []byte) (int, error) {
	if len(c.pending) == 0 {
		if c.err != nil {
			return 0, c.err
		}
		after := !c.windowEnd.IsZero()
		if after {
			d := time.Now().Add(c.quiet)
			if c.windowEnd.Before(d) {
				d = c.windowEnd
			}
			c.Conn.SetReadDeadline(d)
		}
		rec, err := readRecord(c.Conn)
		if err != nil {
			c.err = err
			return 0, err
		}
		if after {
			c.lens = append(c.lens, len(rec))
		}
		c.pending = rec
	}
	n := copy(p, c.pending)
	c.pending = c.pending[n:]
	return n, nil
}

// readRecord reads one TLS record, header included.
func readRecord(r io.Reader) ([]byte, error) {
	var hdr [5]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return nil, err
	}
	n := int(binary.BigEndian.Uint16(hdr[3:5]))
	if hdr[0] < 20 || hdr[0] > 24 || hdr[1] != 3 || n > maxRecordLen {
		return nil, fmt.Errorf("not a TLS record: % x", hdr)
	}
	rec := make([]byte, 5+n)
	copy(rec, hdr[:])
	if _, err := io.ReadFull(r, rec[5:]); err != nil {
		return nil, fmt.Errorf("TLS record: %w", err)
	}
	return rec, nil
}
