package interop

import (
	"context"
	"fmt"
	"strconv"
	"testing"
	"time"
)

// TestXrayToXray proves the harness: an Xray client and an Xray server
// (VLESS + REALITY + Vision, fingerprint chrome) carry plain HTTP, HTTPS
// (inner TLS, where Vision switches to direct copy) and UDP (XUDP) between a
// SOCKS5 client and the loopback sites.
func TestXrayToXray(t *testing.T) {
	cover := startCover(t)
	site := startContent(t)
	echo := startUDPEcho(t)

	keys := newRealityKeys(t)
	srv := xrayServer{
		Port:       freePort(t),
		UUID:       newUUID(t),
		PrivateKey: keys.Private,
		ShortID:    newShortID(t),
		Target:     cover.Addr,
		SNI:        coverSNI,
	}
	startXray(t, xrayServerConfig(t, srv))

	// Go through a vless:// link, as the burrow tests do: build it from the
	// server's parameters, parse it back, configure the client from it.
	raw := vlessLink{
		UUID: srv.UUID, Host: "127.0.0.1", Port: srv.Port, Flow: flowVision,
		Security: "reality", Type: "tcp", SNI: coverSNI, Fingerprint: "chrome",
		PublicKey: keys.Public, ShortID: srv.ShortID, Name: "xray-to-xray",
	}.String()
	l, err := parseVLESSLink(raw)
	if err != nil {
		t.Fatalf("parseVLESSLink(%q): %v", raw, err)
	}
	socksPort := freePort(t)
	startXray(t, xrayClientConfig(t, xrayClientFromLink(socksPort, l)))
	socksAddr := "127.0.0.1:" + strconv.Itoa(socksPort)
	waitTCP(t, socksAddr, 5*time.Second)

	hc := socksHTTPClient(t, socksAddr, site.Roots)
	t.Run("http", func(t *testing.T) {
		fetchBlob(t, hc, "http://"+site.HTTPAddr+"/blob", site.Sum)
	})
	t.Run("domain", func(t *testing.T) {
		// The SOCKS5 request carries the name "localhost"; the server resolves it.
		fetchBlob(t, hc, "http://localhost:"+portOf(site.HTTPAddr)+"/blob", site.Sum)
	})
	t.Run("https", func(t *testing.T) {
		fetchBlob(t, hc, "https://"+site.HTTPSAddr+"/blob", site.Sum)
	})
	t.Run("fingerprints", func(t *testing.T) {
		fetchEachFingerprint(t, l, site)
	})
	t.Run("udp", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		for i := range 3 {
			msg := fmt.Sprintf("ping %d through xray", i)
			got, err := socksUDPExchange(ctx, socksAddr, echo, []byte(msg))
			if err != nil {
				t.Fatalf("udp exchange %d: %v", i, err)
			}
			if want := "echo:" + msg; string(got) != want {
				t.Fatalf("udp exchange %d = %q, want %q", i, got, want)
			}
		}
	})
}
