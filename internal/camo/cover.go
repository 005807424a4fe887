package camo

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	utls "github.com/refraction-networking/utls"
)

// splice relays client and cover byte for byte until both directions are
// done, ending each side the way the other ended: a FIN becomes CloseWrite,
// a reset becomes a reset (SO_LINGER 0, then close). coverData is what the
// cover already sent; coverErr is how it already ended, if it did.
// Cancelling ctx closes both, and so does a whole idle period without a
// byte relayed in either direction (see watchIdle): a splice never outlives
// its peers' interest, whatever they do.
func (s *Server) splice(ctx context.Context, client net.Conn, cover net.Conn, coverData []byte, coverErr error) {
	stop := context.AfterFunc(ctx, func() {
		client.Close()
		cover.Close()
	})
	defer stop()
	act := &activity{}
	act.touch()
	relaysDone := make(chan struct{})
	var watch sync.WaitGroup
	watch.Go(func() { s.watchIdle(relaysDone, act, client, cover) })
	var wg sync.WaitGroup
	wg.Go(func() { // cover to client
		err := coverErr
		if len(coverData) > 0 {
			if _, werr := client.Write(coverData); werr != nil {
				err = werr
			} else {
				act.touch()
			}
		}
		if err == nil {
			err = s.relay(client, cover, act)
		} else if errors.Is(err, io.EOF) {
			err = nil
		}
		endLike(client, cover, err)
	})
	wg.Go(func() { // client to cover
		endLike(cover, client, s.relay(cover, client, act))
	})
	wg.Wait()
	close(relaysDone)
	watch.Wait()
	client.Close()
	cover.Close()
}

// watchIdle closes a and b once no byte was relayed in either direction for
// the idle period, and returns when done is closed. The relays cannot see
// this themselves when one is blocked in a write: after the other direction
// ended with a FIN, a peer that stops reading would otherwise hold the last
// relay (two sockets and a goroutine) forever. Closing unblocks the write.
func (s *Server) watchIdle(done <-chan struct{}, act *activity, a, b net.Conn) {
	tick := time.NewTicker(s.idle / 4)
	defer tick.Stop()
	for {
		select {
		case <-done:
			return
		case <-tick.C:
			if act.idle() >= s.idle {
				a.Close()
				b.Close()
				return
			}
		}
	}
}

// relay copies src to dst until src ends (nil for a FIN) or an error.
// io.Copy between two *net.TCPConn splices in the kernel on Linux. Read
// deadlines in steps of a quarter idle period make the copy return now and
// then, so that bytes moved are recorded in act for watchIdle. A read
// deadline never loses data; write deadlines could (bytes already spliced
// out of src would be dropped), so there are none: watchIdle closing both
// conns is what ends a write to a peer that stopped reading.
func (s *Server) relay(dst, src net.Conn, act *activity) error {
	step := s.idle / 4
	for {
		src.SetReadDeadline(time.Now().Add(step))
		n, err := io.Copy(dst, src)
		if n > 0 {
			act.touch()
		}
		if err == nil || !errors.Is(err, os.ErrDeadlineExceeded) {
			return err
		}
	}
}

// endLike ends dst the way the relay from src into it ended: nil (FIN)
// half-closes dst; a reset on either side resets both; anything else
// (idle, a conn we closed) closes both.
func endLike(dst, src net.Conn, err error) {
	switch {
	case err == nil:
		closeWrite(dst)
	case isReset(err):
		resetConn(dst)
		resetConn(src)
	default:
		dst.Close()
		src.Close()
	}
}

func isReset(err error) bool {
	return errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)
}

// resetConn closes c so that the peer gets a TCP reset, not a FIN.
func resetConn(c net.Conn) {
	if l, ok := c.(interface{ SetLinger(int) error }); ok {
		l.SetLinger(0)
	}
	c.Close()
}

// closeWrite sends a FIN on c, or closes it if it cannot half-close.
func closeWrite(c net.Conn) {
	if cw, ok := c.(interface{ CloseWrite() error }); ok {
		cw.CloseWrite()
		return
	}
	c.Close()
}

// activity is the time of the last byte relayed in either direction.
type activity struct{ last atomic.Int64 }

func (a *activity) touch()              { a.last.Store(time.Now().UnixNano()) }
func (a *activity) idle() time.Duration { return time.Since(time.Unix(0, a.last.Load())) }

