package camo

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"math/big"
	"sync"

	utls "github.com/refraction-networking/utls"
)

// Fingerprint names accepted in ClientConfig.Fingerprint (the fp= of a
// vless:// link).
const (
	FingerprintChrome  = "chrome"
	FingerprintFirefox = "firefox"
	FingerprintSafari  = "safari"
	FingerprintIOS     = "ios"
	FingerprintEdge    = "edge"
	FingerprintRandom  = "random"
)

// Fingerprints lists the accepted fingerprint names; "" means chrome.
var Fingerprints = []string{FingerprintChrome, FingerprintFirefox, FingerprintSafari, FingerprintIOS, FingerprintEdge, FingerprintRandom}

// helloSpec returns a fresh ClientHello spec for the named fingerprint. A
// spec holds per-connection state (key shares, GREASE choices, extension
// order), so every connection needs its own.
//
//   - chrome: our own spec of Chromium 156 (see chrome156Spec).
//   - edge: the chrome spec. Edge is Chromium and sends Chromium's hello;
//     utls's Edge presets are Edge 85/106 from 2020–2022 and would stand out.
//   - firefox: utls's Firefox 148 preset.
//   - safari: utls's Safari 26.3 preset.
//   - ios: the Safari 26.3 preset too. Safari on iOS and macOS share one TLS
//     stack; utls's iOS presets stop at iOS 14 (2020).
//   - random: one of chrome, firefox, safari, picked once per process so one
//     client keeps one fingerprint (as Xray's "random" does).
func helloSpec(name string) (*utls.ClientHelloSpec, error) {
	switch name {
	case "", FingerprintChrome, FingerprintEdge:
		return chrome156Spec(), nil
	case FingerprintFirefox:
		return presetSpec(utls.HelloFirefox_148)
	case FingerprintSafari, FingerprintIOS:
		return presetSpec(utls.HelloSafari_26_3)
	case FingerprintRandom:
		return helloSpec(randomFingerprint())
	}
	return nil, fmt.Errorf("camo: unknown fingerprint %q (want one of %v)", name, Fingerprints)
}

func presetSpec(id utls.ClientHelloID) (*utls.ClientHelloSpec, error) {
	spec, err := utls.UTLSIdToSpec(id)
	if err != nil {
		return nil, fmt.Errorf("camo: fingerprint %s %s: %w", id.Client, id.Version, err)
	}
	return &spec, nil
}

// randomFingerprint is the process-wide choice behind "random".
var randomFingerprint = sync.OnceValue(func() string {
	choices := []string{FingerprintChrome, FingerprintFirefox, FingerprintSafari}
	n, err := rand.Int(rand.Reader, big.NewInt(int64(len(choices))))
	if err != nil {
		return FingerprintChrome
	}
	return choices[n.Int64()]
})

// chromeTrustAnchors is the body of Chromium 156's trust_anchors extension
// (0xca34, draft-ietf-tls-trust-anchor-ids): a 2-byte length, then the
// length-prefixed trust anchor IDs of its built-in root store, exactly as
// captured from `chromium --headless` (testdata/chromium-156.hello).
var chromeTrustAnchors = mustHex("00b8" +
	"0582df130201" + "0582df130206" + "0582df13020d" + "0582df13020e" + "0582df13020f" +
	"0582df130212" + "0582df130213" + "0582df130214" +
	"08839a648c9b2d0107" + "08839a648c9b2d0108" + "08839a648c9b2d0109" + "08839a648c9b2d010a" +
	"08839a648c9b2d010b" + "08839a648c9b2d010c" + "08839a648c9b2d010d" + "08839a648c9b2d0112" +
	"08839a648c9b2d0113" +
	"04d6790901" + "04d6790904" + "04d6790905" + "04d6790906" + "04d6790907" + "04d6790908" +
	"04d679090a" + "04d679090b" + "04d679090c" + "04d679090d" + "04d679090f")

const extTrustAnchors = 0xca34

// ML-DSA signature schemes (draft-ietf-tls-mldsa) that Chromium 156 offers
// first; utls has no names for them.
const (
	sigMLDSA44 utls.SignatureScheme = 0x0904
	sigMLDSA65 utls.SignatureScheme = 0x0905
	sigMLDSA87 utls.SignatureScheme = 0x0906
)

