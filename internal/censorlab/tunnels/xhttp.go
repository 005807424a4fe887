package tunnels

import (
	"context"
	"net/netip"

	"github.com/burrow-vpn/burrow/internal/censorlab"
	"github.com/burrow-vpn/burrow/internal/client"
	"github.com/burrow-vpn/burrow/internal/links"
	"github.com/burrow-vpn/burrow/internal/transport/xhttp"
)

// BurrowXHTTP is VLESS over XHTTP (HTTP/2 over REALITY) from a link as
// `burrow user add` writes it (budget=12288, which the client no longer
// rotates at): at most 2 TCP connections at once, rotated only below the
// budget of a freeze the client has seen (internal/client/learn.go): the
// transport for freezes and connection counting.
func BurrowXHTTP() censorlab.System {
	return censorlab.System{
		Name:    "burrow-xhttp",
		Network: "tcp",
		ExpectedFail: map[string]censorlab.Expect{
			"byte-budget":        expect(floorAll, whyLearn, "byte-budget"),
			"russia-2026":        expect(floorAll, whyLearn, "byte-budget"),
			"sni-whitelist":      expect(floorNothing, whyWhitelist, censorlab.RuleWhitelist),
			"russia-2026-mobile": expect(floorNothing, whyWhitelist, censorlab.RuleWhitelist),
		},
		Start: startXHTTP,
	}
}

// whyLearn is why the freeze fires on burrow-xhttp: the client learns it.
const whyLearn = "the client learns the freeze from its first two frozen connections (their transfers resume " +
	"on fresh ones, nothing is lost) and rotates below it from then on, pacing the new connections under the " +
	"conn-rate rule; rotating before any freeze is seen would open a connection every ~12 KiB on every network"

func startXHTTP(ctx context.Context, env censorlab.Env) (*censorlab.Instance, error) {
	shortID := []byte{0x5e, 0x11}
	env = withNeighborCover(env)
	ls, err := startServer(ctx, env, "burrow-xhttp", shortID)
	if err != nil {
		return nil, err
	}
	tuns := newTunnelCache(func(via netip.AddrPort) (*client.Tunnel, error) {
		return client.NewTunnel(&links.VLESS{
			UUID: ls.uuid, Host: via.Addr().String(), Port: via.Port(), SNI: env.CoverSNI,
			Fingerprint: "chrome", PublicKey: ls.pub, ShortID: shortID,
			Type: links.TypeXHTTP, Security: links.SecurityReality, Encryption: links.EncryptionNone,
			XHTTP: &links.XHTTP{Mode: links.ModePacketUp, Path: "/assets/lab", Budget: xhttp.DefaultBudget},
		}, client.TunnelOptions{
			// The transport dials warm-up and rotation connections
			// from its own goroutines: they must leave from the
			// client's network too.
			Dial: env.ClientDial,
		})
	})
	return &censorlab.Instance{
		Server:  ls.addr,
		EndCell: tuns.endCell,
		Close: func() error {
			tuns.closeAll()
			ls.stop()
			return nil
		},
		Dial: tuns.dial,
	}, nil
}
