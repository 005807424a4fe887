package tunnels

import (
	"context"
	"crypto/rand"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/burrow-vpn/burrow/internal/access"
	"github.com/burrow-vpn/burrow/internal/camo"
	"github.com/burrow-vpn/burrow/internal/censorlab"
	"github.com/burrow-vpn/burrow/internal/client"
	"github.com/burrow-vpn/burrow/internal/links"
	"github.com/burrow-vpn/burrow/internal/server"
	"github.com/burrow-vpn/burrow/internal/transport/xhttp"
)

// BurrowXHTTP is VLESS over XHTTP (HTTP/2 over REALITY) with connection
// rotation at the default budget (12 KiB towards the client per TCP
// connection) and at most 3 TCP connections at once: the transport for the
// 16 KiB freeze and connection counting.
func BurrowXHTTP() censorlab.System {
	return censorlab.System{
		Name:    "burrow-xhttp",
		Network: "tcp",
		ExpectedFail: map[string]string{
			"sni-whitelist": whyWhitelist,
		},
		Start: startXHTTP,
	}
}

func startXHTTP(ctx context.Context, env censorlab.Env) (*censorlab.Instance, error) {
	priv, pub, err := camo.GenerateKey()
	if err != nil {
		return nil, err
	}
	var uuid [16]byte
	rand.Read(uuid[:])
	shortID := []byte{0x5e, 0x11}
	users := &memUsers{user: access.User{ID: 1, Name: "lab", UUID: uuid, Reset: "never", CreatedAt: time.Now()}}
	reg := server.NewRegistry(users, env.Log)
	if err := reg.Refresh(ctx); err != nil {
		return nil, fmt.Errorf("burrow-xhttp: users: %w", err)
	}
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", netip.AddrPortFrom(env.IP, 0).String())
	if err != nil {
		return nil, fmt.Errorf("burrow-xhttp: listen: %w", err)
	}
	addr := ln.Addr().(*net.TCPAddr).AddrPort()
	cfg := &server.Config{
		Listen: addr.String(), Cover: env.Cover, ServerNames: []string{env.CoverSNI},
		PublicAddr: addr.Addr().String(), PrivateKey: server.EncodeKey(priv), PublicKey: server.EncodeKey(pub),
		ShortIDs: []string{fmt.Sprintf("%x", shortID)}, AllowPrivateEgress: true, // the lab's site is on loopback
	}
	cfg.Defaults()
	if err := cfg.Validate(); err != nil {
		ln.Close()
		return nil, fmt.Errorf("burrow-xhttp: config: %w", err)
	}
	srv, err := server.New(cfg, reg, env.Log, server.Options{Listener: ln, ShutdownGrace: 100 * time.Millisecond})
	if err != nil {
		ln.Close()
		return nil, err
	}
	sctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	done := make(chan struct{})
	go func() {
		defer close(done)
		srv.Serve(sctx, ln)
	}()
	// One tunnel per route to the server, shared by the cell's dials, as
	// one `burrow connect` shares it between applications.
	var mu sync.Mutex
	tuns := map[netip.AddrPort]*client.Tunnel{}
	return &censorlab.Instance{
		Server: addr,
		Close: func() error {
			mu.Lock()
			for _, t := range tuns {
				t.Close()
			}
			mu.Unlock()
			cancel()
			<-done
			return nil
		},
		Dial: func(ctx context.Context, via netip.AddrPort, target string) (net.Conn, error) {
			mu.Lock()
			t := tuns[via]
			if t == nil {
				t, err = client.NewTunnel(&links.VLESS{
					UUID: uuid, Host: via.Addr().String(), Port: via.Port(), SNI: env.CoverSNI,
					Fingerprint: "chrome", PublicKey: pub, ShortID: shortID,
					Type: links.TypeXHTTP, Security: links.SecurityReality, Encryption: links.EncryptionNone,
					XHTTP: &links.XHTTP{Mode: links.ModePacketUp, Path: "/assets/lab", Budget: xhttp.DefaultBudget},
				})
				if err != nil {
					mu.Unlock()
					return nil, err
				}
				// The transport dials warm-up and rotation connections
				// from its own goroutines: they must leave from the
				// client's network too.
				t.Dial = env.ClientDial
				tuns[via] = t
			}
			mu.Unlock()
			return t.DialContext(ctx, "tcp", target)
		},
	}, nil
}
