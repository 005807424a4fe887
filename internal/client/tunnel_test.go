package client

import (
	"context"
	"errors"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/burrow-vpn/burrow/internal/links"
)

// TestTunnelState runs handshakes against a real server through a dial hook
// that can refuse: a tunnel that never connected stays connecting after a
// failure (with the failure in LastError), a connected one turns retrying on
// a failure, and a success clears LastError.
func TestTunnelState(t *testing.T) {
	bed := startBed(t)
	var down atomic.Bool
	errDown := errors.New("network down")
	l := bed.link
	tun, err := NewTunnel(&l, TunnelOptions{Dial: func(ctx context.Context, network, address string) (net.Conn, error) {
		if down.Load() {
			return nil, errDown
		}
		var d net.Dialer
		return d.DialContext(ctx, network, address)
	}})
	if err != nil {
		t.Fatal(err)
	}
	defer tun.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	for i, step := range []struct {
		down    bool
		want    State
		wantErr bool
	}{
		{down: true, want: StateConnecting, wantErr: true},
		{down: false, want: StateConnected},
		{down: true, want: StateRetrying, wantErr: true},
		{down: true, want: StateRetrying, wantErr: true},
		{down: false, want: StateConnected},
	} {
		down.Store(step.down)
		probeErr := tun.Probe(ctx)
		if (probeErr != nil) != step.down {
			t.Fatalf("step %d: Probe() = %v, want failure %v", i, probeErr, step.down)
		}
		if got := tun.State(); got != step.want {
			t.Errorf("step %d (down %v): State() = %v, want %v", i, step.down, got, step.want)
		}
		if got := tun.LastError(); (got != nil) != step.wantErr || step.wantErr && !errors.Is(got, errDown) {
			t.Errorf("step %d (down %v): LastError() = %v, want error %v", i, step.down, got, step.wantErr)
		}
	}
}

// TestNewTunnelRefusesBadOptions: options out of range are errors at
// construction, not surprises at the first dial.
func TestNewTunnelRefusesBadOptions(t *testing.T) {
	for _, tc := range []struct {
		name string
		opts TunnelOptions
		want string
	}{
		{"negative MaxConns", TunnelOptions{MaxConns: -1}, "MaxConns -1"},
		{"Budget below -1", TunnelOptions{Budget: -2}, "Budget -2"},
	} {
		_, err := NewTunnel(&links.VLESS{Host: "127.0.0.1", Port: 443, Type: links.TypeTCP}, tc.opts)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: NewTunnel() = %v, want an error naming %q", tc.name, err, tc.want)
		}
	}
}

// TestNewTunnelKeepsCopies: changing the link or the options after
// NewTunnel does not change the tunnel.
func TestNewTunnelKeepsCopies(t *testing.T) {
	l := &links.VLESS{Host: "127.0.0.1", Port: 443, Type: links.TypeTCP, Flow: links.FlowVision,
		PublicKey: make([]byte, 32)}
	opts := TunnelOptions{NoMux: true}
	tun, err := NewTunnel(l, opts)
	if err != nil {
		t.Fatal(err)
	}
	l.TCPMux, l.Port, l.PublicKey[0] = true, 1, 1
	opts.NoMux = false
	if tun.useMux() {
		t.Error("useMux() = true after the caller set TCPMux on its link, want false (NoMux at construction)")
	}
	if got, want := tun.Server(), "127.0.0.1:443"; got != want {
		t.Errorf("Server() = %q, want %q", got, want)
	}
	if tun.link.PublicKey[0] != 0 {
		t.Error("the tunnel's public key changed with the caller's link")
	}
}
