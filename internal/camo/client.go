package camo

import (
	"bytes"
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/ecdh"
	"crypto/ed25519"
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/x509"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"time"

	utls "github.com/refraction-networking/utls"
)

// ClientConfig configures Client. It mirrors the REALITY part of a vless://
// link (sni=, pbk=, sid=, fp=).
type ClientConfig struct {
	// ServerName is the SNI to send: one of the server's ServerNames (the
	// cover site's name). Required.
	ServerName string
	// PublicKey is the server's X25519 public key, 32 bytes. Required.
	PublicKey []byte
	// ShortID is one of the server's short IDs, 0..8 bytes; it is sent
	// right-padded with zeros to 8 bytes.
	ShortID []byte
	// Fingerprint names the browser whose ClientHello is sent: "chrome"
	// (the default when empty), "firefox", "safari", "ios", "edge" or
	// "random". Other values are an error.
	Fingerprint string
}

// ErrNotReality is returned (wrapped) by Client when the server completed an
// ordinary TLS handshake with a certificate that is not REALITY's temporary
// one: the server did not accept our authenticator and handed us to its cover
// site, or someone in the path answered instead of our server.
var ErrNotReality = errors.New("camo: not a REALITY server")

// clientVersion is the Xray-core version announced in the session ID, as
// Xray-core v26.3.27 (tag v1.260327.0) sends it. Servers may bound it with
// MinClientVer/MaxClientVer.
var clientVersion = [3]byte{26, 3, 27}

// sessionIDOffset is where a 32-byte legacy_session_id starts in a
// ClientHello handshake message: type (1) + length (3) + legacy_version (2) +
// random (32) + session_id length (1).
const sessionIDOffset = 39

// Client runs the REALITY client handshake over conn and returns the TLS
// connection (concretely *utls.UConn). Client owns conn: on any error conn is
// closed. Cancelling ctx aborts the handshake.
//
// The ClientHello is the named browser's (see Fingerprint). REALITY hides an
// authenticator in its 32-byte legacy_session_id:
//
//	plaintext (16 bytes):
//	| 26 | 3 | 27 | 0 | unix time (4, big endian) | short id (8, zero padded) |
//	  Xray version  reserved
//
//	shared   = X25519(our key_share private key, server public key)
//	           (the X25519 key share; with only X25519MLKEM768, its X25519 half)
//	auth key = HKDF-SHA256(secret = shared, salt = random[0:20], info = "REALITY"), 32 bytes
//	session_id (32) = AES-256-GCM(auth key).Seal(nonce = random[20:32],
//	                  plaintext, aad = the ClientHello message with session_id zeroed)
//
// A server holding the private key opens it and, if the short ID and time are
// acceptable, answers with a temporary ed25519 certificate whose signature
// field is HMAC-SHA512(auth key, ed25519 public key); anything else is
// spliced to the cover site, which answers with its real certificate. Client
// checks for that HMAC and otherwise closes the connection and returns
// ErrNotReality. (Xray's optional ML-DSA-65 certificate check is not
// supported.) The returned conn no longer holds that certificate: its
// ConnectionState().PeerCertificates is empty.
func Client(ctx context.Context, conn net.Conn, cfg ClientConfig) (net.Conn, error) {
	uc, err := client(ctx, conn, cfg, time.Now())
	if err != nil {
		conn.Close()
		return nil, err
	}
	return uc, nil
}

// client is Client without closing conn on error; now is the time announced
// in the session ID.
func client(ctx context.Context, conn net.Conn, cfg ClientConfig, now time.Time) (*utls.UConn, error) {
	if cfg.ServerName == "" {
		return nil, errors.New("camo: client: server name (SNI) is empty")
	}
	serverKey, err := ecdh.X25519().NewPublicKey(cfg.PublicKey)
	if err != nil {
		return nil, fmt.Errorf("camo: client: public key must be 32 bytes of X25519, got %d bytes", len(cfg.PublicKey))
	}
	if len(cfg.ShortID) > 8 {
		return nil, fmt.Errorf("camo: client: short id is %d bytes, at most 8", len(cfg.ShortID))
	}
	spec, err := helloSpec(cfg.Fingerprint)
	if err != nil {
		return nil, err
	}

	var (
		authKey  []byte
		verified bool
	)
	uc := utls.UClient(conn, &utls.Config{
		ServerName: cfg.ServerName,
		// The temporary certificate is self-signed; we check it ourselves.
		InsecureSkipVerify:     true,
		SessionTicketsDisabled: true,
		VerifyPeerCertificate: func(rawCerts [][]byte, _ [][]*x509.Certificate) error {
			verified = isTemporaryCert(authKey, rawCerts)
			return nil
		},
	}, utls.HelloCustom)
	if err := uc.ApplyPreset(spec); err != nil {
		return nil, fmt.Errorf("camo: client: apply fingerprint %q: %w", cfg.Fingerprint, err)
	}
	if err := uc.BuildHandshakeState(); err != nil {
		return nil, fmt.Errorf("camo: client: build ClientHello: %w", err)
	}
	authKey, err = sealSessionID(uc.HandshakeState.Hello, uc.HandshakeState.State13.KeyShareKeys, serverKey, cfg.ShortID, now)
	if err != nil {
		return nil, err
	}
	if err := uc.HandshakeContext(ctx); err != nil {
		return nil, fmt.Errorf("camo: client: handshake: %w", err)
	}
	if !verified {
		uc.Close()
		return nil, fmt.Errorf("%w: server answered as an ordinary website: wrong public key, short id or SNI, or the connection is intercepted", ErrNotReality)
	}
	// The ClientHello, its extensions and key shares (an ML-KEM-768 key alone
	// is ~9 KiB) and the handshake state are not used after the handshake
	// (utls reads them only while building and running it); a conn that then
	// sits idle should not hold them.
	uc.Extensions = nil
	hs := &uc.HandshakeState
	hs.Hello, hs.ServerHello, hs.MasterSecret, hs.Session = nil, nil, nil, nil
	hs.State12, hs.State13 = utls.TLS12OnlyState{}, utls.TLS13OnlyState{}
	releaseClient(uc)
	return uc, nil
}

