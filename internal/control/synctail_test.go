//go:build linux

package control

import (
	"context"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/burrow-vpn/burrow/internal/access"
	"github.com/burrow-vpn/burrow/internal/camo"
	"github.com/burrow-vpn/burrow/internal/control/pgtest"
	"github.com/jackc/pgx/v5"
)

// userChange is a logged user change of version v, with a note of n bytes.
func userChange(v int64, n int) Change {
	return Change{Version: v, Kind: ChangeUser, User: &access.User{ID: v, Name: "u", Note: strings.Repeat("n", n)}}
}

func versions(chs []Change) []int64 {
	var out []int64
	for _, c := range chs {
		out = append(out, c.Version)
	}
	return out
}

// TestChangeTailBounds: the tail answers exactly the versions it holds,
// drops the oldest past its entry and byte caps, refuses a gap, and moves
// its channel on every change of state.
func TestChangeTailBounds(t *testing.T) {
	tl := newChangeTail(4, 1<<20)
	if _, _, ok := tl.since(0, 10); ok {
		t.Fatal("since() before the first reset answered")
	}
	tl.reset(10)
	chs, moved, ok := tl.since(10, 10)
	if !ok || len(chs) != 0 {
		t.Fatalf("since(head) = %v, %v; want nothing, ok", chs, ok)
	}
	for _, after := range []int64{9, 11} {
		if _, _, ok := tl.since(after, 10); ok {
			t.Errorf("since(%d) of an empty tail at 10 answered", after)
		}
	}
	var add []Change
	for v := int64(11); v <= 17; v++ {
		add = append(add, userChange(v, 10))
	}
	if err := tl.add(add); err != nil {
		t.Fatal(err)
	}
	select {
	case <-moved:
	default:
		t.Fatal("add did not close the channel since() returned")
	}
	// Capped at 4 entries: 14..17, answering after 13..17.
	if _, _, ok := tl.since(12, 10); ok {
		t.Error("since(12) answered after 11..13 were dropped")
	}
	if chs, _, ok := tl.since(13, 10); !ok || fmt.Sprint(versions(chs)) != "[14 15 16 17]" {
		t.Errorf("since(13) = %v, %v; want [14 15 16 17]", versions(chs), ok)
	}
	if chs, _, ok := tl.since(14, 2); !ok || fmt.Sprint(versions(chs)) != "[15 16]" {
		t.Errorf("since(14) limit 2 = %v, %v; want [15 16]", versions(chs), ok)
	}
	if err := tl.add([]Change{userChange(19, 10)}); err == nil {
		t.Error("add(19) after 17 accepted a gap")
	}

	// Byte cap: three changes fit, not four; one too big for the cap
	// leaves the tail empty at its version.
	one := changeBytes(userChange(1, 100))
	tl = newChangeTail(100, 3*one)
	tl.reset(0)
	for v := int64(1); v <= 5; v++ {
		if err := tl.add([]Change{userChange(v, 100)}); err != nil {
			t.Fatal(err)
		}
	}
	if _, _, ok := tl.since(1, 10); ok {
		t.Error("since(1) answered beyond the byte cap")
	}
	if chs, _, ok := tl.since(2, 10); !ok || len(chs) != 3 || tl.bytes != 3*one {
		t.Errorf("since(2) = %v, %v (%d bytes); want [3 4 5] in %d", versions(chs), ok, tl.bytes, 3*one)
	}
	if err := tl.add([]Change{userChange(6, 4*one)}); err != nil {
		t.Fatal(err)
	}
	if chs, _, ok := tl.since(6, 10); !ok || len(chs) != 0 || tl.bytes != 0 {
		t.Errorf("since(6) after an oversized change = %v, %v (%d bytes); want nothing, ok, 0 bytes", versions(chs), ok, tl.bytes)
	}
	if _, _, ok := tl.since(5, 10); ok {
		t.Error("since(5) answered without the oversized change")
	}

	_, moved, _ = tl.since(6, 10)
	tl.stop()
	select {
	case <-moved:
	default:
		t.Fatal("stop did not close the channel")
	}
	if _, _, ok := tl.since(6, 10); ok {
		t.Error("a stopped tail answered")
	}
}

