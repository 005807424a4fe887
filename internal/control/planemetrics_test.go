package control

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/burrow-vpn/burrow/internal/access"
	"github.com/burrow-vpn/burrow/internal/camo"
	"github.com/burrow-vpn/burrow/internal/metrics"
)

// TestPlaneMetrics: a node's lag is the log's version minus the newer of
// what its sync requests and its status report say it holds; a node never
// heard from has neither lag nor last contact; a revoked node is not
// listed; a store that fails is reported down.
func TestPlaneMetrics(t *testing.T) {
	ctx := context.Background()
	st, err := OpenSQLite(ctx, filepath.Join(t.TempDir(), "control.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	var nodes []*Node
	for _, name := range []string{"polls", "reports", "silent", "revoked"} {
		n, err := st.CreateNode(ctx, name, RoleExit)
		if err != nil {
			t.Fatal(err)
		}
		nodes = append(nodes, n)
	}
	if err := st.RevokeNode(ctx, nodes[3].ID); err != nil { // version 1
		t.Fatal(err)
	}
	for i := range 4 { // versions 2..5
		if _, err := st.CreateUser(ctx, access.NewUser{Name: fmt.Sprintf("u%d", i)}); err != nil {
			t.Fatal(err)
		}
	}
	if err := st.UpdateNodeStatus(ctx, nodes[1].ID, NodeStatus{AppliedVersion: 4, Health: "ok"}); err != nil {
		t.Fatal(err)
	}
	priv, _, err := camo.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	p, err := NewPlane(PlaneConfig{Store: st, Camo: camo.ServerConfig{PrivateKey: priv, ServerNames: []string{testSNI}, Cover: "127.0.0.1:1"}})
	if err != nil {
		t.Fatal(err)
	}
	if err := p.loadNodes(ctx); err != nil {
		t.Fatal(err)
	}
	// "polls" asked for the changes after version 3; "reports" asked after
	// 2, but its status says 4.
	p.stats.heard(nodes[0].ID, time.Now())
	p.stats.synced(nodes[0].ID, 3)
	p.stats.heard(nodes[1].ID, time.Now().Add(-2*time.Minute))
	p.stats.synced(nodes[1].ID, 2)

	m := p.Metrics(ctx)
	if !m.StoreUp || m.LogVersion != 5 || m.StoreLatency <= 0 {
		t.Errorf("store: up %v, version %d, latency %v; want up, 5, above 0", m.StoreUp, m.LogVersion, m.StoreLatency)
	}
	want := []metrics.ControlNode{
		{Name: "polls", Role: "exit", Up: true, Applied: 3},
		{Name: "reports", Role: "exit", Up: true, Applied: 4}, // its status report is newer than the poll
		{Name: "silent", Role: "exit", Applied: -1, LastSeen: -1},
	}
	if len(m.Nodes) != len(want) {
		t.Fatalf("nodes %+v, want %+v", m.Nodes, want)
	}
	for i, w := range want {
		g := m.Nodes[i]
		if g.Name != w.Name || g.Role != w.Role || g.Up != w.Up || g.Applied != w.Applied || (w.LastSeen < 0) != (g.LastSeen < 0) {
			t.Errorf("node %d = %+v, want %+v", i, g, w)
		}
		if g.Up && (g.LastSeen < 0 || g.LastSeen > upWithin) {
			t.Errorf("node %s up, last seen %v ago", g.Name, g.LastSeen)
		}
	}

	st.Close()
	if m := p.Metrics(ctx); m.StoreUp {
		t.Error("the store is closed, yet reported up")
	}
}