// coverCheckTimeout bounds CheckCover when ctx has no deadline.
const coverCheckTimeout = 10 * time.Second

// CheckCover dials cover and completes a TLS 1.3 handshake offering only
// X25519, with sni as server name, as the REALITY server needs of its cover.
// dial nil means a net.Dialer. The certificate's chain is not verified, but
// it must name sni. The error says in plain words what is wrong.
func CheckCover(ctx context.Context, dial func(ctx context.Context, network, addr string) (net.Conn, error), cover, sni string) error {
	ctx, cancel := coverContext(ctx)
	defer cancel()
	conn, err := dialWith(dial)(ctx, "tcp", cover)
	if err != nil {
		return fmt.Errorf("camo: cover %s cannot be reached: %w; check the address or choose another cover site", cover, err)
	}
	defer conn.Close()
	tc := tls.Client(conn, &tls.Config{
		ServerName:         sni,
		MinVersion:         tls.VersionTLS13,
		MaxVersion:         tls.VersionTLS13,
		CurvePreferences:   []tls.CurveID{tls.X25519},
		InsecureSkipVerify: true, // the name is checked below; REALITY clients do not verify the chain either
	})
	if err := tc.HandshakeContext(ctx); err != nil {
		return fmt.Errorf("camo: cover %s does not speak TLS 1.3 with X25519 for %q: %w; choose another cover site", cover, sni, err)
	}
	st := tc.ConnectionState()
	if st.Version != tls.VersionTLS13 || st.CurveID != tls.X25519 {
		return fmt.Errorf("camo: cover %s negotiated TLS version %#04x with group %v, not TLS 1.3 with X25519; choose another cover site", cover, st.Version, st.CurveID)
	}
	if len(st.PeerCertificates) == 0 {
		return fmt.Errorf("camo: cover %s sent no certificate; choose another cover site", cover)
	}
	if err := st.PeerCertificates[0].VerifyHostname(sni); err != nil {
		return fmt.Errorf("camo: cover %s has no certificate for %q (%w); use a name the cover serves, or choose another cover site", cover, sni, err)
	}
	return nil
}

// CoverHandshake returns the bytes cover sends until its handshake with
// sni is complete (its server flight) to the clients' default ClientHello
// (Chrome's: the post-quantum hybrid key share first, brotli certificate
// compression offered). A REALITY server answers a client with its cover's
// reply to that client's hello, so every connection to it pays about this
// much before it carries data.
func CoverHandshake(ctx context.Context, dial func(ctx context.Context, network, addr string) (net.Conn, error), cover, sni string) (int64, error) {
	ctx, cancel := coverContext(ctx)
	defer cancel()
	raw, err := dialWith(dial)(ctx, "tcp", cover)
	if err != nil {
		return 0, fmt.Errorf("camo: cover %s cannot be reached: %w", cover, err)
	}
	conn := &countingConn{Conn: raw}
	defer conn.Close()
	spec, err := helloSpec(FingerprintChrome)
	if err != nil {
		return 0, err
	}
	uc := utls.UClient(conn, &utls.Config{ServerName: sni, InsecureSkipVerify: true}, utls.HelloCustom)
	if err := uc.ApplyPreset(spec); err != nil {
		return 0, fmt.Errorf("camo: cover handshake: %w", err)
	}
	if err := uc.HandshakeContext(ctx); err != nil {
		return 0, fmt.Errorf("camo: cover %s: handshake with a browser's hello: %w", cover, err)
	}
	return conn.n, nil
}

// coverContext bounds a check of the cover by coverCheckTimeout unless ctx
// has a deadline of its own.
func coverContext(ctx context.Context) (context.Context, context.CancelFunc) {
	if _, ok := ctx.Deadline(); ok {
		return ctx, func() {}
	}
	return context.WithTimeout(ctx, coverCheckTimeout)
}

// dialWith returns dial, or a net.Dialer's when it is nil.
func dialWith(dial func(ctx context.Context, network, addr string) (net.Conn, error)) func(ctx context.Context, network, addr string) (net.Conn, error) {
	if dial == nil {
		var d net.Dialer
		return d.DialContext
	}
	return dial
}

// countingConn counts the bytes read.
type countingConn struct {
	net.Conn
	n int64
}

func (c *countingConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.n += int64(n)
	return n, err
}
