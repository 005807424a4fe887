// Package camo is Burrow's camouflage layer: REALITY-TLS 1.3, wire-compatible
// with Xray-core. The client (client*.go) sends a real browser's ClientHello
// whose session ID carries an authenticator; the server (server*.go) checks it
// before answering anything, and everything it does not accept is spliced
// byte for byte to a real "cover" HTTPS site, so a prober sees only that site.
//
// It depends on internal/tlshello, github.com/xtls/reality (the TLS 1.3 server
// that mirrors the cover's handshake record sizes) and utls. It does not carry
// proxy traffic itself: the caller reads VLESS from the returned conn.
//
// The authenticator is the 32-byte legacy session ID of the ClientHello:
//
//	shared     = X25519(server private key, client X25519 key share)
//	             (for an X25519MLKEM768 share: its last 32 bytes)
//	key        = HKDF-SHA256(secret=shared, salt=random[0:20], info="REALITY"), 32 bytes
//	session ID = AES-256-GCM-Seal(key, nonce=random[20:32], plaintext, aad)
//	aad        = the ClientHello handshake message with the 32 session ID bytes zeroed
//
//	plaintext (16 bytes):
//	| ver x | ver y | ver z | 0 | unix time (4, big endian) | short ID (8, right-padded with 0) |
//
// The server accepts a hello only if it is TLS 1.3, names one of ServerNames,
// has such a key share, opens under the key, names a known short ID, is
// within MaxTimeDiff of the server clock and was not seen before (replay
// cache). Anything else, and anything the cover says before we decided, makes
// the connection a fallback: the server keeps forwarding both ways and ends
// each side the way the other ended (FIN for FIN, reset for reset).
package camo

import (
	"context"
	"crypto/ecdh"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"syscall"
	"time"

	"github.com/xtls/reality"
)

// ErrFallback is returned by (*Server).Handshake when the connection was not
// one of ours and has been spliced to the cover site until both ended.
var ErrFallback = errors.New("camo: not authenticated, served by the cover site")

// DefaultMaxTimeDiff is the largest accepted difference between a client's
// clock (sent in the authenticator) and ours.
const DefaultMaxTimeDiff = 90 * time.Second

// DefaultFallbackIdle is how long a fallback splice may carry no byte in
// either direction before both sides are closed. It is longer than any web
// server's keep-alive timeout, so the cover always closes first.
const DefaultFallbackIdle = 5 * time.Minute

// ServerConfig configures a REALITY server. Zero values of optional fields
// select the stated defaults.
type ServerConfig struct {
	// PrivateKey is the server's X25519 private key, 32 bytes. Required.
	PrivateKey []byte
	// ShortIDs are the accepted short IDs, 0..8 bytes each, compared
	// right-padded with zeros to 8 bytes (as Xray-core does). Required.
	ShortIDs [][]byte
	// ServerNames are the SNIs accepted; they should be names the cover
	// serves. Required.
	ServerNames []string
	// Cover is host:port of the cover site, a real TLS 1.3 server with
	// X25519. Required.
	Cover string
	// MaxTimeDiff bounds the clock difference between client and server.
	// Default DefaultMaxTimeDiff. The replay cache remembers hellos for
	// twice this long.
	MaxTimeDiff time.Duration
	// DialCover dials the cover site, also for the one-time detection of
	// its post-handshake record sizes. Default: a net.Dialer.
	DialCover func(ctx context.Context, network, addr string) (net.Conn, error)
	// MoreShortIDs, if set, is asked about a short ID that is not among
	// ShortIDs; true accepts it. It lets the set grow and shrink while the
	// server runs (the relays of an exit). It must be fast and safe for
	// concurrent use.
	MoreShortIDs func(id [8]byte) bool
	// Logger receives debug and warning messages; nil discards them. No
	// keys or addresses of clients are logged above debug level.
	Logger *slog.Logger

	// fallbackIdle overrides DefaultFallbackIdle (tests).
	fallbackIdle time.Duration
}

// Server authenticates REALITY clients and splices everyone else to the
// cover site. It is safe for concurrent use.
type Server struct {
	priv        []byte
	shortIDs    map[[8]byte]bool
	more        func([8]byte) bool
	serverNames map[string]bool
	cover       string
	maxTimeDiff time.Duration
	idle        time.Duration
	dial        func(ctx context.Context, network, addr string) (net.Conn, error)
	log         *slog.Logger
	replays     *replayCache
	reality     *reality.Config // shared; the cover conn travels in ctx
	recordSizes <-chan struct{} // closed when the detection of the cover's record sizes has ended
}

