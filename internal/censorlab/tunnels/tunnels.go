// Package tunnels puts Burrow's own transports into the censor lab as
// censorlab.Systems: a real server (internal/server, REALITY splicing to
// the lab's cover site) and a real client (internal/client) per system,
// named "burrow-<transport>". New transports add a function here and to
// All, with the scenarios they cannot survive yet in ExpectedFail and why.
//
// It is kept apart from censorlab so the middleboxes and baselines do not
// depend on Burrow's server and client: censorlab imports only tlshello,
// camo (the cover check) and coversite.
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
)

// All returns every Burrow system the lab runs on loopback: Direct and
// Relayed.
func All() []censorlab.System { return append(Direct(), Relayed()...) }

// Direct returns the systems whose client reaches the server itself. They
// are also the Burrow systems of the netns lab (censorlab.NetnsPath): the
// relay systems' relay sits in the cover's network, which exists on
// loopback only (in the netns plan the censor could not reach it).
func Direct() []censorlab.System {
	return []censorlab.System{BurrowTCP(), BurrowXHTTP()}
}

// Relayed returns the systems whose client reaches an entry relay (relay.go).
func Relayed() []censorlab.System {
	return []censorlab.System{BurrowRelayTCP(), BurrowRelayXHTTP()}
}

// Known weaknesses of one TCP connection per proxied connection.
const (
	whyFreeze = "one TCP connection carries the whole 4 MiB download; the freeze stops it at 16 KiB. " +
		"Use the transport that rotates connections before the budget (burrow-xhttp)"
	whyCount = "each proxied connection is its own TCP connection to the server, so a page load opens " +
		"more than 4 at once. Use burrow-xhttp (sessions multiplexed over at most 3 connections)"
	whyWhitelist = "whitelist mode passes only listed names towards their own networks, and the server " +
		"is not in the cover's network. Use an entry relay inside a whitelisted network (burrow-relay-xhttp)"
)

// BurrowTCP is VLESS + REALITY + XTLS Vision over one TCP connection per
// proxied connection, the Xray-compatible default.
func BurrowTCP() censorlab.System {
	return censorlab.System{
		Name:    "burrow-tcp",
		Network: "tcp",
		ExpectedFail: map[string]string{
			"byte-budget":        whyFreeze,
			"conn-count":         whyCount,
			"sni-whitelist":      whyWhitelist,
			"russia-2026":        whyFreeze + "; and " + whyCount,
			"russia-2026-mobile": whyWhitelist,
		},
		Start: startTCP,
	}
}

// memUsers is a one-user store.
type memUsers struct {
	mu   sync.Mutex
	user access.User
}

func (m *memUsers) ListUsers(context.Context) ([]*access.User, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	u := m.user
	return []*access.User{&u}, nil
}

func (m *memUsers) AddTraffic(_ context.Context, d map[int64]access.Traffic, _ string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, t := range d {
		m.user.BytesUp += t.Up
		m.user.BytesDown += t.Down
	}
	return nil
}

func (*memUsers) ResetTraffic(context.Context, int64, time.Time) error { return nil }

// labServer is a Burrow server started for one lab run: a single user, a
// fresh key pair, listening on the lab's server address.
type labServer struct {
	addr netip.AddrPort
	uuid [16]byte
	pub  []byte
	stop func() // stops serving and waits for it
}

// startServer starts the server every Burrow system of the lab runs; name
// prefixes its errors.
func startServer(ctx context.Context, env censorlab.Env, name string, shortID []byte) (*labServer, error) {
	return startServerWith(ctx, env, name, shortID, nil)
}

// startServerWith is startServer for an exit that also lets relays in.
func startServerWith(ctx context.Context, env censorlab.Env, name string, shortID []byte, relays *server.Relays) (*labServer, error) {
	priv, pub, err := camo.GenerateKey()
	if err != nil {
		return nil, err
	}
	var uuid [16]byte
	rand.Read(uuid[:])
	users := &memUsers{user: access.User{ID: 1, Name: "lab", UUID: uuid, Reset: "never", CreatedAt: time.Now()}}
	reg := server.NewRegistry(users, env.Log)
	if err := reg.Refresh(ctx); err != nil {
		return nil, fmt.Errorf("%s: users: %w", name, err)
	}
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", netip.AddrPortFrom(env.IP, 0).String())
	if err != nil {
		return nil, fmt.Errorf("%s: listen: %w", name, err)
	}
	addr := ln.Addr().(*net.TCPAddr).AddrPort()
	cfg := &server.Config{
		Listen:             addr.String(),
		Cover:              env.Cover,
		ServerNames:        []string{env.CoverSNI},
		PublicAddr:         addr.Addr().String(),
		PrivateKey:         server.EncodeKey(priv),
		PublicKey:          server.EncodeKey(pub),
		ShortIDs:           []string{fmt.Sprintf("%x", shortID)},
		AllowPrivateEgress: true, // the lab's site is on loopback
	}
	cfg.Defaults()
	if err := cfg.Validate(); err != nil {
		ln.Close()
		return nil, fmt.Errorf("%s: config: %w", name, err)
	}
	srv, err := server.New(cfg, reg, env.Log, server.Options{Listener: ln, ShutdownGrace: 100 * time.Millisecond, Relays: relays})
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
	return &labServer{addr: addr, uuid: uuid, pub: pub, stop: func() { cancel(); <-done }}, nil
}

func startTCP(ctx context.Context, env censorlab.Env) (*censorlab.Instance, error) {
	shortID := []byte{0x1a, 0xb2}
	ls, err := startServer(ctx, env, "burrow-tcp", shortID)
	if err != nil {
		return nil, err
	}
	return &censorlab.Instance{
		Server: ls.addr,
		Close: func() error {
			ls.stop()
			return nil
		},
		Dial: func(ctx context.Context, via netip.AddrPort, target string) (net.Conn, error) {
			t, err := client.NewTunnel(&links.VLESS{
				UUID: ls.uuid, Host: via.Addr().String(), Port: via.Port(), SNI: env.CoverSNI,
				Fingerprint: "chrome", PublicKey: ls.pub, ShortID: shortID, Flow: links.FlowVision,
				Type: links.TypeTCP, Security: links.SecurityReality, Encryption: links.EncryptionNone,
			}, client.TunnelOptions{})
			if err != nil {
				return nil, err
			}
			return t.DialContext(ctx, "tcp", target)
		},
	}, nil
}
