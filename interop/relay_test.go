package interop

import (
	"bufio"
	"context"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestXrayClientThroughBurrowRelay: an Xray-core client, configured only
// from the link `burrow user show --via` prints, reaches the loopback sites
// through `burrow relay run` in front of `burrow server run`, on the tcp
// (Vision) and xhttp transports, TCP and UDP.
func TestXrayClientThroughBurrowRelay(t *testing.T) {
	cover := startCover(t)
	site := startContent(t)
	echo := startUDPEcho(t)
	exitData, relayData := t.TempDir(), t.TempDir()
	exitAddr := "127.0.0.1:" + strconv.Itoa(freePort(t))
	relayAddr := "127.0.0.1:" + strconv.Itoa(freePort(t))
	mustRun := func(args ...string) string {
		t.Helper()
		stdout, stderr, err := runBurrow(t, args...)
		if err != nil {
			if unknownCommand(stdout + stderr) {
				notReady(t, "burrow %s: not implemented yet: %s", args[0], firstLine(stdout+stderr))
			}
			t.Fatalf("burrow %s: %v\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), err, stdout, stderr)
		}
		return stdout
	}
	mustRun("server", "init", "--data", exitData, "--listen", exitAddr, "--cover", cover.Addr, "--sni", coverSNI,
		"--public-addr", "127.0.0.1", "--allow-private-egress")
	token := strings.TrimSpace(mustRun("server", "relay-token", "interop", "--data", exitData))
	mustRun("relay", "init", "--data", relayData, "--listen", relayAddr, "--public-addr", "127.0.0.1", "--exit", token,
		"--cover", cover.Addr, "--sni", coverSNI)
	startBurrow(t, "server", "run", "--data", exitData).waitListening(t, exitAddr)
	startBurrow(t, "relay", "run", "--data", relayData).waitListening(t, relayAddr)

	// The tcp link; the xhttp client is configured from it as in
	// TestXrayXHTTPClientBurrowServer (the server takes any path).
	linkVia := func() vlessLink {
		t.Helper()
		out := mustRun("user", "show", "owner", "--data", exitData, "--via", relayAddr)
		sc := bufio.NewScanner(strings.NewReader(out))
		for sc.Scan() {
			if line := strings.TrimSpace(sc.Text()); strings.HasPrefix(line, "vless://") {
				l, err := parseVLESSLink(line)
				if err != nil {
					t.Fatal(err)
				}
				if got := net.JoinHostPort(l.Host, strconv.Itoa(l.Port)); got != relayAddr {
					t.Fatalf("link via the relay points at %s, want the relay %s", got, relayAddr)
				}
				return l
			}
		}
		t.Fatalf("user show --via printed no link:\n%s", out)
		return vlessLink{}
	}

	t.Run("tcp", func(t *testing.T) {
		socksPort := freePort(t)
		startXray(t, xrayClientConfig(t, xrayClientFromLink(socksPort, linkVia())))
		socksAddr := "127.0.0.1:" + strconv.Itoa(socksPort)
		waitTCP(t, socksAddr, 5*time.Second)
		hc := socksHTTPClient(t, socksAddr, site.Roots)
		fetchBlob(t, hc, "http://"+site.HTTPAddr+"/blob", site.Sum)
		fetchBlob(t, hc, "https://"+site.HTTPSAddr+"/blob", site.Sum)
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		got, err := socksUDPExchange(ctx, socksAddr, echo, []byte("ping through the relay"))
		if err != nil || string(got) != "echo:ping through the relay" {
			t.Errorf("udp through the relay = %q, %v; want the echo", got, err)
		}
	})
	t.Run("xhttp", func(t *testing.T) {
		socksPort := freePort(t)
		startXray(t, xrayXHTTPClientConfig(t, xrayClientFromLink(socksPort, linkVia()), "/assets/relay", "packet-up"))
		socksAddr := "127.0.0.1:" + strconv.Itoa(socksPort)
		waitTCP(t, socksAddr, 5*time.Second)
		hc := socksHTTPClient(t, socksAddr, site.Roots)
		fetchBlob(t, hc, "http://"+site.HTTPAddr+"/blob", site.Sum)
		fetchBlob(t, hc, "https://"+site.HTTPSAddr+"/blob", site.Sum)
	})
}