// NewServer validates cfg and returns a Server. It starts the one-time
// detection of the cover's post-handshake record sizes in the background
// (recordsizes.go); until it finishes (a few seconds), authenticated
// handshakes wait for it rather than sleep.
func NewServer(cfg ServerConfig) (*Server, error) {
	if len(cfg.PrivateKey) != 32 {
		return nil, fmt.Errorf("camo: private key is %d bytes, want 32", len(cfg.PrivateKey))
	}
	if _, err := ecdh.X25519().NewPrivateKey(cfg.PrivateKey); err != nil {
		return nil, fmt.Errorf("camo: private key: %w", err)
	}
	if len(cfg.ShortIDs) == 0 {
		return nil, errors.New("camo: no short IDs")
	}
	if len(cfg.ServerNames) == 0 {
		return nil, errors.New("camo: no server names")
	}
	if _, _, err := net.SplitHostPort(cfg.Cover); err != nil {
		return nil, fmt.Errorf("camo: cover %q is not host:port: %w", cfg.Cover, err)
	}
	if cfg.MaxTimeDiff < 0 {
		return nil, fmt.Errorf("camo: negative MaxTimeDiff %v", cfg.MaxTimeDiff)
	}
	s := &Server{
		priv:        append([]byte(nil), cfg.PrivateKey...),
		shortIDs:    make(map[[8]byte]bool),
		serverNames: make(map[string]bool),
		cover:       cfg.Cover,
		maxTimeDiff: cfg.MaxTimeDiff,
		idle:        cfg.fallbackIdle,
		dial:        cfg.DialCover,
		log:         cfg.Logger,
		more:        cfg.MoreShortIDs,
	}
	for _, id := range cfg.ShortIDs {
		if len(id) > 8 {
			return nil, fmt.Errorf("camo: short ID of %d bytes, want at most 8", len(id))
		}
		var k [8]byte
		copy(k[:], id)
		s.shortIDs[k] = true
	}
	for _, n := range cfg.ServerNames {
		if n == "" {
			return nil, errors.New("camo: empty server name")
		}
		s.serverNames[n] = true
	}
	if s.maxTimeDiff == 0 {
		s.maxTimeDiff = DefaultMaxTimeDiff
	}
	if s.idle == 0 {
		s.idle = DefaultFallbackIdle
	}
	if s.dial == nil {
		var d net.Dialer
		s.dial = d.DialContext
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	s.replays = newReplayCache(2*s.maxTimeDiff, replayCacheMax)
	s.reality = s.realityConfig(s.shortIDs)
	s.recordSizes = s.detectRecordSizes()
	s.log.Debug("camo: detecting the cover's post-handshake record sizes", "cover", s.cover)
	return s, nil
}

// Handshake reads the client's first flight from conn (a *net.TCPConn, or
// any byte stream that carries one connection's bytes, such as a relayed
// stream; it should implement CloseWrite), forwarding it to a
// fresh connection to the cover as it arrives, and decides. Authenticated:
// it returns the REALITY TLS conn (a *reality.Conn, whose ClientShortId
// field holds the short ID used; its NetConn has a NetConn method of its
// own that returns conn, for splicing). Otherwise it splices
// conn and the cover until both are done and returns ErrFallback (or the
// dial error if the cover could not be reached; conn is then closed as the
// cover's absence would look: a reset). Handshake owns conn in every case.
// Cancelling ctx ends a splice.
func (s *Server) Handshake(ctx context.Context, conn net.Conn) (net.Conn, error) {
	cover, err := s.dialCover(ctx)
	if err != nil {
		resetConn(conn)
		return nil, fmt.Errorf("camo: dial cover %s: %w", s.cover, err)
	}
	f := startFlight(conn, cover, s.idle)
	unwatch := context.AfterFunc(ctx, func() { conn.SetReadDeadline(time.Now()) })
	hello, raw, helloLen, readErr := f.readHello()
	unwatch()
	var reason string
	var sid [8]byte
	if readErr != nil {
		reason = readErr.Error()
	} else {
		sid, reason = s.authenticate(hello, time.Now())
	}
	coverData, coverErr, early := f.stop(helloLen)
	switch {
	case reason != "":
	case early:
		reason = "cover answered before the hello was complete"
	case coverErr != nil:
		reason = "cover ended the connection: " + coverErr.Error()
	case !s.replays.add(replayKey(hello), time.Now()):
		reason = "replayed ClientHello"
	}
	if reason != "" {
		s.log.Debug("camo: fallback to cover", "reason", reason)
		s.splice(ctx, conn, cover, coverData, coverErr)
		return nil, ErrFallback
	}
	s.log.Debug("camo: authenticated")
	return s.handOver(ctx, conn, cover, raw, helloLen, coverData, hello, sid)
}

// GenerateKey returns a new X25519 key pair (32 bytes each).
func GenerateKey() (priv, pub []byte, err error) {
	k, err := ecdh.X25519().GenerateKey(rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("camo: generate key: %w", err)
	}
	return k.Bytes(), k.PublicKey().Bytes(), nil
}

// outOfFilesWait bounds how long Handshake waits for a free descriptor to
// reach the cover with.
const outOfFilesWait = 10 * time.Second

// dialCover dials the cover. When this process is out of descriptors it
// retries with backoff for up to outOfFilesWait, so the client sees a slow
// server, as at a busy site, rather than a reset the cover would not send.
func (s *Server) dialCover(ctx context.Context) (net.Conn, error) {
	var delay time.Duration
	deadline := time.Now().Add(outOfFilesWait)
	for {
		c, err := s.dial(ctx, "tcp", s.cover)
		if err == nil || !(errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE)) || time.Now().After(deadline) {
			return c, err
		}
		delay = min(max(2*delay, 5*time.Millisecond), time.Second)
		s.log.Debug("camo: out of file descriptors to reach the cover; retrying", "delay", delay)
		t := time.NewTimer(delay)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return nil, err
		}
	}
}
