package control

import (
	"context"
	"crypto/ed25519"
	"crypto/tls"
	"errors"
	"io"
	"log/slog"
	"maps"
	"net"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/burrow-vpn/burrow/internal/access"
	"github.com/burrow-vpn/burrow/internal/camo"
	"github.com/burrow-vpn/burrow/internal/coversite"
)

const testSNI = "cover.test"

// plane is a control plane on loopback for tests: its store, its REALITY
// public key and its address.
type testPlane struct {
	store Store
	ident ed25519.PrivateKey
	pub   []byte
	addr  string
	cover *coversite.Site
	plane *Plane
}

// startPlane starts a Plane on st; opts adjust it before it serves.
func startPlane(t *testing.T, st Store, opts ...func(*Plane)) *testPlane {
	t.Helper()
	cover, err := coversite.Start("127.0.0.1:0", testSNI)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cover.Close() })
	priv, pub, err := camo.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	_, ident, err := ed25519.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	p, err := NewPlane(PlaneConfig{Store: st, NodeRefresh: 100 * time.Millisecond, Identity: ident,
		Camo: camo.ServerConfig{PrivateKey: priv, ServerNames: []string{testSNI}, Cover: cover.Addr}})
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range opts {
		o(p)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Serve(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("plane: %v", err)
		}
	})
	return &testPlane{plane: p, store: st, ident: ident, pub: pub, addr: ln.Addr().String(), cover: cover}
}