// rawNode asks a plane for changes as node n, one request at a time, with
// the after it chooses.
type rawNode struct {
	f    *Follower
	node *Node
}

func newRawNode(t *testing.T, tp *testPlane, n *Node) *rawNode {
	t.Helper()
	f, err := NewFollower(FollowerConfig{Addr: tp.addr, Key: n.PrivateKey,
		Camo: camo.ClientConfig{ServerName: testSNI, PublicKey: tp.pub, ShortID: n.ShortID[:]}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(f.client.CloseIdleConnections)
	return &rawNode{f: f, node: n}
}

func (r *rawNode) sync(ctx context.Context, after int64, wait int) (*syncAnswer, error) {
	var ans syncAnswer
	target := pathSync + "?after=" + strconv.FormatInt(after, 10) + "&wait=" + strconv.Itoa(wait)
	if err := r.f.call(ctx, http.MethodGet, target, nil, &ans); err != nil {
		return nil, err
	}
	return &ans, nil
}

// follow long-polls from after until it holds version until, checking that
// every answer continues the last one in order, and returns the changes it
// was sent and whether it got a snapshot. progress, if set, gets the node's
// ID and version after each answer.
func (r *rawNode) follow(ctx context.Context, after, until int64, progress chan<- [2]int64) (got []wireChange, snapshot bool, err error) {
	v := after
	for v < until {
		ans, err := r.sync(ctx, v, 25)
		if err != nil {
			return got, snapshot, fmt.Errorf("%s after %d: %w", r.node.Name, v, err)
		}
		if ans.Snapshot {
			if ans.Version < v && v > 0 {
				return got, snapshot, fmt.Errorf("%s after %d: a snapshot of older version %d", r.node.Name, v, ans.Version)
			}
			snapshot, v = true, ans.Version
		} else {
			if ans.From != v || ans.Version < v {
				return got, snapshot, fmt.Errorf("%s after %d: answer from %d to %d", r.node.Name, v, ans.From, ans.Version)
			}
			last := v
			for _, c := range ans.Changes {
				if c.Version <= last || c.Version > ans.Version {
					return got, snapshot, fmt.Errorf("%s after %d: change %d out of order (last %d, answer to %d)",
						r.node.Name, v, c.Version, last, ans.Version)
				}
				if r.node.Role == RoleExit && c.Version != last+1 {
					return got, snapshot, fmt.Errorf("%s after %d: change %d skipped", r.node.Name, v, last+1)
				}
				last = c.Version
			}
			got = append(got, ans.Changes...)
			v = ans.Version
		}
		if progress != nil {
			select {
			case progress <- [2]int64{r.node.ID, v}:
			case <-ctx.Done():
				return got, snapshot, ctx.Err()
			}
		}
	}
	return got, snapshot, nil
}

// TestSyncTailBurst: a burst of changes (users, relay paths) reaches every
// node of two control planes on one database, in order and none lost:
// nodes waiting at the head (answered from memory), a node asking from a
// version older than the tail (answered by the store), a node joining
// mid-burst (a snapshot), and a relay, which is never sent a user.
func TestSyncTailBurst(t *testing.T) {
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
			defer cancel()
			s := b.open(t)
			var users []*access.User
			for i := range 20 {
				users = append(users, mustUser(t, s, "early"+strconv.Itoa(i), 0))
			}
			var ns []*Node
			for i, role := range []Role{RoleExit, RoleExit, RoleRelay, RoleExit, RoleExit} {
				ns = append(ns, mustNode(t, s, fmt.Sprintf("n%d-%s", i, role), role))
			}
			// Plane 0 keeps only 8 changes, so a node behind by more is
			// answered by the store; plane 1 keeps the default.
			const small = 8
			planes := []*testPlane{
				startPlane(t, s, func(p *Plane) { p.tail = newChangeTail(small, tailBytes) }),
				startPlane(t, b.reopen(t, s)),
			}
			var nodes []*rawNode
			for i, n := range ns {
				nodes = append(nodes, newRawNode(t, planes[i%2], n))
			}
			start, err := s.Version(ctx)
			if err != nil {
				t.Fatal(err)
			}
			for _, tp := range planes {
				waitTailAt(t, ctx, tp.plane, start)
			}
			const burst = 40
			until := start + burst
			type result struct {
				got      []wireChange
				snapshot bool
				err      error
			}
			results := make([]chan result, len(nodes))
			run := func(i int, after int64) {
				results[i] = make(chan result, 1)
				go func() {
					got, snap, err := nodes[i].follow(ctx, after, until, nil)
					results[i] <- result{got, snap, err}
				}()
			}
			for i := range 3 {
				run(i, start) // at the head: they wait for the burst
			}
			for i := range burst {
				if i == burst/2 {
					run(3, 1) // older than any tail: the store answers
					run(4, 0) // a new node: a snapshot, then changes
				}
				var err error
				switch relay, exit := nodes[2].node.ID, nodes[0].node.ID; i % 10 {
				case 4:
					err = s.AddRelayPath(ctx, relay, exit)
				case 9:
					err = s.RemoveRelayPath(ctx, relay, exit)
				default:
					note := "burst " + strconv.Itoa(i)
					_, err = s.UpdateUser(ctx, users[i%len(users)].ID, access.UserUpdate{Note: &note})
				}
				if err != nil {
					t.Fatal(err)
				}
			}
			want := allChanges(t, s, 0)
			for i, n := range nodes {
				var r result
				select {
				case r = <-results[i]:
				case <-ctx.Done():
					t.Fatalf("%s: not at version %d in time", n.node.Name, until)
				}
				if r.err != nil {
					t.Fatal(r.err)
				}
				checkReceived(t, n.node, r.got, r.snapshot, want)
			}
			for i, tp := range planes {
				t.Logf("plane %d: %d long polls answered from memory, %d by the store", i,
					tp.plane.tail.fromMemory.Load(), tp.plane.tail.fromStore.Load())
			}
			if planes[1].plane.tail.fromMemory.Load() == 0 || planes[1].plane.tail.fromStore.Load() == 0 {
				t.Error("plane 1 (a node waiting at the head, one older than its tail) did not use both memory and the store")
			}

			// The eviction boundary: plane 0 answers from memory exactly
			// the versions after until-small, the store the ones before.
			waitTailAt(t, ctx, planes[0].plane, until)
			tail := planes[0].plane.tail
			for _, tc := range []struct {
				after  int64
				memory bool
			}{{until - small, true}, {until - small - 1, false}, {until - 1, true}} {
				mem0, st0 := tail.fromMemory.Load(), tail.fromStore.Load()
				got, snap, err := nodes[0].follow(ctx, tc.after, until, nil)
				if err != nil {
					t.Fatal(err)
				}
				checkReceived(t, nodes[0].node, got, snap, want)
				if mem, st := tail.fromMemory.Load()-mem0, tail.fromStore.Load()-st0; snap || len(got) != int(until-tc.after) ||
					tc.memory && (mem != 1 || st != 0) || !tc.memory && (mem != 0 || st != 1) {
					t.Errorf("after %d (tail of %d at %d): %d changes, snapshot %v; %d answers from memory, %d by the store; want from memory %v",
						tc.after, small, until, len(got), snap, mem, st, tc.memory)
				}
			}
		})
	}
}