// chrome156Spec is the ClientHello of Chromium 156 (Debian
// 156.0.8078.108), built from our capture. It differs from utls's
// HelloChrome_Auto (Chrome 133) in two places, both of which change JA4:
//
//   - signature_algorithms starts with a GREASE value and the three ML-DSA
//     schemes 0x0904, 0x0905, 0x0906;
//   - a trust_anchors extension (0xca34) is sent: 17 extensions, not 16.
//
// Everything else matches Chrome 133: 15 cipher suites after GREASE;
// X25519MLKEM768, X25519, P-256, P-384 groups with key shares for
// X25519MLKEM768 and X25519; brotli certificate compression; the new ALPS
// codepoint 0x44cd (h2); an ECH GREASE extension; ALPN h2, http/1.1; GREASE
// first and last; the other extensions permuted per connection as Chrome does
// (JA4 sorts them, JA3 does not).
//
// JA4 of the capture and of this spec: t13d1517h2_8daaf6152771_cb7bf5808d99.
func chrome156Spec() *utls.ClientHelloSpec {
	return &utls.ClientHelloSpec{
		CipherSuites: []uint16{
			utls.GREASE_PLACEHOLDER,
			utls.TLS_AES_128_GCM_SHA256,
			utls.TLS_AES_256_GCM_SHA384,
			utls.TLS_CHACHA20_POLY1305_SHA256,
			utls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
			utls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
			utls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
			utls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
			utls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305,
			utls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305,
			utls.TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA,
			utls.TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA,
			utls.TLS_RSA_WITH_AES_128_GCM_SHA256,
			utls.TLS_RSA_WITH_AES_256_GCM_SHA384,
			utls.TLS_RSA_WITH_AES_128_CBC_SHA,
			utls.TLS_RSA_WITH_AES_256_CBC_SHA,
		},
		CompressionMethods: []byte{0}, // null
		Extensions: utls.ShuffleChromeTLSExtensions([]utls.TLSExtension{
			&utls.UtlsGREASEExtension{},
			&utls.SNIExtension{},
			&utls.ExtendedMasterSecretExtension{},
			&utls.RenegotiationInfoExtension{Renegotiation: utls.RenegotiateOnceAsClient},
			&utls.SupportedCurvesExtension{Curves: []utls.CurveID{
				utls.GREASE_PLACEHOLDER,
				utls.X25519MLKEM768,
				utls.X25519,
				utls.CurveP256,
				utls.CurveP384,
			}},
			&utls.SupportedPointsExtension{SupportedPoints: []byte{0}}, // uncompressed
			&utls.SessionTicketExtension{},
			&utls.ALPNExtension{AlpnProtocols: []string{"h2", "http/1.1"}},
			&utls.StatusRequestExtension{},
			&utls.SignatureAlgorithmsExtension{SupportedSignatureAlgorithms: []utls.SignatureScheme{
				randomGREASE(),
				sigMLDSA44,
				sigMLDSA65,
				sigMLDSA87,
				utls.ECDSAWithP256AndSHA256,
				utls.PSSWithSHA256,
				utls.PKCS1WithSHA256,
				utls.ECDSAWithP384AndSHA384,
				utls.PSSWithSHA384,
				utls.PKCS1WithSHA384,
				utls.PSSWithSHA512,
				utls.PKCS1WithSHA512,
			}},
			&utls.SCTExtension{},
			&utls.KeyShareExtension{KeyShares: []utls.KeyShare{
				{Group: utls.CurveID(utls.GREASE_PLACEHOLDER), Data: []byte{0}},
				{Group: utls.X25519MLKEM768},
				{Group: utls.X25519},
			}},
			&utls.PSKKeyExchangeModesExtension{Modes: []uint8{utls.PskModeDHE}},
			&utls.SupportedVersionsExtension{Versions: []uint16{
				utls.GREASE_PLACEHOLDER,
				utls.VersionTLS13,
				utls.VersionTLS12,
			}},
			&utls.UtlsCompressCertExtension{Algorithms: []utls.CertCompressionAlgo{utls.CertCompressionBrotli}},
			&utls.ApplicationSettingsExtensionNew{SupportedProtocols: []string{"h2"}},
			utls.BoringGREASEECH(),
			&utls.GenericExtension{Id: extTrustAnchors, Data: chromeTrustAnchors},
			&utls.UtlsGREASEExtension{},
		}),
	}
}

// randomGREASE returns one of the sixteen GREASE values (0x0a0a ... 0xfafa).
// utls fills GREASE in cipher suites, groups, versions and extensions itself,
// but not in signature_algorithms, where Chromium now sends one too.
func randomGREASE() utls.SignatureScheme {
	var b [1]byte
	if _, err := rand.Read(b[:]); err != nil {
		b[0] = 0
	}
	v := uint16(b[0]&0xf0 | 0x0a)
	return utls.SignatureScheme(v<<8 | v)
}

func mustHex(s string) []byte {
	b, err := hex.DecodeString(s)
	if err != nil {
		panic(err)
	}
	return b
}
