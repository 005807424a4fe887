package camo

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/ecdh"
	"crypto/hkdf"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"slices"
	"time"

	"github.com/burrow-vpn/burrow/internal/tlshello"
	"github.com/xtls/reality"
)

// TLS code points the server checks in a ClientHello.
const (
	versionTLS13       = 0x0304
	groupX25519        = 0x001d
	groupX25519MLKEM   = 0x11ec
	mlkem768EncapsSize = 1184
)

// handshakeTimeout bounds the TLS handshake of an authenticated client
// when ctx has no earlier deadline.
const handshakeTimeout = 30 * time.Second

// recordSizeWait bounds how long an authenticated handshake waits for the
// reality module's detection of the cover's post-handshake record sizes.
const recordSizeWait = 10 * time.Second

// authenticate checks h as described in the package doc. It returns the
// short ID used, or a non-empty reason why h is not one of ours.
func (s *Server) authenticate(h *tlshello.ClientHello, now time.Time) (shortID [8]byte, reason string) {
	if !s.serverNames[h.ServerName] {
		return shortID, "server name not accepted"
	}
	if !slices.Contains(h.SupportedVersions, versionTLS13) {
		return shortID, "not TLS 1.3"
	}
	peer := x25519Share(h)
	if peer == nil {
		return shortID, "no X25519 key share"
	}
	if len(h.SessionID) != 32 {
		return shortID, "session ID is not 32 bytes"
	}
	plain, err := s.openSessionID(h, peer)
	if err != nil {
		return shortID, err.Error()
	}
	t := time.Unix(int64(binary.BigEndian.Uint32(plain[4:8])), 0)
	if d := now.Sub(t).Abs(); d > s.maxTimeDiff {
		return shortID, fmt.Sprintf("client clock off by %v", d.Round(time.Second))
	}
	copy(shortID[:], plain[8:16])
	if !s.shortIDs[shortID] && (s.more == nil || !s.more(shortID)) {
		return shortID, "unknown short ID"
	}
	return shortID, ""
}

// Recognizes reports whether h authenticates to this server (its server
// name, key, clock and a known short ID) without recording it: the replay
// check stays Handshake's, so the hello can then be handed to Handshake.
// A relay fronting exits of different keys asks them with it
// (relaylink's KindAsk).
func (s *Server) Recognizes(h *tlshello.ClientHello) bool {
	_, reason := s.authenticate(h, time.Now())
	return reason == ""
}

// x25519Share returns the client's X25519 public key: the X25519 share, or
// the last 32 bytes of an X25519MLKEM768 share; nil if there is neither.
func x25519Share(h *tlshello.ClientHello) []byte {
	for _, ks := range h.KeyShares {
		if ks.Group == groupX25519 && len(ks.Data) == 32 {
			return ks.Data
		}
	}
	for _, ks := range h.KeyShares {
		if ks.Group == groupX25519MLKEM && len(ks.Data) == mlkem768EncapsSize+32 {
			return ks.Data[mlkem768EncapsSize:]
		}
	}
	return nil
}

