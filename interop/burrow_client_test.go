package interop

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"testing"
	"time"
)

// TestBurrowClientXrayServer: an Xray-core server (VLESS + REALITY + Vision)
// and `burrow connect` given a vless:// link built from that server's
// parameters; the loopback sites are fetched through burrow's SOCKS5 frontend.
func TestBurrowClientXrayServer(t *testing.T) {
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
	waitTCP(t, "127.0.0.1:"+strconv.Itoa(srv.Port), 5*time.Second)

	link := vlessLink{
		UUID:        srv.UUID,
		Host:        "127.0.0.1",
		Port:        srv.Port,
		Flow:        flowVision,
		Security:    "reality",
		Type:        "tcp",
		SNI:         coverSNI,
		Fingerprint: "chrome",
		PublicKey:   keys.Public,
		ShortID:     srv.ShortID,
		Name:        "xray-interop",
	}
	socksAddr := "127.0.0.1:" + strconv.Itoa(freePort(t))
	p := startBurrow(t, "connect", link.String(), "--socks", socksAddr, "--http", "")
	p.waitListening(t, socksAddr)

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
		hc := socksHTTPClient(t, socksAddr, site.Roots)
		for range 3 {
			fetchBlob(t, hc, "https://"+site.HTTPSAddr+"/blob", site.Sum)
			hc.Transport.(interface{ CloseIdleConnections() }).CloseIdleConnections()
		}
	})
	t.Run("wrong key", func(t *testing.T) {
		// burrow connect with another public key must not reach the site
		// through Xray's server (which hands it to the cover).
		bad := link
		bad.PublicKey = newRealityKeys(t).Public
		addr := "127.0.0.1:" + strconv.Itoa(freePort(t))
		p := startBurrow(t, "connect", bad.String(), "--socks", addr, "--http", "")
		p.waitListening(t, addr)
		expectNoTunnel(t, addr, "http://"+site.HTTPAddr+"/blob")
	})
	t.Run("udp", func(t *testing.T) {
		// Xray's VLESS inbound accepts plain UDP (command 2) under Vision, and
		// XUDP (command 3); either way the echo must come back.
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		for i := range 3 {
			msg := fmt.Sprintf("ping %d through burrow connect", i)
			got, err := socksUDPExchange(ctx, socksAddr, echo, []byte(msg))
			if errors.Is(err, errUDPNotSupported) {
				t.Skipf("burrow connect's SOCKS5 frontend refuses UDP ASSOCIATE: %v", err)
			}
			if err != nil {
				t.Fatalf("udp exchange %d: %v", i, err)
			}
			if want := "echo:" + msg; string(got) != want {
				t.Fatalf("udp exchange %d = %q, want %q", i, got, want)
			}
		}
	})
}
