package interop

import (
	"crypto/ecdh"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/xtls/xray-core/core"
	"github.com/xtls/xray-core/infra/conf/serial"

	// Registers every Xray feature, proxy and transport by init(), as the
	// xray binary does; without it core.New finds no VLESS, REALITY or SOCKS.
	_ "github.com/xtls/xray-core/main/distro/all"
)

// flowVision is the only VLESS flow these tests use.
const flowVision = "xtls-rprx-vision"

// startXray builds an Xray-core instance from a JSON config and starts it
// in-process; it is closed when the test ends.
func startXray(t *testing.T, config string) *core.Instance {
	t.Helper()
	cfg, err := serial.LoadJSONConfig(strings.NewReader(config))
	if err != nil {
		t.Fatalf("xray: load config: %v\n%s", err, config)
	}
	inst, err := core.New(cfg)
	if err != nil {
		t.Fatalf("xray: new instance: %v", err)
	}
	if err := inst.Start(); err != nil {
		t.Fatalf("xray: start: %v", err)
	}
	t.Cleanup(func() { inst.Close() })
	return inst
}

// xrayLog is Xray's log level for these tests: INTEROP_XRAY_LOG, or "warning".
func xrayLog() map[string]any {
	lvl := os.Getenv("INTEROP_XRAY_LOG")
	if lvl == "" {
		lvl = "warning"
	}
	return map[string]any{"loglevel": lvl}
}

// realityKeys is an X25519 key pair in Xray's encoding (base64, raw URL alphabet).
type realityKeys struct {
	Private, Public string
}

func newRealityKeys(t *testing.T) realityKeys {
	t.Helper()
	k, err := ecdh.X25519().GenerateKey(rand.Reader)
	if err != nil {
		t.Fatalf("x25519: %v", err)
	}
	enc := base64.RawURLEncoding
	return realityKeys{Private: enc.EncodeToString(k.Bytes()), Public: enc.EncodeToString(k.PublicKey().Bytes())}
}

// newUUID returns a random version-4 UUID in its text form.
func newUUID(t *testing.T) string {
	t.Helper()
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		t.Fatalf("uuid: %v", err)
	}
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	h := hex.EncodeToString(b[:])
	return fmt.Sprintf("%s-%s-%s-%s-%s", h[0:8], h[8:12], h[12:16], h[16:20], h[20:32])
}

// newShortID returns 8 random bytes in hex, the longest REALITY short id.
func newShortID(t *testing.T) string {
	t.Helper()
	var b [8]byte
	if _, err := rand.Read(b[:]); err != nil {
		t.Fatalf("short id: %v", err)
	}
	return hex.EncodeToString(b[:])
}

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		t.Fatalf("json: %v", err)
	}
	return string(b)
}

// xrayServer is what an Xray VLESS+REALITY+Vision server is configured with.
type xrayServer struct {
	Port       int    // listens on 127.0.0.1:Port
	UUID       string // the one user
	PrivateKey string // REALITY X25519 private key (base64 raw URL)
	ShortID    string // hex
	Target     string // cover site host:port
	SNI        string // accepted server name
}

// xrayServerConfig returns the JSON of an Xray server: VLESS inbound with
// REALITY and Vision, freedom outbound (so it may reach loopback sites).
func xrayServerConfig(t *testing.T, s xrayServer) string {
	return mustJSON(t, map[string]any{
		"log": xrayLog(),
		"inbounds": []any{map[string]any{
			"tag":      "vless-in",
			"listen":   "127.0.0.1",
			"port":     s.Port,
			"protocol": "vless",
			"settings": map[string]any{
				"clients":    []any{map[string]any{"id": s.UUID, "flow": flowVision}},
				"decryption": "none",
			},
			"streamSettings": map[string]any{
				"network":  "tcp",
				"security": "reality",
				"realitySettings": map[string]any{
					"target":      s.Target,
					"serverNames": []string{s.SNI},
					"privateKey":  s.PrivateKey,
					"shortIds":    []string{s.ShortID},
				},
			},
		}},
		"outbounds": []any{map[string]any{"tag": "direct", "protocol": "freedom"}},
	})
}