// waitTailAt waits until p's tail answers from version v.
func waitTailAt(t *testing.T, ctx context.Context, p *Plane, v int64) {
	t.Helper()
	for {
		_, moved, ok := p.tail.since(v, 1)
		if ok {
			return
		}
		select {
		case <-moved:
		case <-ctx.Done():
			t.Fatalf("the plane's tail does not answer from version %d", v)
		}
	}
}

// checkReceived checks what node n was sent against the log: each change
// it may see, in order, the users as logged; a relay no users at all.
func checkReceived(t *testing.T, n *Node, got []wireChange, snapshot bool, log []Change) {
	t.Helper()
	if len(got) == 0 {
		if !snapshot {
			t.Errorf("%s was sent nothing", n.Name)
		}
		return // the snapshot was of the last version
	}
	// follow checked that an exit's changes continue its version one by
	// one; here what it was sent is compared with the log.
	var wantV []int64
	first := got[0].Version
	for _, c := range log {
		if c.Version >= first && (c.Kind != ChangeUser || n.Role == RoleExit) {
			wantV = append(wantV, c.Version)
		}
	}
	var gotV []int64
	for _, c := range got {
		gotV = append(gotV, c.Version)
		if c.Kind == ChangeUser && n.Role != RoleExit || c.User != nil && n.Role != RoleExit {
			t.Errorf("%s (a %s) was sent user change %d", n.Name, n.Role, c.Version)
		}
		if c.User != nil {
			lc := log[c.Version-1]
			if lc.Version != c.Version || c.User.UUID != access.FormatUUID(lc.User.UUID) || c.User.ID != lc.User.ID {
				t.Errorf("%s: change %d carries user %d %s, the log %d %s", n.Name, c.Version, c.User.ID, c.User.UUID,
					lc.User.ID, access.FormatUUID(lc.User.UUID))
			}
		}
	}
	if fmt.Sprint(gotV) != fmt.Sprint(wantV) {
		t.Errorf("%s (snapshot %v) was sent versions %v, want %v", n.Name, snapshot, gotV, wantV)
	}
}

