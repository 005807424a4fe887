package tunnels

import (
	"context"
	"crypto/rand"
	"fmt"
	"net"
	"net/netip"

	"github.com/burrow-vpn/burrow/internal/access"
	"github.com/burrow-vpn/burrow/internal/censorlab"
	"github.com/burrow-vpn/burrow/internal/client"
	"github.com/burrow-vpn/burrow/internal/links"
	"github.com/burrow-vpn/burrow/internal/relay"
	"github.com/burrow-vpn/burrow/internal/relaylink"
	"github.com/burrow-vpn/burrow/internal/server"
	"github.com/burrow-vpn/burrow/internal/transport/xhttp"
)

// The relay systems put an entry relay (internal/relay) inside the
// whitelisted network (the cover's own network, at Env.CoverIP) in front of
// an exit in the foreign data centre (Env.IP): the client reaches the relay
// through the censor; the relay→exit leg is outside the censor's view (in
// the netns mode both sit in the servers' namespace).

// BurrowRelayTCP is burrow-tcp through an entry relay.
func BurrowRelayTCP() censorlab.System {
	return censorlab.System{
		Name:    "burrow-relay-tcp",
		Network: "tcp",
		ExpectedFail: map[string]censorlab.Expect{
			"conn-count":         expect(floorNothing, whyCount, "conn-count"),
			"russia-2026":        expect(floorNothing, whyCount, "conn-count"),
			"russia-2026-mobile": expect(floorNothing, whyCount, "conn-count"),
		},
		Start: func(ctx context.Context, env censorlab.Env) (*censorlab.Instance, error) {
			return startRelayed(ctx, env, "burrow-relay-tcp", false)
		},
	}
}

// BurrowRelayXHTTP is burrow-xhttp through an entry relay: the system for
// white-list shutdowns.
func BurrowRelayXHTTP() censorlab.System {
	return censorlab.System{
		Name:    "burrow-relay-xhttp",
		Network: "tcp",
		Start: func(ctx context.Context, env censorlab.Env) (*censorlab.Instance, error) {
			return startRelayed(ctx, env, "burrow-relay-xhttp", true)
		},
	}
}

// memRelays is a one-relay table.
type memRelays struct{ relay access.Relay }

func (m *memRelays) ListRelays(context.Context) ([]*access.Relay, error) {
	r := m.relay
	return []*access.Relay{&r}, nil
}

func (*memRelays) SetRelayAnnounce(context.Context, int64, string, string, string) error { return nil }

// startRelayed starts an exit that lets one relay in, the relay at
// env.CoverIP with the lab's cover as its own, and a client of the relay.
func startRelayed(ctx context.Context, env censorlab.Env, name string, overXHTTP bool) (*censorlab.Instance, error) {
	ip := env.CoverIP
	if !ip.IsValid() || env.ServerDial == nil {
		return nil, fmt.Errorf("%s: the lab gave no address in the cover's network for the relay, or no way to dial from the servers' network", name)
	}
	shortID := []byte{0x7e, 0x1a}
	rl := access.Relay{ID: 1, Name: "lab"}
	rand.Read(rl.ShortID[:])
	rand.Read(rl.Secret[:])
	relays := server.NewRelays(&memRelays{relay: rl}, env.Log)
	if err := relays.Refresh(ctx); err != nil {
		return nil, err
	}
	ls, err := startServerWith(ctx, env, name, shortID, relays)
	if err != nil {
		return nil, err
	}
	tok := relaylink.Token{Name: "lab", Addr: ls.addr.String(), ShortID: rl.ShortID, SNI: env.CoverSNI, Cover: env.Cover, Secret: rl.Secret}
	copy(tok.PublicKey[:], ls.pub)
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", netip.AddrPortFrom(ip, 0).String())
	if err != nil {
		ls.stop()
		return nil, fmt.Errorf("%s: relay listen: %w", name, err)
	}
	cfg := &relay.Config{Listen: ln.Addr().String(), PublicAddr: ip.String(), Exits: []string{tok.String()}, Cover: env.Cover, SNI: env.CoverSNI}
	cfg.Defaults()
	// The exit is reached from the servers' network, the cover (when no
	// exit is up) from wherever the lab's cover lives.
	exitAddr := tok.Addr
	dial := func(ctx context.Context, network, addr string) (net.Conn, error) {
		if addr == exitAddr {
			return env.ServerDial(ctx, network, addr)
		}
		var d net.Dialer
		return d.DialContext(ctx, network, addr)
	}
	r, err := relay.New(cfg, relay.Options{Logger: env.Log, Dial: dial})
	if err != nil {
		ln.Close()
		ls.stop()
		return nil, fmt.Errorf("%s: relay: %w", name, err)
	}
	rctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	served := make(chan struct{})
	go func() {
		defer close(served)
		r.Serve(rctx, ln)
	}()
	link := &links.VLESS{
		UUID: ls.uuid, SNI: env.CoverSNI, Fingerprint: "chrome", PublicKey: ls.pub, ShortID: shortID,
		Flow: links.FlowVision, Type: links.TypeTCP, Security: links.SecurityReality, Encryption: links.EncryptionNone,
	}
	if overXHTTP {
		link.Flow, link.Type = "", links.TypeXHTTP
		link.XHTTP = &links.XHTTP{Mode: links.ModePacketUp, Path: "/assets/lab", Budget: xhttp.DefaultBudget}
	}
	tuns := newTunnelCache(func(via netip.AddrPort) (*client.Tunnel, error) {
		l := *link
		l.Host, l.Port = via.Addr().String(), via.Port()
		return client.NewTunnel(&l, client.TunnelOptions{Dial: env.ClientDial})
	})
	return &censorlab.Instance{
		Server:  ln.Addr().(*net.TCPAddr).AddrPort(),
		EndCell: tuns.endCell,
		Close: func() error {
			tuns.closeAll()
			cancel()
			<-served
			r.Close()
			ls.stop()
			return nil
		},
		Dial: tuns.dial,
	}, nil
}