// openSessionID decrypts the authenticator in h's session ID.
func (s *Server) openSessionID(h *tlshello.ClientHello, peer []byte) ([]byte, error) {
	priv, err := ecdh.X25519().NewPrivateKey(s.priv)
	if err != nil {
		return nil, fmt.Errorf("private key: %w", err)
	}
	pub, err := ecdh.X25519().NewPublicKey(peer)
	if err != nil {
		return nil, fmt.Errorf("client key share: %w", err)
	}
	shared, err := priv.ECDH(pub)
	if err != nil {
		return nil, fmt.Errorf("client key share: %w", err)
	}
	key, err := hkdf.Key(sha256.New, shared, h.Random[:20], "REALITY", 32)
	if err != nil {
		return nil, fmt.Errorf("derive key: %w", err)
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("derive key: %w", err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, fmt.Errorf("derive key: %w", err)
	}
	aad := slices.Clone(h.Raw)
	clear(aad[h.SessionIDOffset : h.SessionIDOffset+len(h.SessionID)])
	plain, err := aead.Open(nil, h.Random[20:], h.SessionID, aad)
	if err != nil {
		return nil, errors.New("authenticator does not open")
	}
	return plain, nil
}

// coverKey carries the per-connection cover conn through ctx into the
// shared reality.Config's DialContext.
type coverKey struct{}

// realityConfig returns a reality.Config accepting shortIDs. The one for
// ShortIDs is shared by all connections: reality.Server dials the cover
// through DialContext with the ctx it was given, so one config serves all
// connections and each gets the cover conn we already opened. A short ID
// accepted by MoreShortIDs gets a config of its own (reality checks the
// short ID again, against a map it must not see change).
func (s *Server) realityConfig(shortIDs map[[8]byte]bool) *reality.Config {
	return &reality.Config{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			c, ok := ctx.Value(coverKey{}).(net.Conn)
			if !ok {
				return nil, errors.New("camo: no cover conn in context")
			}
			return c, nil
		},
		Type:        "tcp",
		Dest:        s.cover,
		ServerNames: s.serverNames,
		PrivateKey:  s.priv,
		// We checked the clock already; a second check a moment later
		// could only disagree with ours.
		MaxTimeDiff:            0,
		ShortIds:               shortIDs,
		NextProtos:             nil,
		SessionTicketsDisabled: true,
	}
}

// handOver runs the REALITY TLS handshake of an authenticated client. The
// client's first flight (raw, of which helloLen bytes are the hello) is replayed to reality from memory, and the
// cover conn we opened is given to it with the bytes the cover already has
// swallowed and the bytes it already sent returned first.
func (s *Server) handOver(ctx context.Context, conn net.Conn, cover net.Conn, raw []byte, helloLen int, coverData []byte, h *tlshello.ClientHello, sid [8]byte) (net.Conn, error) {
	s.waitRecordSizes(ctx, h)
	deadline := time.Now().Add(handshakeTimeout)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	conn.SetDeadline(deadline)
	cover.SetDeadline(deadline)
	rc := &replayConn{Conn: conn, tcp: conn, pending: raw}
	cc := newCoverConn(cover, coverData, len(raw), helloLen, deadline)
	cfg := s.reality
	if !s.shortIDs[sid] {
		cfg = s.realityConfig(map[[8]byte]bool{sid: true})
	}
	tc, err := reality.Server(context.WithValue(ctx, coverKey{}, net.Conn(cc)), rc, cfg)
	if err != nil {
		conn.Close()
		cover.Close()
		return nil, fmt.Errorf("camo: REALITY handshake: %w", err)
	}
	conn.SetDeadline(time.Time{})
	releaseServer(tc)
	return tc, nil
}

// waitRecordSizes waits until the reality module knows the cover's
// post-handshake record sizes for h's SNI and ALPN. Without them
// reality.Server sleeps in steps of 5 s after the handshake. If detection
// takes longer than recordSizeWait, it records "no records" so handshakes
// proceed (reality overwrites it if detection finishes later).
func (s *Server) waitRecordSizes(ctx context.Context, h *tlshello.ClientHello) {
	key := recordLensKey(s.cover, h.ServerName, alpnClass(h.ALPN))
	ready := func() bool {
		_, ok := recordLens(key)
		return ok
	}
	if ready() {
		return
	}
	t := time.NewTicker(20 * time.Millisecond)
	defer t.Stop()
	limit := time.NewTimer(recordSizeWait)
	defer limit.Stop()
	for !ready() {
		select {
		case <-ctx.Done():
			return
		case <-limit.C:
			giveUpRecordLens(key)
			s.log.Warn("camo: cover record-size detection did not finish; handshakes proceed without it", "cover", s.cover)
			return
		case <-t.C:
		}
	}
}

// replayConn is the client conn as reality.Server sees it: the bytes we
// already read are read again first. It implements CloseWrite because
// reality.Server requires it. tcp is the conn Handshake was given (a
// *net.TCPConn, or a relayed stream).
type replayConn struct {
	net.Conn
	tcp     net.Conn
	pending []byte // read by one goroutine at a time (reality's lock, then the TLS conn's)
	// gather, set by Coalesced before the conn is shared, holds the
	// records of one TLS Write until it ends.
	gather *gatherer
}

