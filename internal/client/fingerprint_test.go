package client

import (
	"context"
	"strings"
	"testing"
	"time"
)

// TestFingerprintNames: a link with any fp= name Xray-core's links use gets a working
// handshake with the closest browser hello we ship; a name known to no one is refused when
// the tunnel is made, naming the valid ones, rather than failing every handshake.
func TestFingerprintNames(t *testing.T) {
	bed := startBed(t)
	for _, fp := range []string{"android", "qq", "360", "randomized", "randomizednoalpn", "hellofirefox_99", "helloios_13", "edge"} {
		l := bed.link
		l.Fingerprint = fp
		tun, err := NewTunnel(&l, TunnelOptions{})
		if err != nil {
			t.Errorf("NewTunnel(fp=%s) = %v", fp, err)
			continue
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		if err := tun.Probe(ctx); err != nil {
			t.Errorf("Probe with fp=%s: %v", fp, err)
		}
		cancel()
		tun.Close()
	}
	l := bed.link
	l.Fingerprint = "opera"
	if _, err := NewTunnel(&l, TunnelOptions{}); err == nil || !strings.Contains(err.Error(), "want one of chrome, firefox") {
		t.Errorf("NewTunnel(fp=opera) = %v, want an error listing the valid names", err)
	}
}
