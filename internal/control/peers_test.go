package control

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/hex"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"testing"
	"time"

	"github.com/burrow-vpn/burrow/internal/access"
	"github.com/burrow-vpn/burrow/internal/camo"
)

// peerFollower follows tp as node n with no replica (a relay, or an exit
// watched for its peers only) and sends each Peers it gets to the channel.
func peerFollower(t *testing.T, tp *testPlane, n *Node, ep Endpoint) <-chan *Peers {
	t.Helper()
	ch := make(chan *Peers, 100)
	f, err := NewFollower(FollowerConfig{
		Addr:     tp.addr,
		Camo:     camo.ClientConfig{ServerName: testSNI, PublicKey: tp.pub, ShortID: n.ShortID[:]},
		Key:      n.PrivateKey,
		Endpoint: ep,
		Peers:    func(p *Peers) { ch <- p },
		Logger:   slog.New(slog.NewTextHandler(t.Output(), nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { f.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	return ch
}

// nextPeers waits for peers that satisfy ok.
func nextPeers(t *testing.T, ch <-chan *Peers, what string, ok func(*Peers) bool) *Peers {
	t.Helper()
	deadline := time.After(30 * time.Second)
	for {
		select {
		case p := <-ch:
			if ok(p) {
				return p
			}
		case <-deadline:
			t.Fatalf("%s: not seen in 30 s", what)
		}
	}
}

// TestSyncRelayPeers: a relay learns the exits it has a path to and its
// credential at them, each such exit learns the relay with the same
// credential, and removing the path or revoking the relay takes it back
// from both.
func TestSyncRelayPeers(t *testing.T) {
	ctx := context.Background()
	st := openTestStore(t)
	tp := startPlane(t, st)
	exit, err := st.CreateNode(ctx, "exit-1", RoleExit)
	if err != nil {
		t.Fatal(err)
	}
	other, err := st.CreateNode(ctx, "exit-2", RoleExit)
	if err != nil {
		t.Fatal(err)
	}
	rl, err := st.CreateNode(ctx, "relay-1", RoleRelay)
	if err != nil {
		t.Fatal(err)
	}
	ep := Endpoint{Addr: "127.0.0.1:7443", SNI: testSNI, PublicKey: b64(tp.pub), ShortID: "0123456789abcdef", Cover: "127.0.0.1:9443"}
	if err := st.AddRelayPath(ctx, rl.ID, exit.ID); err != nil {
		t.Fatal(err)
	}
	want := RelaySecret(tp.ident, rl, exit.ID)
	// The exits register their endpoint after the relay started: that is
	// logged (node-changed), so the relay learns it at once.
	relayCh := peerFollower(t, tp, rl, Endpoint{Addr: "127.0.0.1:5443"})
	nextPeers(t, relayCh, "the relay's first peers", func(*Peers) bool { return true })
	exitCh, otherCh := peerFollower(t, tp, exit, ep), peerFollower(t, tp, other, ep)

	p := nextPeers(t, relayCh, "the relay's exit", func(p *Peers) bool { return len(p.Exits) == 1 })
	if p.Exits[0].ID != exit.ID || p.Exits[0].Endpoint != ep || p.Exits[0].Secret != want {
		t.Errorf("relay peers = %+v, want exit %d at %+v with secret %x", p, exit.ID, ep, want)
	}
	p = nextPeers(t, exitCh, "the exit's relay", func(p *Peers) bool { return len(p.Relays) == 1 })
	if r := p.Relays[0]; r.ID != rl.ID || r.ShortID != rl.ShortID || r.Secret != want {
		t.Errorf("exit peers = %+v, want relay %d, short id %x, secret %x", p, rl.ID, rl.ShortID, want)
	}
	if p := nextPeers(t, otherCh, "exit-2's peers", func(*Peers) bool { return true }); len(p.Relays) != 0 {
		t.Errorf("exit-2 without a path was sent relays %+v", p.Relays)
	}

	if err := st.RemoveRelayPath(ctx, rl.ID, exit.ID); err != nil {
		t.Fatal(err)
	}
	nextPeers(t, relayCh, "the path's removal at the relay", func(p *Peers) bool { return len(p.Exits) == 0 })
	nextPeers(t, exitCh, "the path's removal at the exit", func(p *Peers) bool { return len(p.Relays) == 0 })

	if err := st.AddRelayPath(ctx, rl.ID, exit.ID); err != nil {
		t.Fatal(err)
	}
	nextPeers(t, exitCh, "the path back at the exit", func(p *Peers) bool { return len(p.Relays) == 1 })
	if err := st.RevokeNode(ctx, rl.ID); err != nil {
		t.Fatal(err)
	}
	nextPeers(t, exitCh, "the relay's revocation at the exit", func(p *Peers) bool { return len(p.Relays) == 0 })
}

// TestRelaySecret: the credential depends on the control plane's identity,
// the relay's ID, the exit (one per path) and the relay's key (a rekeyed
// relay gets a new one).
func TestRelaySecret(t *testing.T) {
	_, id1, _ := ed25519.GenerateKey(nil)
	_, id2, _ := ed25519.GenerateKey(nil)
	pub1, _, _ := ed25519.GenerateKey(nil)
	pub2, _, _ := ed25519.GenerateKey(nil)
	n := &Node{ID: 7, PublicKey: pub1}
	base := RelaySecret(id1, n, 3)
	if RelaySecret(id1, n, 3) != base {
		t.Fatal("RelaySecret is not deterministic")
	}
	for what, s := range map[string][16]byte{
		"another control plane": RelaySecret(id2, n, 3),
		"another node ID":       RelaySecret(id1, &Node{ID: 8, PublicKey: pub1}, 3),
		"another exit":          RelaySecret(id1, n, 4),
		"a new key":             RelaySecret(id1, &Node{ID: 7, PublicKey: pub2}, 3),
	} {
		if s == base {
			t.Errorf("%s gives the same secret", what)
		}
	}
}

// TestSyncSendsRelayNoUsers: every answer the control plane gives a relay
// (a snapshot, then the changes after it, users added meanwhile) holds no
// user's UUID, name or subscription token, while an exit's holds them.
func TestSyncSendsRelayNoUsers(t *testing.T) {
	ctx := context.Background()
	st := openTestStore(t)
	_, ident, _ := ed25519.GenerateKey(nil)
	p, err := NewPlane(PlaneConfig{Store: st, Identity: ident, Camo: camo.ServerConfig{PrivateKey: make([]byte, 32), ServerNames: []string{testSNI}, Cover: "127.0.0.1:1"}})
	if err != nil {
		t.Fatal(err)
	}
	rl, err := st.CreateNode(ctx, "relay-1", RoleRelay)
	if err != nil {
		t.Fatal(err)
	}
	ex, err := st.CreateNode(ctx, "exit-1", RoleExit)
	if err != nil {
		t.Fatal(err)
	}
	var users []*access.User
	add := func(name string) {
		u, err := st.CreateUser(ctx, access.NewUser{Name: name})
		if err != nil {
			t.Fatal(err)
		}
		users = append(users, u)
	}
	add("anna-secret-name")
	v, _ := st.Version(ctx)
	add("boris-secret-name")
	if err := st.AddRelayPath(ctx, rl.ID, ex.ID); err != nil {
		t.Fatal(err)
	}
	h := p.routes()
	ask := func(n *Node, target string) []byte {
		req := httptest.NewRequestWithContext(context.WithValue(ctx, nodeKey{}, n), http.MethodGet, target, nil)
		req.Header.Set(headerAuth, signRequest(n.PrivateKey, http.MethodGet, target, time.Now()))
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != http.StatusOK {
			t.Fatalf("%s %s: %d %s", n.Name, target, rec.Code, rec.Body)
		}
		return rec.Body.Bytes()
	}
	after := "/v1/sync?after=" + strconv.FormatInt(v, 10) + "&wait=0&peers=1"
	for _, target := range []string{"/v1/sync?after=0&wait=0", after} {
		relayAns, exitAns := ask(rl, target), ask(ex, target)
		for _, u := range users {
			if target == after && u.Name == "anna-secret-name" {
				continue // before v: not in the exit's answer either
			}
			for what, b := range map[string][]byte{"UUID": []byte(access.FormatUUID(u.UUID)), "UUID (hex)": []byte(hex.EncodeToString(u.UUID[:])),
				"name": []byte(u.Name)} {
				if bytes.Contains(relayAns, b) {
					t.Errorf("%s: the relay was sent user %s's %s", target, u.Name, what)
				}
				if !bytes.Contains(exitAns, b) && what != "UUID (hex)" {
					t.Errorf("%s: the exit was not sent user %s's %s (the search would prove nothing)", target, u.Name, what)
				}
			}
			if tok := []byte(u.SubToken); len(tok) > 0 && (bytes.Contains(relayAns, tok) || bytes.Contains(exitAns, tok)) {
				t.Errorf("%s: a node was sent user %s's subscription token", target, u.Name)
			}
		}
		if !bytes.Contains(relayAns, []byte(`"peers"`)) {
			t.Errorf("%s: the relay's answer has no peers: %s", target, relayAns)
		}
	}
}