func (c *replayConn) Write(p []byte) (int, error) {
	if c.gather != nil {
		return c.gather.write(c.Conn, p)
	}
	return c.Conn.Write(p)
}

func (c *replayConn) Read(p []byte) (int, error) {
	if len(c.pending) > 0 {
		n := copy(p, c.pending)
		c.pending = c.pending[n:]
		if len(c.pending) == 0 {
			c.pending = nil // let the 32 KiB read buffer go: idle conns hold nothing of the hello
		}
		return n, nil
	}
	return c.Conn.Read(p)
}

func (c *replayConn) CloseWrite() error {
	if cw, ok := c.tcp.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return c.tcp.Close()
}

// WriteTo lets io.Copy from this conn splice (Vision direct copy) once the
// replayed bytes are out.
func (c *replayConn) WriteTo(w io.Writer) (int64, error) {
	var n int64
	if len(c.pending) > 0 {
		k, err := w.Write(c.pending)
		n += int64(k)
		c.pending = c.pending[k:]
		if err != nil {
			return n, err
		}
	}
	var m int64
	var err error
	if wt, ok := c.tcp.(io.WriterTo); ok {
		m, err = wt.WriteTo(w)
	} else {
		m, err = io.Copy(w, onlyReader{c.tcp})
	}
	return n + m, err
}

// ReadFrom lets io.Copy into this conn splice.
func (c *replayConn) ReadFrom(r io.Reader) (int64, error) {
	if rf, ok := c.tcp.(io.ReaderFrom); ok {
		return rf.ReadFrom(r)
	}
	return io.Copy(onlyWriter{c.tcp}, r)
}

// onlyReader and onlyWriter hide a conn's WriteTo and ReadFrom from io.Copy.
type onlyReader struct{ io.Reader }
type onlyWriter struct{ io.Writer }

// NetConn returns the underlying TCP conn, for splicing once TLS is no
// longer needed (Vision direct copy). Its first bytes were already read.
func (c *replayConn) NetConn() net.Conn { return c.tcp }

// coverConn is the cover conn as reality.Server sees it: the first swallow
// bytes written are dropped (the cover already got them from us) and the
// bytes the cover already sent are read first. Nothing is read before
// reality has mirrored the whole hello to it, as with a fresh cover. (reality.Server
// treats cover bytes that arrive before it processed the hello as a reason
// to fall back.) Write and Read are used by different goroutines; swallow
// belongs to the writer, pending to the reader, and mirrored hands over.
type coverConn struct {
	net.Conn
	pending  []byte
	swallow  int
	readyAt  int           // mirrored closes when swallow drops to readyAt
	mirrored chan struct{} // closed once the hello was written
	deadline time.Time     // give up waiting for mirrored
}

// newCoverConn returns a coverConn that swallows the first swallow bytes
// written, of which the first helloLen are the client's hello.
func newCoverConn(c net.Conn, pending []byte, swallow, helloLen int, deadline time.Time) *coverConn {
	cc := &coverConn{Conn: c, pending: pending, swallow: swallow, readyAt: swallow - helloLen,
		mirrored: make(chan struct{}), deadline: deadline}
	if helloLen == 0 {
		close(cc.mirrored)
	}
	return cc
}

func (c *coverConn) Read(p []byte) (int, error) {
	select {
	case <-c.mirrored:
	default:
		t := time.NewTimer(time.Until(c.deadline))
		defer t.Stop()
		select {
		case <-c.mirrored:
		case <-t.C:
			return 0, os.ErrDeadlineExceeded
		}
	}
	if len(c.pending) > 0 {
		n := copy(p, c.pending)
		c.pending = c.pending[n:]
		return n, nil
	}
	return c.Conn.Read(p)
}

func (c *coverConn) Write(p []byte) (int, error) {
	if c.swallow == 0 {
		return c.Conn.Write(p)
	}
	k := min(c.swallow, len(p))
	before := c.swallow
	c.swallow -= k
	if before > c.readyAt && c.swallow <= c.readyAt {
		close(c.mirrored)
	}
	if k == len(p) {
		return k, nil
	}
	n, err := c.Conn.Write(p[k:])
	return k + n, err
}

func (c *coverConn) CloseWrite() error {
	closeWrite(c.Conn)
	return nil
}