// countingStore counts the reads of the change log a Plane makes.
type countingStore struct {
	Store
	reads atomic.Int64
}

func (c *countingStore) Version(ctx context.Context) (int64, error) {
	c.reads.Add(1)
	return c.Store.Version(ctx)
}

func (c *countingStore) Changes(ctx context.Context, after int64, limit int) ([]Change, error) {
	c.reads.Add(1)
	return c.Store.Changes(ctx, after, limit)
}

func (c *countingStore) WaitChange(ctx context.Context, after int64) (int64, error) {
	c.reads.Add(1)
	return c.Store.WaitChange(ctx, after)
}

func (c *countingStore) Snapshot(ctx context.Context) (*Snapshot, error) {
	c.reads.Add(1)
	return c.Store.Snapshot(ctx)
}

// TestSyncTailStoreReads: what the store is asked per change does not grow
// with the number of nodes waiting: 20 nodes cost no more reads (and on
// PostgreSQL no more statements) than 2, within a small constant.
func TestSyncTailStoreReads(t *testing.T) {
	const changes = 10
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			reads := map[int]int64{}
			stmts := map[int]int64{}
			for _, nodes := range []int{2, 20} {
				reads[nodes], stmts[nodes] = storeReads(t, b.name, nodes, changes)
				t.Logf("%d nodes, %d changes: %d store reads, %d PostgreSQL statements", nodes, changes, reads[nodes], stmts[nodes])
			}
			if reads[20] > reads[2]+changes {
				t.Errorf("20 waiting nodes: %d store reads for %d changes; 2 nodes: %d", reads[20], changes, reads[2])
			}
			if stmts[20] > stmts[2]+2*changes {
				t.Errorf("20 waiting nodes: %d statements for %d changes; 2 nodes: %d", stmts[20], changes, stmts[2])
			}
		})
	}
}

