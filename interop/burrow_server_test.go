package interop

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"testing"
	"time"
)

// requireXUDPEnv, when set to 1, makes a missing XUDP answer from the burrow
// server a failure instead of a skip.
const requireXUDPEnv = "INTEROP_REQUIRE_XUDP"

// TestXrayClientBurrowServer: `burrow server init` prints a vless:// link; an
// Xray-core client configured only from that link reaches the loopback sites
// through `burrow server run` (plain HTTP, HTTPS with inner TLS, and UDP).
func TestXrayClientBurrowServer(t *testing.T) {
	cover := startCover(t)
	site := startContent(t)
	echo := startUDPEcho(t)
	bs := startBurrowServer(t, cover.Addr)

	l := bs.Link
	if got := net.JoinHostPort(l.Host, strconv.Itoa(l.Port)); got != bs.Addr {
		t.Errorf("link address = %s, want %s (from --public-addr and --listen)", got, bs.Addr)
	}
	if l.SNI != coverSNI {
		t.Errorf("link sni = %q, want %q", l.SNI, coverSNI)
	}
	if l.Flow != flowVision {
		t.Errorf("link flow = %q, want %q", l.Flow, flowVision)
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
	t.Run("repeat", func(t *testing.T) {
		// New connections after the first: REALITY state and the server's
		// replay protection must not refuse a fresh, honest handshake.
		hc := socksHTTPClient(t, socksAddr, site.Roots)
		for range 3 {
			fetchBlob(t, hc, "http://"+site.HTTPAddr+"/blob", site.Sum)
			hc.Transport.(interface{ CloseIdleConnections() }).CloseIdleConnections()
		}
	})
	t.Run("fingerprints", func(t *testing.T) {
		fetchEachFingerprint(t, l, site)
	})
	t.Run("wrong key", func(t *testing.T) {
		// A client with another public key must not get a tunnel: the server
		// hands it to the cover, Xray's client sees a real certificate and fails.
		bad := l
		bad.PublicKey = newRealityKeys(t).Public
		port := freePort(t)
		startXray(t, xrayClientConfig(t, xrayClientFromLink(port, bad)))
		addr := "127.0.0.1:" + strconv.Itoa(port)
		waitTCP(t, addr, 5*time.Second)
		expectNoTunnel(t, addr, "http://"+site.HTTPAddr+"/blob")
	})
	t.Run("udp", func(t *testing.T) {
		// Xray's VLESS client with flow xtls-rprx-vision always carries UDP as
		// XUDP: VLESS command 3 (Mux) to v1.mux.cool:666 with XUDP frames.
		// Over loopback an answer takes milliseconds; 6s is for a loaded CI.
		ctx, cancel := context.WithTimeout(context.Background(), 6*time.Second)
		defer cancel()
		msg := "ping through burrow"
		got, err := socksUDPExchange(ctx, socksAddr, echo, []byte(msg))
		if err != nil {
			if errors.Is(err, errUDPNotSupported) {
				t.Fatalf("xray's own SOCKS inbound refused UDP: %v", err)
			}
			reason := fmt.Sprintf("no UDP answer through the burrow server (%v); Xray's Vision client sends UDP as XUDP (VLESS Mux command), which the burrow server does not serve yet", err)
			if os.Getenv(requireXUDPEnv) == "1" {
				t.Fatalf("%s (%s=1)", reason, requireXUDPEnv)
			}
			t.Skipf("%s (set %s=1 to fail instead)", reason, requireXUDPEnv)
		}
		if want := "echo:" + msg; string(got) != want {
			t.Fatalf("udp exchange = %q, want %q", got, want)
		}
	})
}