// sealSessionID writes the REALITY authenticator into hello's session ID
// (both hello.SessionId and its bytes in hello.Raw) and returns the auth key.
func sealSessionID(hello *utls.PubClientHelloMsg, keys *utls.KeySharePrivateKeys, serverKey *ecdh.PublicKey, shortID []byte, now time.Time) ([]byte, error) {
	raw := hello.Raw
	if len(hello.SessionId) != 32 || len(raw) < sessionIDOffset+32 || raw[sessionIDOffset-1] != 32 {
		return nil, errors.New("camo: client: ClientHello has no 32-byte session id to carry the authenticator")
	}
	priv, err := x25519Key(hello, keys)
	if err != nil {
		return nil, err
	}
	shared, err := priv.ECDH(serverKey)
	if err != nil {
		return nil, fmt.Errorf("camo: client: X25519 with server key: %w", err)
	}
	authKey, err := hkdf.Key(sha256.New, shared, hello.Random[:20], "REALITY", 32)
	if err != nil {
		return nil, fmt.Errorf("camo: client: derive auth key: %w", err)
	}

	plain := make([]byte, 16)
	copy(plain, clientVersion[:])
	binary.BigEndian.PutUint32(plain[4:], uint32(now.Unix()))
	copy(plain[8:], shortID)

	block, err := aes.NewCipher(authKey)
	if err != nil {
		return nil, fmt.Errorf("camo: client: %w", err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, fmt.Errorf("camo: client: %w", err)
	}
	sid := raw[sessionIDOffset : sessionIDOffset+32]
	clear(sid) // the AAD is the hello with a zero session id
	sealed := aead.Seal(nil, hello.Random[20:], plain, raw)
	copy(sid, sealed)
	hello.SessionId = sid
	return authKey, nil
}

// x25519Key returns the private key of the key share the server will use:
// like Xray's server, the first 32-byte X25519 share, else the X25519 half of
// an X25519MLKEM768 share.
func x25519Key(hello *utls.PubClientHelloMsg, keys *utls.KeySharePrivateKeys) (*ecdh.PrivateKey, error) {
	if keys == nil {
		return nil, errors.New("camo: client: fingerprint sends no TLS 1.3 key share; REALITY needs X25519")
	}
	for _, ks := range hello.KeyShares {
		if ks.Group == utls.X25519 && len(ks.Data) == 32 {
			if k := keys.Ecdhe; k != nil && bytes.Equal(k.PublicKey().Bytes(), ks.Data) {
				return k, nil
			}
			return nil, errors.New("camo: client: X25519 key share is not the first classical share; REALITY cannot use it")
		}
	}
	for _, ks := range hello.KeyShares {
		if ks.Group == utls.X25519MLKEM768 {
			if k := keys.MlkemEcdhe; k != nil && bytes.HasSuffix(ks.Data, k.PublicKey().Bytes()) {
				return k, nil
			}
		}
	}
	return nil, errors.New("camo: client: fingerprint sends no X25519 key share; REALITY needs one")
}

// isTemporaryCert reports whether the leaf certificate is REALITY's
// temporary one for this connection: an ed25519 certificate whose signature
// field is HMAC-SHA512(authKey, public key).
func isTemporaryCert(authKey []byte, rawCerts [][]byte) bool {
	if len(authKey) == 0 || len(rawCerts) == 0 {
		return false
	}
	cert, err := x509.ParseCertificate(rawCerts[0])
	if err != nil {
		return false
	}
	pub, ok := cert.PublicKey.(ed25519.PublicKey)
	if !ok {
		return false
	}
	mac := hmac.New(sha512.New, authKey)
	mac.Write(pub)
	return hmac.Equal(mac.Sum(nil), cert.Signature)
}