func openTestStore(t *testing.T) Store {
	t.Helper()
	st, err := OpenSQLite(context.Background(), filepath.Join(t.TempDir(), "control.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

// testNode is a joined exit: its replica and its follower, running.
type testNode struct {
	node    *Node
	replica *access.SQLiteStore
	f       *Follower
	applied chan struct{} // a token per application of changes
	closed  chan struct{} // a token each time the control plane ended one of its connections
	stop    func()
}

func startNode(t *testing.T, tp *testPlane, n *Node, path string) *testNode {
	t.Helper()
	rep, err := access.OpenSQLite(path)
	if err != nil {
		t.Fatal(err)
	}
	rep.QueueTraffic()
	tn := &testNode{node: n, replica: rep, applied: make(chan struct{}, 1000), closed: make(chan struct{}, 1000)}
	f, err := NewFollower(FollowerConfig{
		Addr:      tp.addr,
		Camo:      camo.ClientConfig{ServerName: testSNI, PublicKey: tp.pub, ShortID: n.ShortID[:]},
		Key:       n.PrivateKey,
		Replica:   rep,
		Endpoint:  Endpoint{Addr: "127.0.0.1:4433", SNI: testSNI, PublicKey: b64(tp.pub), ShortID: "0123456789abcdef"},
		Applied:   func() { tn.applied <- struct{}{} },
		PushEvery: 50 * time.Millisecond,
		Logger:    slog.New(slog.NewTextHandler(t.Output(), nil)),
		Dial: func(ctx context.Context, network, addr string) (net.Conn, error) {
			var d net.Dialer
			c, err := d.DialContext(ctx, network, addr)
			if err != nil {
				return nil, err
			}
			return &watchedConn{Conn: c, closed: tn.closed}, nil
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	tn.f = f
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { f.Run(ctx); close(done) }()
	tn.stop = func() { cancel(); <-done; rep.Close() }
	t.Cleanup(func() {
		select {
		case <-done:
		default:
			tn.stop()
		}
	})
	return tn
}

// watchedConn reports when the connection ended: the peer ended it, or the
// client closed it after the peer's TLS close_notify.
type watchedConn struct {
	net.Conn
	closed chan struct{}
	once   atomic.Bool
}

func (c *watchedConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if err != nil {
		c.ended()
	}
	return n, err
}

func (c *watchedConn) Close() error {
	c.ended()
	return c.Conn.Close()
}

func (c *watchedConn) ended() {
	if c.once.CompareAndSwap(false, true) {
		c.closed <- struct{}{}
	}
}

// waitFor waits, change by change, until cond holds.
func waitFor(t *testing.T, tn *testNode, what string, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	deadline := time.After(30 * time.Second)
	for !cond() {
		select {
		case <-tn.applied:
		case <-deadline:
			t.Fatalf("%s: not seen in 30 s", what)
		}
	}
	return time.Since(start)
}

func TestSyncFollowsChangeLog(t *testing.T) {
	ctx := context.Background()
	st := openTestStore(t)
	tp := startPlane(t, st)
	n, err := st.CreateNode(ctx, "exit-1", RoleExit)
	if err != nil {
		t.Fatal(err)
	}
	early, err := st.CreateUser(ctx, access.NewUser{Name: "early", Quota: 1 << 30})
	if err != nil {
		t.Fatal(err)
	}
	tn := startNode(t, tp, n, filepath.Join(t.TempDir(), "users.db"))
	// The snapshot brings the user made before the node joined.
	waitFor(t, tn, "snapshot", func() bool {
		u, err := tn.replica.UserByUUID(ctx, early.UUID)
		return err == nil && u.Quota == 1<<30
	})

	// Each kind of user change reaches the replica.
	anna, err := st.CreateUser(ctx, access.NewUser{Name: "anna"})
	if err != nil {
		t.Fatal(err)
	}
	d := waitFor(t, tn, "new user", func() bool { _, err := tn.replica.UserByUUID(ctx, anna.UUID); return err == nil })
	t.Logf("a new user reached the node in %v", d)
	if err := st.RevokeUser(ctx, anna.ID); err != nil {
		t.Fatal(err)
	}
	waitFor(t, tn, "revocation", func() bool { u, _ := tn.replica.UserByName(ctx, "anna"); return u.Revoked })
	rot, err := st.RotateUUID(ctx, early.ID)
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, tn, "rotation", func() bool { _, err := tn.replica.UserByUUID(ctx, rot.UUID); return err == nil })
	if _, err := tn.replica.UserByUUID(ctx, early.UUID); !errors.Is(err, access.ErrNotFound) {
		t.Fatalf("the old uuid still admits: %v", err)
	}
	// The node registered where clients reach it.
	got, err := st.NodeByID(ctx, n.ID)
	if err != nil || got.Endpoint.Addr != "127.0.0.1:4433" {
		t.Fatalf("endpoint %+v, %v", got.Endpoint, err)
	}
	// The subscription token never leaves the control plane.
	if u, _ := tn.replica.UserByName(ctx, "anna"); u.SubToken == anna.SubToken {
		t.Fatal("the replica holds the user's subscription token")
	}
}

func TestSyncPushesTrafficOnce(t *testing.T) {
	ctx := context.Background()
	st := openTestStore(t)
	tp := startPlane(t, st)
	n, err := st.CreateNode(ctx, "exit-1", RoleExit)
	if err != nil {
		t.Fatal(err)
	}
	u, err := st.CreateUser(ctx, access.NewUser{Name: "anna"})
	if err != nil {
		t.Fatal(err)
	}
	tn := startNode(t, tp, n, filepath.Join(t.TempDir(), "users.db"))
	waitFor(t, tn, "snapshot", func() bool { _, err := tn.replica.UserByUUID(ctx, u.UUID); return err == nil })
	day := time.Now().UTC().Format(time.DateOnly)
	var up int64
	for i := range 20 {
		up += int64(1000 + i)
		if err := tn.replica.AddTraffic(ctx, map[int64]access.Traffic{u.ID: {Up: int64(1000 + i), Down: 7}}, day); err != nil {
			t.Fatal(err)
		}
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		cur, err := st.UserByName(ctx, "anna")
		if err != nil {
			t.Fatal(err)
		}
		if cur.BytesUp == up && cur.BytesDown == 20*7 {
			break
		}
		if cur.BytesUp > up || time.Now().After(deadline) {
			t.Fatalf("control plane counted %d up, %d down; want %d, %d", cur.BytesUp, cur.BytesDown, up, 20*7)
		}
		time.Sleep(20 * time.Millisecond) // polling the control plane's store: nothing to wait on
	}
	// A batch sent again (the node crashed before it could forget it) is
	// not counted twice.
	if err := tn.f.call(ctx, "POST", pathTraffic, trafficPush{Seq: 5, Day: day,
		Deltas: map[string][2]int64{strconv.FormatInt(u.ID, 10): {1 << 20, 0}}}, nil); err != nil {
		t.Fatal(err)
	}
	if cur, _ := st.UserByName(ctx, "anna"); cur.BytesUp != up {
		t.Fatalf("a retried batch was counted: %d up, want %d", cur.BytesUp, up)
	}
	// The node forgets each batch once the control plane answered for it
	// (just after the count above can show it).
	for deadline := time.Now().Add(30 * time.Second); ; {
		pend, _ := tn.replica.PendingTraffic(ctx, 10)
		if len(pend) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d batches still queued 30 s after the control plane took them", len(pend))
		}
		time.Sleep(20 * time.Millisecond) // the replica's outbox: nothing to wait on
	}
}

// TestPlaneKnowsWhoIsOnline: the connections each exit reports add up in
// Plane.Active, which the panel's "online now" reads. A report that lists
// a user twice, out of order, at odds with its own count, or from a relay
// is refused and changes nothing; a revoked exit's users drop out.
func TestPlaneKnowsWhoIsOnline(t *testing.T) {
	ctx := context.Background()
	st := openTestStore(t)
	tp := startPlane(t, st)
	u, err := st.CreateUser(ctx, access.NewUser{Name: "anna"})
	if err != nil {
		t.Fatal(err)
	}
	var nodes []*testNode
	for _, name := range []string{"exit-1", "exit-2", "relay-1"} {
		role := RoleExit
		if name == "relay-1" {
			role = RoleRelay
		}
		n, err := st.CreateNode(ctx, name, role)
		if err != nil {
			t.Fatal(err)
		}
		tn := startNode(t, tp, n, filepath.Join(t.TempDir(), "users.db"))
		// Its first snapshot shows the plane knows the node (a relay's
		// holds no users).
		applied := false
		waitFor(t, tn, "snapshot", func() bool {
			_, err := tn.replica.UserByUUID(ctx, u.UUID)
			seen := applied
			applied = true
			return err == nil || role == RoleRelay && seen
		})
		nodes = append(nodes, tn)
	}
	report := func(tn *testNode, count int, online ...[2]int64) error {
		return tn.f.call(ctx, "POST", pathStatus, NodeStatus{Version: "test", UsersOnline: count, Online: online, Health: "ok"}, nil)
	}
	if err := report(nodes[0], 2, [2]int64{7, 1}, [2]int64{9, 3}); err != nil {
		t.Fatal(err)
	}
	if err := report(nodes[1], 1, [2]int64{9, 1}); err != nil {
		t.Fatal(err)
	}
	want := map[int64]int{7: 1, 9: 4}
	if got := tp.plane.Active(); !maps.Equal(got, want) {
		t.Fatalf("Active = %v, want %v", got, want)
	}
	for _, bad := range []struct {
		name   string
		node   *testNode
		count  int
		online [][2]int64
	}{
		{"a user twice", nodes[1], 2, [][2]int64{{9, 1}, {9, 1}}},
		{"out of order", nodes[1], 2, [][2]int64{{9, 1}, {7, 1}}},
		{"no connection", nodes[1], 1, [][2]int64{{9, 0}}},
		{"a bad id", nodes[1], 1, [][2]int64{{-3, 1}}},
		{"a count at odds", nodes[1], 5, [][2]int64{{9, 1}}},
		{"from a relay", nodes[2], 1, [][2]int64{{7, 1}}},
	} {
		if err := report(bad.node, bad.count, bad.online...); err == nil || !strings.Contains(err.Error(), "400") {
			t.Errorf("a report with %s: %v, want 400 Bad Request", bad.name, err)
		}
	}
	if got := tp.plane.Active(); !maps.Equal(got, want) {
		t.Fatalf("after refused reports: Active = %v, want %v", got, want)
	}
	if err := report(nodes[0], 0); err != nil {
		t.Fatal(err)
	}
	if got, want := tp.plane.Active(), map[int64]int{9: 1}; !maps.Equal(got, want) {
		t.Fatalf("after exit-1 reported nobody online: Active = %v, want %v", got, want)
	}
	// A revoked exit's report no longer counts, once the plane knows.
	if err := st.RevokeNode(ctx, nodes[1].node.ID); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for len(tp.plane.Active()) > 0 {
		if time.Now().After(deadline) {
			t.Fatalf("30 s after exit-2 was revoked, Active = %v", tp.plane.Active())
		}
		time.Sleep(20 * time.Millisecond) // the plane rereads its nodes every 100 ms here
	}
}

func TestSyncRevokedNodeIsCut(t *testing.T) {
	ctx := context.Background()
	st := openTestStore(t)
	tp := startPlane(t, st)
	n, err := st.CreateNode(ctx, "exit-1", RoleExit)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.CreateUser(ctx, access.NewUser{Name: "anna"}); err != nil {
		t.Fatal(err)
	}
	tn := startNode(t, tp, n, filepath.Join(t.TempDir(), "users.db"))
	select {
	case <-tn.f.Synced():
	case <-time.After(30 * time.Second):
		t.Fatal("never synced")
	}
	for len(tn.closed) > 0 {
		<-tn.closed // connections that ended before: refused while the plane did not know the node yet
	}
	start := time.Now()
	if err := st.RevokeNode(ctx, n.ID); err != nil {
		t.Fatal(err)
	}
	// The plane forgets the node's key, then cuts its connections; the
	// follower may also end a connection of its own meanwhile. After each
	// connection that ends, try the node's key: once the cut is made, the
	// endpoint answers it as the cover site does.
	deadline := time.After(30 * time.Second)
	for {
		select {
		case <-tn.closed:
		case <-deadline:
			t.Fatal("the revoked node's connection stayed open")
		}
		c, err := net.Dial("tcp", tp.addr)
		if err != nil {
			t.Fatal(err)
		}
		tc, err := camo.Client(ctx, c, camo.ClientConfig{ServerName: testSNI, PublicKey: tp.pub, ShortID: n.ShortID[:]})
		if tc != nil {
			tc.Close()
		}
		c.Close()
		if errors.Is(err, camo.ErrNotReality) {
			t.Logf("the control plane cut the revoked node's connection and refused its key within %v", time.Since(start))
			return
		}
		if err != nil {
			t.Fatalf("revoked node's handshake: %v, want ErrNotReality", err)
		}
	}
}

// TestPlaneShowsCover: to anyone without a node's key, the control
// endpoint is the cover site (its certificate and its page).
func TestPlaneShowsCover(t *testing.T) {
	st := openTestStore(t)
	tp := startPlane(t, st)
	get := func(addr string) (string, []byte) {
		c, err := tls.Dial("tcp", addr, &tls.Config{ServerName: testSNI, InsecureSkipVerify: true})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		io.WriteString(c, "GET / HTTP/1.1\r\nHost: "+testSNI+"\r\nConnection: close\r\n\r\n")
		body, _ := io.ReadAll(c)
		return string(body), c.ConnectionState().PeerCertificates[0].Raw
	}
	body, cert := get(tp.addr)
	coverBody, coverCert := get(tp.cover.Addr)
	if !strings.Contains(body, "Northwind") || string(cert) != string(coverCert) {
		t.Fatalf("the control endpoint does not answer as its cover: %.80q", body)
	}
	if i, j := strings.Index(body, "\r\n\r\n"), strings.Index(coverBody, "\r\n\r\n"); body[i:] != coverBody[j:] {
		t.Fatal("pages differ")
	}
}

func TestRequestSignature(t *testing.T) {
	ctx := context.Background()
	st := openTestStore(t)
	a, err := st.CreateNode(ctx, "a", RoleExit)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	h := signRequest(a.PrivateKey, "GET", "/v1/sync?after=1", now)
	if pub, err := verifyRequest(h, "GET", "/v1/sync?after=1", now); err != nil || !pub.Equal(a.PublicKey) {
		t.Fatalf("good signature: %v", err)
	}
	for name, tc := range map[string]struct {
		h, method, target string
		at                time.Time
	}{
		"other path":   {h, "GET", "/v1/sync?after=0", now},
		"other verb":   {h, "POST", "/v1/sync?after=1", now},
		"stale":        {h, "GET", "/v1/sync?after=1", now.Add(3 * time.Minute)},
		"garbage":      {"x.y.z", "GET", "/v1/sync?after=1", now},
		"no signature": {"", "GET", "/v1/sync?after=1", now},
	} {
		if _, err := verifyRequest(tc.h, tc.method, tc.target, tc.at); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

// TestSubscriptionLinksHealthyFirst: a subscription lists every registered
// exit, those that report healthy first.
func TestSubscriptionLinksHealthyFirst(t *testing.T) {
	ctx := context.Background()
	st := openTestStore(t)
	_, pub, err := camo.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	var exits []*Node
	for i, name := range []string{"quiet", "busy"} {
		n, err := st.CreateNode(ctx, name, RoleExit)
		if err != nil {
			t.Fatal(err)
		}
		ep := Endpoint{Addr: "127.0.0." + strconv.Itoa(i+1) + ":443", SNI: testSNI, PublicKey: b64(pub), ShortID: "0123456789abcdef"}
		if err := st.RegisterNode(ctx, n.ID, ep); err != nil {
			t.Fatal(err)
		}
		exits = append(exits, n)
	}
	u, err := st.CreateUser(ctx, access.NewUser{Name: "anna"})
	if err != nil {
		t.Fatal(err)
	}
	// Neither has reported: ID order.
	ls, err := SubscriptionLinks(ctx, st, u, time.Now())
	if err != nil || len(ls) != 2 || ls[0].Host != "127.0.0.1" {
		t.Fatalf("before any report: %v, %v", ls, err)
	}
	// The second reports healthy: it goes first.
	if err := st.UpdateNodeStatus(ctx, exits[1].ID, NodeStatus{Health: "ok"}); err != nil {
		t.Fatal(err)
	}
	ls, err = SubscriptionLinks(ctx, st, u, time.Now())
	if err != nil || len(ls) != 2 || ls[0].Host != "127.0.0.2" || ls[0].UUID != u.UUID {
		t.Fatalf("after a report: %v, %v", ls, err)
	}
}

func TestPruneThrough(t *testing.T) {
	now := time.Now()
	seen := func(v int64, ago time.Duration) *Node {
		return &Node{Status: NodeStatus{AppliedVersion: v, LastSeen: now.Add(-ago)}}
	}
	for name, tc := range map[string]struct {
		nodes []*Node
		want  int64
	}{
		"no nodes":                 {nil, 0},
		"least of the live":        {[]*Node{seen(50, time.Minute), seen(30, time.Hour), seen(90, 0)}, 30},
		"away too long is skipped": {[]*Node{seen(50, time.Minute), seen(3, 25*time.Hour)}, 50},
		"never connected skipped":  {[]*Node{seen(50, time.Minute), {}}, 50},
		"revoked skipped":          {[]*Node{seen(50, time.Minute), {Revoked: true, Status: NodeStatus{AppliedVersion: 1, LastSeen: now}}}, 50},
	} {
		if got := PruneThrough(tc.nodes, now); got != tc.want {
			t.Errorf("%s: %d, want %d", name, got, tc.want)
		}
	}
}
