package interop

import (
	"net/url"
	"strconv"
	"testing"
	"time"
)

// XHTTP interop: Xray-core's XHTTP (splithttp) client against `burrow
// server run`, whose one port serves REALITY+Vision and XHTTP, and `burrow
// connect` with a type=xhttp link against Xray-core's XHTTP server.

// xrayXHTTPClientConfig is an Xray client: SOCKS5 inbound, VLESS outbound
// over XHTTP + REALITY (flow empty, as Xray requires on XHTTP).
func xrayXHTTPClientConfig(t *testing.T, c xrayClient, path, mode string) string {
	return mustJSON(t, map[string]any{
		"log": xrayLog(),
		"inbounds": []any{map[string]any{
			"tag": "socks-in", "listen": "127.0.0.1", "port": c.SocksPort, "protocol": "socks",
			"settings": map[string]any{"auth": "noauth", "udp": true, "ip": "127.0.0.1"},
		}},
		"outbounds": []any{map[string]any{
			"tag": "proxy", "protocol": "vless",
			"settings": map[string]any{
				"vnext": []any{map[string]any{
					"address": c.Address, "port": c.Port,
					"users": []any{map[string]any{"id": c.UUID, "flow": "", "encryption": "none"}},
				}},
			},
			"streamSettings": map[string]any{
				"network":  "xhttp",
				"security": "reality",
				"realitySettings": map[string]any{
					"fingerprint": c.Fingerprint, "serverName": c.SNI, "password": c.PublicKey, "shortId": c.ShortID,
				},
				"xhttpSettings": map[string]any{"path": path, "mode": mode},
			},
		}},
	})
}

// xrayXHTTPServerConfig is an Xray server: VLESS inbound over XHTTP +
// REALITY, freedom outbound.
func xrayXHTTPServerConfig(t *testing.T, s xrayServer, path string) string {
	return mustJSON(t, map[string]any{
		"log": xrayLog(),
		"inbounds": []any{map[string]any{
			"tag": "vless-in", "listen": "127.0.0.1", "port": s.Port, "protocol": "vless",
			"settings": map[string]any{
				"clients":    []any{map[string]any{"id": s.UUID}},
				"decryption": "none",
			},
			"streamSettings": map[string]any{
				"network":  "xhttp",
				"security": "reality",
				"realitySettings": map[string]any{
					"target": s.Target, "serverNames": []string{s.SNI}, "privateKey": s.PrivateKey, "shortIds": []string{s.ShortID},
				},
				"xhttpSettings": map[string]any{"path": path, "mode": "auto"},
			},
		}},
		"outbounds": []any{map[string]any{"tag": "direct", "protocol": "freedom"}},
	})
}

// TestXrayXHTTPClientBurrowServer: Xray's XHTTP client in each mode reaches
// the loopback sites through `burrow server run`; plain REALITY+Vision
// keeps working on the same port.
func TestXrayXHTTPClientBurrowServer(t *testing.T) {
	cover := startCover(t)
	site := startContent(t)
	bs := startBurrowServer(t, cover.Addr)
	for _, mode := range []string{"packet-up", "stream-up", "stream-one", "auto"} {
		t.Run(mode, func(t *testing.T) {
			socksPort := freePort(t)
			startXray(t, xrayXHTTPClientConfig(t, xrayClientFromLink(socksPort, bs.Link), "/assets/"+mode, mode))
			socksAddr := "127.0.0.1:" + strconv.Itoa(socksPort)
			waitTCP(t, socksAddr, 5*time.Second)
			hc := socksHTTPClient(t, socksAddr, site.Roots)
			fetchBlob(t, hc, "http://"+site.HTTPAddr+"/blob", site.Sum)
			fetchBlob(t, hc, "https://"+site.HTTPSAddr+"/blob", site.Sum)
		})
	}
	t.Run("vision on the same port", func(t *testing.T) {
		socksPort := freePort(t)
		startXray(t, xrayClientConfig(t, xrayClientFromLink(socksPort, bs.Link)))
		socksAddr := "127.0.0.1:" + strconv.Itoa(socksPort)
		waitTCP(t, socksAddr, 5*time.Second)
		fetchBlob(t, socksHTTPClient(t, socksAddr, site.Roots), "http://"+site.HTTPAddr+"/blob", site.Sum)
	})
}

// xhttpLink turns l into a type=xhttp link with the given parameters.
func xhttpLink(l vlessLink, path, mode, budget string) string {
	u, _ := url.Parse(l.String())
	q := u.Query()
	q.Set("type", "xhttp")
	q.Del("flow")
	q.Set("path", path)
	q.Set("mode", mode)
	if budget != "" {
		q.Set("budget", budget)
	}
	u.RawQuery = q.Encode()
	return u.String()
}

// TestBurrowXHTTPClientXrayServer: `burrow connect` with a type=xhttp link
// reaches the sites through Xray's XHTTP server, in packet-up and
// stream-up; with budget= set it warns and streams without rotating (Xray
// does not resume downloads).
func TestBurrowXHTTPClientXrayServer(t *testing.T) {
	cover := startCover(t)
	site := startContent(t)
	keys := newRealityKeys(t)
	srv := xrayServer{
		Port: freePort(t), UUID: newUUID(t), PrivateKey: keys.Private, ShortID: newShortID(t),
		Target: cover.Addr, SNI: coverSNI,
	}
	startXray(t, xrayXHTTPServerConfig(t, srv, "/xh"))
	waitTCP(t, "127.0.0.1:"+strconv.Itoa(srv.Port), 5*time.Second)
	base := vlessLink{
		UUID: srv.UUID, Host: "127.0.0.1", Port: srv.Port, Security: "reality", Type: "tcp",
		SNI: coverSNI, Fingerprint: "chrome", PublicKey: keys.Public, ShortID: srv.ShortID, Name: "xray-xhttp",
	}
	for _, tc := range []struct{ name, mode, budget string }{
		{"packet-up", "packet-up", ""},
		{"stream-up", "stream-up", ""},
		{"budget ignored", "packet-up", "12288"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			socksAddr := "127.0.0.1:" + strconv.Itoa(freePort(t))
			p := startBurrow(t, "connect", xhttpLink(base, "/xh", tc.mode, tc.budget), "--socks", socksAddr, "--http", "")
			p.waitListening(t, socksAddr)
			hc := socksHTTPClient(t, socksAddr, site.Roots)
			fetchBlob(t, hc, "http://"+site.HTTPAddr+"/blob", site.Sum)
			fetchBlob(t, hc, "https://"+site.HTTPSAddr+"/blob", site.Sum)
		})
	}
}