// xrayClient is what an Xray VLESS+REALITY+Vision client is configured with.
type xrayClient struct {
	SocksPort   int    // SOCKS5 inbound on 127.0.0.1:SocksPort, UDP enabled
	Address     string // server host
	Port        int    // server port
	UUID        string
	Flow        string
	PublicKey   string // REALITY server public key (base64 raw URL)
	ShortID     string // hex
	SNI         string
	Fingerprint string
	SpiderX     string
}

// xrayClientConfig returns the JSON of an Xray client: SOCKS5 inbound (with
// UDP) and a VLESS outbound over REALITY.
func xrayClientConfig(t *testing.T, c xrayClient) string {
	reality := map[string]any{
		"fingerprint": c.Fingerprint,
		"serverName":  c.SNI,
		"password":    c.PublicKey,
		"shortId":     c.ShortID,
	}
	if c.SpiderX != "" {
		reality["spiderX"] = c.SpiderX
	}
	return mustJSON(t, map[string]any{
		"log": xrayLog(),
		"inbounds": []any{map[string]any{
			"tag":      "socks-in",
			"listen":   "127.0.0.1",
			"port":     c.SocksPort,
			"protocol": "socks",
			"settings": map[string]any{"auth": "noauth", "udp": true, "ip": "127.0.0.1"},
		}},
		"outbounds": []any{map[string]any{
			"tag":      "proxy",
			"protocol": "vless",
			"settings": map[string]any{
				"vnext": []any{map[string]any{
					"address": c.Address,
					"port":    c.Port,
					"users":   []any{map[string]any{"id": c.UUID, "flow": c.Flow, "encryption": "none"}},
				}},
			},
			"streamSettings": map[string]any{
				"network":         "tcp",
				"security":        "reality",
				"realitySettings": reality,
			},
		}},
	})
}

// xrayClientFromLink configures an Xray client from a parsed vless:// link,
// field by field as v2rayN-style importers do: pbk is the REALITY password
// (public key), sid the shortId, sni the serverName, fp the fingerprint.
func xrayClientFromLink(socksPort int, l vlessLink) xrayClient {
	fp := l.Fingerprint
	if fp == "" {
		fp = "chrome" // what share-link importers assume
	}
	return xrayClient{
		SocksPort:   socksPort,
		Address:     l.Host,
		Port:        l.Port,
		UUID:        l.UUID,
		Flow:        l.Flow,
		PublicKey:   l.PublicKey,
		ShortID:     l.ShortID,
		SNI:         l.SNI,
		Fingerprint: fp,
		SpiderX:     l.SpiderX,
	}
}

// presetFingerprints are the uTLS fingerprints GUI clients (v2rayN, v2rayNG,
// Hiddify) offer for REALITY, less "android" (OkHttp) and "360": those offer
// no TLS 1.3 that REALITY can use, and Xray's own server refuses them too.
// A server must accept every one listed.
var presetFingerprints = []string{"chrome", "firefox", "safari", "ios", "edge", "qq", "randomized"}

// fetchEachFingerprint starts one Xray client per preset fingerprint, all for
// the server in l, and fetches the blob over plain HTTP through each.
func fetchEachFingerprint(t *testing.T, l vlessLink, site *contentSite) {
	for _, fp := range presetFingerprints {
		t.Run(fp, func(t *testing.T) {
			l := l
			l.Fingerprint = fp
			port := freePort(t)
			startXray(t, xrayClientConfig(t, xrayClientFromLink(port, l)))
			addr := "127.0.0.1:" + strconv.Itoa(port)
			waitTCP(t, addr, 5*time.Second)
			fetchBlob(t, socksHTTPClient(t, addr, site.Roots), "http://"+site.HTTPAddr+"/blob", site.Sum)
		})
	}
}
