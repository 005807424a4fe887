package main

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"sync"

	"github.com/burrow-vpn/burrow/internal/atomicfile"
	"github.com/burrow-vpn/burrow/internal/camo"
	"github.com/burrow-vpn/burrow/internal/control"
	"github.com/burrow-vpn/burrow/internal/relay"
	"github.com/burrow-vpn/burrow/internal/relaylink"
)

// fleetExitsFile keeps, in a fleet relay's data dir, the exits the control
// plane last gave it (their relay tokens, which hold the relay's
// credential: mode 0600), so the relay serves after a restart with the
// control plane away. It holds nothing about users.
const fleetExitsFile = "fleet-exits.json"

// fleetRelay is a relay's side of a fleet (relay.Config.Join): a follower
// that holds no users (the control plane sends a relay none), learns the
// exits with a relay path to this relay and its credential at them, and
// reloads the relay with them.
type fleetRelay struct {
	f   *control.Follower
	tok *control.Token
	dir string
	r   *relay.Relay // set before start
	log *slog.Logger

	mu    sync.Mutex
	cfg   *relay.Config // guarded by mu: relay.json as last read
	exits []string      // guarded by mu: the exits' tokens now applied
}

func newFleetRelay(dir string, cfg *relay.Config, log *slog.Logger, running func() *relay.Relay) (*fleetRelay, error) {
	tok, err := control.ParseToken(cfg.Join)
	if err != nil {
		return nil, fmt.Errorf("join token in the config: %w", err)
	}
	if tok.Role != control.RoleRelay {
		return nil, fmt.Errorf("join token is for a %s, not a relay", tok.Role)
	}
	n := &fleetRelay{tok: tok, dir: dir, cfg: cfg, log: log.With("part", "fleet")}
	if n.exits, err = loadFleetExits(dir); err != nil {
		return nil, err
	}
	n.f, err = control.NewFollower(control.FollowerConfig{
		Addr: tok.Addr,
		Camo: camo.ClientConfig{ServerName: tok.SNI, PublicKey: tok.PublicKey[:], ShortID: tok.ShortID[:],
			Fingerprint: tok.Fingerprint},
		Key:      tok.Key,
		Endpoint: control.Endpoint{Addr: net.JoinHostPort(cfg.PublicAddr, portOf(cfg.Listen)), SNI: cfg.SNI},
		Peers:    n.setPeers,
		Status:   func() control.NodeStatus { return relayStatus(running()) },
		Logger:   n.log,
	})
	if err != nil {
		return nil, err
	}
	return n, nil
}

// relayStatus is what a fleet relay reports to the control plane (`burrow
// control nodes`): its bytes, and in HEALTH how many of its exits are up.
func relayStatus(r *relay.Relay) control.NodeStatus {
	st := r.Stats()
	health := "ok"
	switch up, total := r.ExitsUp(); {
	case total == 0:
		health = "no exits (burrow control path add RELAY EXIT)"
	case up < total:
		health = fmt.Sprintf("%d of %d exits up", up, total)
	}
	return control.NodeStatus{Version: version, BytesUp: st.BytesUp.Load(), BytesDown: st.BytesDown.Load(), Health: health}
}

// config is the relay's running configuration: relay.json with the exits
// from the control plane.
func (n *fleetRelay) config() *relay.Config {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.cfg.WithExits(n.exits)
}

// setConfig applies a reread relay.json (its cover, budget, pool size)
// with the current exits.
func (n *fleetRelay) setConfig(cfg *relay.Config) error {
	n.mu.Lock()
	eff := cfg.WithExits(n.exits)
	n.mu.Unlock()
	if err := n.r.Reload(eff); err != nil {
		return err
	}
	n.mu.Lock()
	n.cfg = cfg
	n.mu.Unlock()
	return nil
}

// setPeers applies the exits the control plane says this relay fronts.
func (n *fleetRelay) setPeers(p *control.Peers) {
	var exits []string
	for _, e := range p.Exits {
		t, err := n.exitToken(e)
		if err != nil {
			n.log.Warn("exit left out", "exit", e.Name, "err", err)
			continue
		}
		exits = append(exits, t)
	}
	n.mu.Lock()
	same := slices.Equal(exits, n.exits)
	eff := n.cfg.WithExits(exits)
	n.mu.Unlock()
	if same {
		return
	}
	if err := n.r.Reload(eff); err != nil {
		n.log.Warn("exits from the control plane not applied; the running ones are kept", "err", err)
		return
	}
	n.mu.Lock()
	n.exits = exits
	n.mu.Unlock()
	if err := saveFleetExits(n.dir, exits); err != nil {
		n.log.Warn("cannot keep the exits for a restart", "err", err)
	}
	n.log.Info("exits from the control plane applied", "exits", len(exits))
}

// exitToken is the relay token for exit e: its endpoint, this relay's
// short ID and its credential there.
func (n *fleetRelay) exitToken(e control.PeerExit) (string, error) {
	ep := e.Endpoint
	if ep.Cover == "" {
		return "", errors.New("the exit registered no cover (an older burrow?)")
	}
	pub, err := base64.RawURLEncoding.DecodeString(ep.PublicKey)
	if err != nil || len(pub) != 32 {
		return "", errors.New("bad public key")
	}
	t := relaylink.Token{Name: n.tok.Name, Addr: ep.Addr, ShortID: n.tok.ShortID, SNI: ep.SNI, Cover: ep.Cover,
		Fingerprint: ep.Fingerprint, Secret: e.Secret}
	copy(t.PublicKey[:], pub)
	s := t.String()
	if _, err := relaylink.ParseToken(s); err != nil {
		return "", err
	}
	return s, nil
}

// start follows the control plane until ctx ends; wait for done.
func (n *fleetRelay) start(ctx context.Context) (done <-chan struct{}) {
	ch := make(chan struct{})
	go func() { n.f.Run(ctx); close(ch) }()
	return ch
}

type fleetExits struct {
	Exits []string `json:"exits"`
}

func loadFleetExits(dir string) ([]string, error) {
	b, err := os.ReadFile(filepath.Join(dir, fleetExitsFile))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("fleet exits: %w", err)
	}
	var fe fleetExits
	if err := json.Unmarshal(b, &fe); err != nil {
		return nil, fmt.Errorf("%s: %w", fleetExitsFile, err)
	}
	for i, s := range fe.Exits {
		if _, err := relaylink.ParseToken(s); err != nil {
			return nil, fmt.Errorf("%s: exit %d: %w", fleetExitsFile, i+1, err)
		}
	}
	return fe.Exits, nil
}

func saveFleetExits(dir string, exits []string) error {
	b, err := json.MarshalIndent(fleetExits{Exits: exits}, "", "  ")
	if err != nil {
		return err
	}
	return atomicfile.Write(filepath.Join(dir, fleetExitsFile), append(b, '\n'), 0o600)
}
