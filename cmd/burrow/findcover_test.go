package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"net/netip"
	"strings"
	"testing"

	"github.com/burrow-vpn/burrow/internal/coversite"
)

// `server find-cover` scans only a block the operator names, reports the
// HTTPS sites it finds with why each cannot serve (--all), and exits 1 when
// none can. (internal/coverscan tests the verdicts one by one.)
func TestServerFindCover(t *testing.T) {
	var out, errb bytes.Buffer
	err := run(context.Background(), []string{"server", "find-cover"}, &out, &errb)
	if err == nil || !strings.Contains(err.Error(), "--near ADDR is required") {
		t.Fatalf("without --near: %v; it must not pick a block by itself", err)
	}
	if strings.Contains(out.String(), "Scanning") {
		t.Fatalf("without --near it scanned: %s", out.String())
	}
	for _, bad := range [][]string{{"--near", "127.0.0.1", "--bits", "16"}, {"--near", "::1"}, {"--near", "nonsense"}, {"--near", "127.0.0.1", "--port", "0"},
		{"--near", "127.0.0.1", "--bits", "32"}, {"--near", "127.0.0.1", "--parallel", "-1"}, {"--near", "127.0.0.1", "--timeout", "-1s"}} {
		if err := run(context.Background(), append([]string{"server", "find-cover"}, bad...), &out, &errb); err == nil {
			t.Errorf("find-cover %v took it", bad)
		}
	}

	// A site in a block of loopback of its own: a self-signed stand-in,
	// which no system root trusts.
	base := netip.AddrFrom4([4]byte{127, 67, byte(mrand.IntN(250) + 1), 0})
	site, err := coversite.Start(netip.AddrPortFrom(base.Next().Next(), 0).String(), "stand-in.test")
	if err != nil {
		t.Skipf("no 127.67.0.0/16 on lo here: %v", err)
	}
	defer site.Close()
	port := netip.MustParseAddrPort(site.Addr).Port()
	out.Reset()
	err = run(context.Background(), []string{"server", "find-cover", "--near", base.Next().String(), "--bits", "29",
		"--port", fmt.Sprint(port), "--all", "--timeout", "10s"}, &out, &errb)
	var ee exitError
	if !errors.As(err, &ee) || ee.code != 1 {
		t.Fatalf("find-cover with no usable site: %v, want exit 1\n%s", err, out.String())
	}
	for _, want := range []string{"1 HTTPS sites answered, 0 can serve as a cover", site.Addr, "stand-in.test", "does not verify", "No neighbour can serve", "--bits 27 or 20"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}
}