// storeReads starts a plane with nodes long-polling at the head, makes
// changes one at a time, each once every node has the one before, and
// returns the plane's store reads and (PostgreSQL) statements meanwhile.
func storeReads(t *testing.T, backend string, nodes, changes int) (reads, stmts int64) {
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	var wg sync.WaitGroup
	defer wg.Wait() // after cancel
	defer cancel()
	var queries atomic.Int64
	var s, writer *SQLStore
	var err error
	if backend == "postgres" {
		dsn := pgtest.DB(t)
		cfg, err := pgx.ParseConfig(dsn)
		if err != nil {
			t.Fatal(err)
		}
		cfg.Tracer = (*countQueries)(&queries)
		s, err = openPostgres(ctx, dsn, cfg)
		s = mustOpen(t, s, err)
		writer = mustOpenPG(t, ctx, dsn)
	} else {
		for _, b := range backends {
			if b.name == backend {
				s = b.open(t)
				writer = s // the plane's reads are counted above the store
			}
		}
	}
	u := mustUser(t, writer, "anna", 0)
	var ns []*Node
	for i := range nodes {
		ns = append(ns, mustNode(t, writer, "node-"+strconv.Itoa(i), RoleExit))
	}
	cs := &countingStore{Store: s}
	tp := startPlane(t, cs, func(p *Plane) { p.refresh, p.recheck = time.Hour, time.Hour })
	var v int64
	if v, err = writer.Version(ctx); err != nil {
		t.Fatal(err)
	}
	waitTailAt(t, ctx, tp.plane, v)
	final := v + 1 + int64(changes)
	progress := make(chan [2]int64, nodes*(changes+2))
	errc := make(chan error, nodes)
	for _, n := range ns {
		rn := newRawNode(t, tp, n)
		wg.Go(func() {
			_, _, err := rn.follow(ctx, v, final, progress)
			errc <- err
		})
	}
	// reached waits until every node holds version want.
	have := map[int64]int64{} // node ID → version
	reached := func(want int64) {
		t.Helper()
		for {
			n := 0
			for _, got := range have {
				if got >= want {
					n++
				}
			}
			if n == nodes {
				return
			}
			select {
			case p := <-progress:
				have[p[0]] = p[1]
			case err := <-errc:
				if err != nil {
					t.Fatal(err)
				}
			case <-ctx.Done():
				t.Fatalf("%d of %d nodes at version %d in time", n, nodes, want)
			}
		}
	}
	note := func(i int) {
		n := strconv.Itoa(i)
		if _, err := writer.UpdateUser(ctx, u.ID, access.UserUpdate{Note: &n}); err != nil {
			t.Fatal(err)
		}
	}
	note(0) // every node connected and at the head
	reached(v + 1)
	reads0, stmts0 := cs.reads.Load(), queries.Load()
	for i := 1; i <= changes; i++ {
		note(i)
		reached(v + 1 + int64(i))
	}
	return cs.reads.Load() - reads0, queries.Load() - stmts0
}

// TestSyncTailStoreDown: while PostgreSQL is down, a node's long poll fails
// as it did before the tail (the node keeps serving from its replica), even
// one that was waiting in memory; once it is back, changes reach the node
// from memory again.
func TestSyncTailStoreDown(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	c := pgtest.New(t)
	dsn, err := c.NewDB(ctx)
	if err != nil {
		t.Fatal(err)
	}
	s := mustOpenPG(t, ctx, dsn)
	mustUser(t, s, "anna", 0)
	n := mustNode(t, s, "exit", RoleExit)
	tp := startPlane(t, s)
	rn := newRawNode(t, tp, n)
	head, err := s.Version(ctx)
	if err != nil {
		t.Fatal(err)
	}
	waitTailAt(t, ctx, tp.plane, head)
	// Waiting at the head, from memory: the request is in the plane
	// before PostgreSQL stops (the first answer, with a wait of 0, tells).
	if ans, err := rn.sync(ctx, head, 0); err != nil || ans.Version != head {
		t.Fatalf("sync(head, no wait) = %+v, %v", ans, err)
	}
	waiting := make(chan error, 1)
	go func() {
		ans, err := rn.sync(ctx, head, 25)
		if err == nil {
			err = errorf("answered %+v", ans)
		}
		waiting <- err
	}()
	if err := c.Halt(); err != nil {
		t.Fatal(err)
	}
	if err := <-waiting; !strings.Contains(err.Error(), "500") {
		t.Fatalf("a long poll waiting when PostgreSQL stopped: %v; want an error 500", err)
	}
	if ans, err := rn.sync(ctx, head, 25); err == nil || !strings.Contains(err.Error(), "500") {
		t.Fatalf("a long poll with PostgreSQL down = %+v, %v; want an error 500", ans, err)
	}
	if err := c.Resume(); err != nil {
		t.Fatal(err)
	}
	// The first change after the restart may come before the plane
	// follows the log again; the second comes after.
	eventually(t, ctx, func() error { _, err := s.CreateUser(ctx, access.NewUser{Name: "back"}); return err })
	waitTailAt(t, ctx, tp.plane, head+1)
	mustUser(t, s, "after", 0)
	waitTailAt(t, ctx, tp.plane, head+2)
	mem0 := tp.plane.tail.fromMemory.Load()
	got, _, err := rn.follow(ctx, head+1, head+2, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0].User == nil || got[0].User.Name != "after" || tp.plane.tail.fromMemory.Load() == mem0 {
		t.Fatalf("after PostgreSQL came back: sent %+v (%d answers from memory); want user after, from memory",
			got, tp.plane.tail.fromMemory.Load()-mem0)
	}
}
