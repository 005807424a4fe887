package control

import (
	"crypto/ed25519"
	"errors"
	"reflect"
	"testing"
	"time"

	"github.com/burrow-vpn/burrow/internal/access"
)

func TestNodes(t *testing.T) {
	forEach(t, func(t *testing.T, s *SQLStore) {
		ctx := ctxT(t)
		clk := newClock(s)
		ex := mustNode(t, s, "exit-1", RoleExit)
		if len(ex.PrivateKey) != ed25519.PrivateKeySize || !ex.PublicKey.Equal(ex.PrivateKey.Public()) {
			t.Fatalf("CreateNode: key pair does not match")
		}
		if _, err := s.CreateNode(ctx, "EXIT-1", RoleRelay); !errors.Is(err, access.ErrExists) {
			t.Fatalf("CreateNode(same name) = %v, want ErrExists", err)
		}
		if _, err := s.CreateNode(ctx, "x", "bridge"); !errors.Is(err, access.ErrInvalid) {
			t.Fatalf("CreateNode(role bridge) = %v, want ErrInvalid", err)
		}
		got, err := s.NodeByKey(ctx, ex.PublicKey)
		if err != nil || got.ID != ex.ID || got.PrivateKey != nil {
			t.Fatalf("NodeByKey = %+v, %v; want node %d without its private key", got, err, ex.ID)
		}
		re, err := s.RekeyNode(ctx, ex.ID)
		if err != nil {
			t.Fatal(err)
		}
		if re.PublicKey.Equal(ex.PublicKey) || re.ShortID == ex.ShortID {
			t.Fatal("RekeyNode kept the old key or short id")
		}
		if _, err := s.NodeByKey(ctx, ex.PublicKey); !errors.Is(err, access.ErrNotFound) {
			t.Fatalf("NodeByKey(old key) = %v, want ErrNotFound", err)
		}

		ep := Endpoint{Addr: "203.0.113.5:443", SNI: "www.example.com", PublicKey: "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", ShortID: "0123abcd", Fingerprint: "chrome"}
		if err := s.RegisterNode(ctx, ex.ID, ep); err != nil {
			t.Fatal(err)
		}
		for _, bad := range []Endpoint{{Addr: "nohost"}, {Addr: "h:0"}, {Addr: "h:1", SNI: "a b"}, {Addr: "h:1", PublicKey: "short"}, {Addr: "h:1", ShortID: "xyz"}} {
			if err := s.RegisterNode(ctx, ex.ID, bad); !errors.Is(err, access.ErrInvalid) {
				t.Errorf("RegisterNode(%+v) = %v, want ErrInvalid", bad, err)
			}
		}
		clk.add(time.Minute)
		st := NodeStatus{Version: "1.2.3", UsersOnline: 7, BytesUp: 100, BytesDown: 200, AppliedVersion: 4, Health: "ok", LastSeen: time.Unix(1, 0)}
		if err := s.UpdateNodeStatus(ctx, ex.ID, st); err != nil {
			t.Fatal(err)
		}
		got, err = s.NodeByName(ctx, "Exit-1")
		if err != nil {
			t.Fatal(err)
		}
		st.LastSeen = clk.now()
		if got.Endpoint != ep || !reflect.DeepEqual(got.Status, st) {
			t.Fatalf("node = %+v %+v, want %+v %+v", got.Endpoint, got.Status, ep, st)
		}
		if err := s.UpdateNodeStatus(ctx, ex.ID, NodeStatus{UsersOnline: -1}); !errors.Is(err, access.ErrInvalid) {
			t.Fatalf("UpdateNodeStatus(negative) = %v, want ErrInvalid", err)
		}

		rl := mustNode(t, s, "relay-1", RoleRelay)
		v0, _ := s.Version(ctx)
		if err := s.AddRelayPath(ctx, ex.ID, rl.ID); !errors.Is(err, access.ErrInvalid) {
			t.Fatalf("AddRelayPath(exit as relay) = %v, want ErrInvalid", err)
		}
		for range 2 { // the second add is a no-op
			if err := s.AddRelayPath(ctx, rl.ID, ex.ID); err != nil {
				t.Fatal(err)
			}
		}
		paths, _ := s.RelayPaths(ctx)
		if len(paths) != 1 || paths[0].Relay != rl.ID || paths[0].Exit != ex.ID {
			t.Fatalf("RelayPaths = %+v, want relay %d to exit %d", paths, rl.ID, ex.ID)
		}
		if err := s.RevokeNode(ctx, ex.ID); err != nil {
			t.Fatal(err)
		}
		if err := s.RevokeNode(ctx, ex.ID); err != nil {
			t.Fatalf("RevokeNode twice = %v, want nil", err)
		}
		cs := allChanges(t, s, v0)
		if len(cs) != 2 || cs[0].Kind != ChangeRelayPathAdded || cs[0].Node != rl.ID || cs[0].Exit != ex.ID ||
			cs[1].Kind != ChangeNodeRevoked || cs[1].Node != ex.ID {
			t.Fatalf("changes = %+v, want path added then node revoked", cs)
		}
		if paths, _ := s.RelayPaths(ctx); len(paths) != 0 {
			t.Fatalf("relay paths after revoking the exit = %+v, want none", paths)
		}
		for name, err := range map[string]error{
			"rekey":    func() error { _, err := s.RekeyNode(ctx, ex.ID); return err }(),
			"register": s.RegisterNode(ctx, ex.ID, ep),
			"status":   s.UpdateNodeStatus(ctx, ex.ID, st),
			"create":   func() error { _, err := s.CreateNode(ctx, "exit-1", RoleExit); return err }(),
			"remove":   s.RemoveRelayPath(ctx, rl.ID, ex.ID),
		} {
			want := ErrNodeRevoked
			if name == "remove" {
				want = access.ErrNotFound
			}
			if !errors.Is(err, want) {
				t.Errorf("%s on a revoked node = %v, want %v", name, err, want)
			}
		}
		snap, err := s.Snapshot(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(snap.Nodes) != 2 || !snap.Nodes[0].Revoked || !reflect.DeepEqual(snap.Nodes[0].Status, NodeStatus{}) {
			t.Fatalf("snapshot nodes = %+v, want 2 with the first revoked and no status", snap.Nodes)
		}
	})
}

// TestPushTrafficIdempotent: a retried push never counts twice, even when
// the retries race each other.
func TestPushTrafficIdempotent(t *testing.T) {
	forEach(t, func(t *testing.T, s *SQLStore) {
		ctx := ctxT(t)
		n := mustNode(t, s, "exit", RoleExit)
		u := mustUser(t, s, "carol", 0)
		push := func(seq uint64, up int64) bool {
			t.Helper()
			ok, err := s.PushTraffic(ctx, n.ID, seq, map[int64]access.Traffic{u.ID: {Up: up, Down: 2 * up}, 9999: {Up: 1}}, "2026-12-02")
			if err != nil {
				t.Fatal(err)
			}
			return ok
		}
		if !push(1, 10) || push(1, 10) {
			t.Fatal("push 1 then its retry: want applied then not")
		}
		if !push(3, 100) || push(2, 1000) || push(3, 100) {
			t.Fatal("push 3, then 2 (older) and 3 again: want only 3 applied")
		}
		results := make(chan bool, 8)
		for range 8 {
			go func() {
				ok, err := s.PushTraffic(ctx, n.ID, 4, map[int64]access.Traffic{u.ID: {Up: 1000}}, "2026-12-02")
				results <- ok && err == nil
			}()
		}
		applied := 0
		for range 8 {
			if <-results {
				applied++
			}
		}
		if applied != 1 {
			t.Fatalf("8 racing pushes of seq 4: %d applied, want 1", applied)
		}
		got, _ := s.UserByName(ctx, "carol")
		if got.BytesUp != 1110 || got.BytesDown != 220 || got.LastSeenDay != "2026-12-02" {
			t.Fatalf("user counters = %d/%d %s, want 1110/220 2026-12-02", got.BytesUp, got.BytesDown, got.LastSeenDay)
		}
		tot, err := s.NodeTraffic(ctx, n.ID)
		if err != nil {
			t.Fatal(err)
		}
		if len(tot) != 1 || tot[u.ID] != (access.Traffic{Up: 1110, Down: 220}) {
			t.Fatalf("NodeTraffic = %v, want only user %d with 1110/220", tot, u.ID)
		}
		if _, err := s.PushTraffic(ctx, n.ID, 0, nil, "2026-12-02"); !errors.Is(err, access.ErrInvalid) {
			t.Fatalf("PushTraffic(seq 0) = %v, want ErrInvalid", err)
		}
		if _, err := s.PushTraffic(ctx, n.ID, 5, map[int64]access.Traffic{u.ID: {Up: -1}}, "2026-12-02"); !errors.Is(err, access.ErrInvalid) {
			t.Fatalf("PushTraffic(negative) = %v, want ErrInvalid", err)
		}
		if err := s.RevokeNode(ctx, n.ID); err != nil {
			t.Fatal(err)
		}
		if _, err := s.PushTraffic(ctx, n.ID, 9, nil, "2026-12-02"); !errors.Is(err, ErrNodeRevoked) {
			t.Fatalf("PushTraffic(revoked node) = %v, want ErrNodeRevoked", err)
		}
	})
}

// TestLeasesNeverExceedQuota: nodes racing for a user's quota are granted,
// together, at most what is left of it; usage spends leases, returned and
// expired leases are granted again.
func TestLeasesNeverExceedQuota(t *testing.T) {
	forEach(t, func(t *testing.T, s *SQLStore) {
		ctx := ctxT(t)
		clk := newClock(s)
		const quota, slice = 10 << 20, 32 << 10
		u := mustUser(t, s, "dave", quota)
		nodes := []*Node{mustNode(t, s, "n1", RoleExit), mustNode(t, s, "n2", RoleExit), mustNode(t, s, "n3", RoleExit)}
		const racers = 12
		granted := make(chan int64, racers)
		errs := make(chan error, racers)
		for i := range racers { // several racers per node
			n := nodes[i%len(nodes)]
			go func() {
				var sum int64
				for {
					l, err := s.LeaseQuota(ctx, n.ID, u.ID, slice)
					if err != nil {
						errs <- err
						return
					}
					if l.Unlimited {
						errs <- errors.New("lease of a user with a quota came back unlimited")
						return
					}
					if l.Granted == 0 {
						break
					}
					sum += l.Granted
				}
				granted <- sum
				errs <- nil
			}()
		}
		var total int64
		for range racers {
			if err := <-errs; err != nil {
				t.Fatal(err)
			}
			total += <-granted
		}
		if total != quota {
			t.Fatalf("granted %d in all, want exactly the quota %d", total, quota)
		}
		// n1 moves part of its lease (spending it) and returns part unused.
		l, err := s.LeaseQuota(ctx, nodes[0].ID, u.ID, 1)
		if err != nil || l.Granted != 0 {
			t.Fatalf("lease with the quota all leased = %+v, %v; want nothing granted", l, err)
		}
		used := min(l.Outstanding, 1<<20)
		back := min(l.Outstanding-used, 512<<10)
		if _, err := s.PushTraffic(ctx, nodes[0].ID, 1, map[int64]access.Traffic{u.ID: {Up: used / 2, Down: used - used/2}}, "2026-12-01"); err != nil {
			t.Fatal(err)
		}
		if err := s.ReturnLease(ctx, nodes[0].ID, u.ID, back); err != nil {
			t.Fatal(err)
		}
		// Near the end, with other nodes holding leases, half of what is
		// free (at least 256 KiB of it).
		l, err = s.LeaseQuota(ctx, nodes[1].ID, u.ID, quota)
		if want := max(back/2, min(back, 256<<10)); err != nil || l.Granted != want {
			t.Fatalf("lease after %d returned = %+v, %v; want %d granted", back, l, err, want)
		}
		// Leases lapse after LeaseTTL: what is not used is free again.
		clk.add(LeaseTTL + time.Second)
		l, err = s.LeaseQuota(ctx, nodes[2].ID, u.ID, quota)
		if err != nil || l.Granted != quota-used || l.Outstanding != l.Granted {
			t.Fatalf("lease after expiry = %+v, %v; want quota minus the %d used", l, err, used)
		}
		if err := s.RevokeUser(ctx, u.ID); err != nil {
			t.Fatal(err)
		}
		if l, err := s.LeaseQuota(ctx, nodes[0].ID, u.ID, 1); err != nil || l.Granted != 0 {
			t.Fatalf("lease of a revoked user = %+v, %v; want nothing granted", l, err)
		}
		free := mustUser(t, s, "erin", 0)
		if l, err := s.LeaseQuota(ctx, nodes[0].ID, free.ID, 5); err != nil || !l.Unlimited || l.Granted != 5 {
			t.Fatalf("lease of an unlimited user = %+v, %v; want 5, unlimited", l, err)
		}
		if _, err := s.LeaseQuota(ctx, nodes[0].ID, u.ID, 0); !errors.Is(err, access.ErrInvalid) {
			t.Fatalf("LeaseQuota(0) = %v, want ErrInvalid", err)
		}
	})
}
