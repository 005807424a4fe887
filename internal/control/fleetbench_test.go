//go:build linux

package control

import (
	"bufio"
	"context"
	"database/sql"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/burrow-vpn/burrow/internal/access"
	"github.com/burrow-vpn/burrow/internal/camo"
	"github.com/burrow-vpn/burrow/internal/control/pgtest"
	"github.com/burrow-vpn/burrow/internal/coversite"
	"github.com/jackc/pgx/v5"
)

// The fleet benchmarks of issue 13's "Scale", on a real PostgreSQL (pgtest)
// and a real Plane on loopback; every node speaks the real protocol (REALITY,
// signed HTTP requests) over its own socket, in this process. They are run
// by hand, not by ./test.sh, and run their scenario once:
//
//	go test -run XXX -bench 'Fleet' -benchtime 1x -timeout 30m ./internal/control/
//
// CPU is this process's (getrusage): the control plane and the nodes
// together, PostgreSQL not included; the figures per node are therefore an
// upper bound of the control plane's share. docs/fleet.md "Scale" has the
// results and the estimate for 10,000 nodes.

// BenchmarkFleet100k: 100,000 users, 50 exits, each a Follower with its own
// SQLite replica (access.SQLiteStore). Reports the full sync of a new node
// (alone, then three at once), delta propagation (a change committed
// → applied on all 50 nodes) over 200 changes, CPU, RSS and PostgreSQL
// statements.
func BenchmarkFleet100k(b *testing.B) {
	const nodes, changes = 50, 200
	ctx := context.Background()
	fb := newFleetBench(b)
	start := time.Now()
	if err := fb.store.ImportUsers(ctx, benchUserList(benchUsers)); err != nil {
		b.Fatal(err)
	}
	b.Logf("imported %d users in %v", benchUsers, time.Since(start).Round(time.Millisecond))
	ns := fb.createNodes(nodes)
	fb.startPlane()
	debug.FreeOSMemory()
	rss0 := rssBytes()

	// One new node alone: snapshot of 100,000 users into its replica.
	start = time.Now()
	fb.startReplicaNode(ns[0], 0)
	fb.waitSynced(0)
	full := time.Since(start)
	b.Logf("a new node was in sync with %d users after %v", benchUsers, full.Round(time.Millisecond))
	b.ReportMetric(full.Seconds(), "s-fullsync")

	// Three more at once, by snapshot too.
	start = time.Now()
	for j := 1; j <= 3; j++ {
		fb.startReplicaNode(ns[j], j)
	}
	for j := 1; j <= 3; j++ {
		fb.waitSynced(j)
	}
	b.Logf("three more new nodes joining at once were in sync after %v", time.Since(start).Round(time.Millisecond))

	// The other 46 start from a copy of a synced replica, as a restarted
	// node does (a snapshot each would cost minutes of this machine's CPU).
	seed := filepath.Join(fb.dir, "seed.db")
	if err := copyReplica(filepath.Join(fb.dir, "node-0.db"), seed); err != nil {
		b.Fatal(err)
	}
	for j := 4; j < nodes; j++ {
		if err := copyFile(seed, filepath.Join(fb.dir, fmt.Sprintf("node-%d.db", j))); err != nil {
			b.Fatal(err)
		}
		fb.startReplicaNode(ns[j], j)
		fb.waitSynced(j)
	}
	fb.change() // every node is connected
	debug.FreeOSMemory()
	rss := rssBytes() - rss0
	b.Logf("RSS grew by %d MiB for %d nodes with replicas (nodes and plane in one process)", rss>>20, nodes)
	b.ReportMetric(float64(rss)/(1<<20)*100/nodes, "MiB-RSS/100nodes")

	fb.propagate(changes)
}

// BenchmarkFleetSim1000: 1,000 simulated exits, each a real Follower with
// its own REALITY connection and long poll, on a replica kept in memory
// (only its version: no SQLite writes), starting at the log's current
// version (no snapshot). Every change still wakes every node, costs the
// control plane its queries and sends each node the user's row.
func BenchmarkFleetSim1000(b *testing.B) {
	const nodes, changes = 1000, 100
	ctx := context.Background()
	fb := newFleetBench(b)
	if err := fb.store.ImportUsers(ctx, benchUserList(1000)); err != nil {
		b.Fatal(err)
	}
	ns := fb.createNodes(nodes)
	fb.startPlane()
	debug.FreeOSMemory()
	rss0, cpu0 := rssBytes(), cpuTime()
	start := time.Now()
	for i, n := range ns {
		fb.startMemNode(n, i)
	}
	fb.change() // all connected: all apply it
	b.Logf("%d nodes connected and followed a change %v after starting (%v CPU)", nodes,
		time.Since(start).Round(time.Millisecond), (cpuTime() - cpu0).Round(time.Millisecond))
	debug.FreeOSMemory()
	rss := rssBytes() - rss0
	b.Logf("RSS grew by %d MiB for %d long-polling nodes (both ends of each connection in one process)", rss>>20, nodes)
	b.ReportMetric(float64(rss)/(1<<20)*100/nodes, "MiB-RSS/100nodes")

	// Idle: nodes long-poll, renewing every 25 s.
	cpu0, q0 := cpuTime(), fb.queries.Load()
	const idle = 30 * time.Second
	time.Sleep(idle) // measuring an idle interval, not waiting for anything
	b.Logf("idle %v: %v CPU (%.1f%% of one core), %d statements (%.0f/s)", idle, (cpuTime() - cpu0).Round(time.Millisecond),
		100*float64(cpuTime()-cpu0)/float64(idle), fb.queries.Load()-q0, float64(fb.queries.Load()-q0)/idle.Seconds())
	fb.propagate(changes)
}

// fleetBench is a PostgreSQL store with a statement counter, a Plane on
// loopback, and nodes following it.
type fleetBench struct {
	b       *testing.B
	dir     string
	store   *SQLStore
	queries atomic.Int64 // statements sent to PostgreSQL (pgx tracer)
	pub     []byte
	addr    string
	nodes   []*Follower
	applied []atomic.Int64 // each node's applied version
	notify  chan struct{}  // a token when a node applied something
}

func newFleetBench(b *testing.B) *fleetBench {
	b.Helper()
	fb := &fleetBench{b: b, dir: b.TempDir(), notify: make(chan struct{}, 1)}
	dsn := pgtest.DB(b)
	cfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		b.Fatal(err)
	}
	cfg.Tracer = (*countQueries)(&fb.queries)
	if fb.store, err = openPostgres(context.Background(), dsn, cfg); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { fb.store.Close() })
	return fb
}

// countQueries counts the statements pgx sends (BEGIN and COMMIT included).
type countQueries atomic.Int64

func (c *countQueries) TraceQueryStart(ctx context.Context, _ *pgx.Conn, _ pgx.TraceQueryStartData) context.Context {
	(*atomic.Int64)(c).Add(1)
	return ctx
}

func (c *countQueries) TraceQueryEnd(context.Context, *pgx.Conn, pgx.TraceQueryEndData) {}

func (fb *fleetBench) createNodes(n int) []*Node {
	fb.b.Helper()
	ns := make([]*Node, n)
	for i := range ns {
		var err error
		if ns[i], err = fb.store.CreateNode(context.Background(), fmt.Sprintf("node-%04d", i), RoleExit); err != nil {
			fb.b.Fatal(err)
		}
	}
	fb.nodes = make([]*Follower, n)
	fb.applied = make([]atomic.Int64, n)
	return ns
}

func (fb *fleetBench) startPlane() {
	b := fb.b
	b.Helper()
	cover, err := coversite.Start("127.0.0.1:0", testSNI)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { cover.Close() })
	priv, pub, err := camo.GenerateKey()
	if err != nil {
		b.Fatal(err)
	}
	p, err := NewPlane(PlaneConfig{Store: fb.store,
		Camo: camo.ServerConfig{PrivateKey: priv, ServerNames: []string{testSNI}, Cover: cover.Addr}})
	if err != nil {
		b.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Serve(ctx, ln) }()
	b.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			b.Errorf("plane: %v", err)
		}
	})
	fb.pub, fb.addr = pub, ln.Addr().String()
}

// startNode runs a Follower for node n as node i on rep.
func (fb *fleetBench) startNode(n *Node, i int, rep Replica) {
	b := fb.b
	b.Helper()
	var f *Follower
	f, err := NewFollower(FollowerConfig{
		Addr:     fb.addr,
		Camo:     camo.ClientConfig{ServerName: testSNI, PublicKey: fb.pub, ShortID: n.ShortID[:]},
		Key:      n.PrivateKey,
		Replica:  rep,
		Endpoint: Endpoint{Addr: "127.0.0.1:4433", SNI: testSNI, PublicKey: b64(fb.pub), ShortID: "0123456789abcdef"},
		Applied: func() {
			fb.applied[i].Store(f.Version())
			select {
			case fb.notify <- struct{}{}:
			default:
			}
		},
	})
	if err != nil {
		b.Fatal(err)
	}
	fb.nodes[i] = f
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { f.Run(ctx); close(done) }()
	b.Cleanup(func() { cancel(); <-done })
}

func (fb *fleetBench) startReplicaNode(n *Node, i int) {
	rep, err := access.OpenSQLite(filepath.Join(fb.dir, fmt.Sprintf("node-%d.db", i)))
	if err != nil {
		fb.b.Fatal(err)
	}
	fb.b.Cleanup(func() { rep.Close() })
	rep.QueueTraffic()
	fb.startNode(n, i, rep)
}

func (fb *fleetBench) startMemNode(n *Node, i int) {
	v, err := fb.store.Version(context.Background())
	if err != nil {
		fb.b.Fatal(err)
	}
	fb.applied[i].Store(v)
	fb.startNode(n, i, &memReplica{version: v})
}

func (fb *fleetBench) waitSynced(i int) {
	select {
	case <-fb.nodes[i].Synced():
	case <-time.After(5 * time.Minute):
		fb.b.Fatalf("node %d not in sync after 5 minutes", i)
	}
}

// change commits one user change and waits until every node applied it;
// it returns how long that took from the commit.
func (fb *fleetBench) change() time.Duration {
	b := fb.b
	ctx := context.Background()
	id := int64(1 + time.Now().UnixNano()%1000)
	note := strconv.FormatInt(time.Now().UnixNano(), 36)
	if _, err := fb.store.UpdateUser(ctx, id, access.UserUpdate{Note: &note}); err != nil {
		b.Fatal(err)
	}
	committed := time.Now()
	v, err := fb.store.Version(ctx)
	if err != nil {
		b.Fatal(err)
	}
	deadline := time.After(5 * time.Minute)
	for {
		behind := 0
		for i := range fb.applied {
			if fb.applied[i].Load() < v {
				behind++
			}
		}
		if behind == 0 {
			return time.Since(committed)
		}
		select {
		case <-fb.notify:
		case <-deadline:
			b.Fatalf("%d of %d nodes have not applied version %d after 5 minutes", behind, len(fb.applied), v)
		}
	}
}

// propagate makes changes one after another, each once every node applied
// the one before, and reports the propagation percentiles, CPU and
// statements per change.
func (fb *fleetBench) propagate(changes int) {
	b := fb.b
	n := len(fb.nodes)
	cpu0, q0, start := cpuTime(), fb.queries.Load(), time.Now()
	lat := make([]time.Duration, changes)
	for i := range lat {
		lat[i] = fb.change()
	}
	wall, cpu, q := time.Since(start), cpuTime()-cpu0, fb.queries.Load()-q0
	slices.Sort(lat)
	p50, p99 := lat[changes/2], lat[changes*99/100]
	b.Logf("%d changes to %d nodes: propagation p50 %v, p99 %v, max %v", changes, n,
		p50.Round(100*time.Microsecond), p99.Round(100*time.Microsecond), lat[changes-1].Round(100*time.Microsecond))
	b.Logf("CPU %v per change (%.2f ms per node and change); %d statements, %.1f per change and node, %.0f/s",
		(cpu / time.Duration(changes)).Round(10*time.Microsecond), float64(cpu)/float64(time.Millisecond)/float64(changes*n),
		q, float64(q)/float64(changes*n), float64(q)/wall.Seconds())
	b.ReportMetric(float64(p50)/float64(time.Millisecond), "ms-p50")
	b.ReportMetric(float64(p99)/float64(time.Millisecond), "ms-p99")
	b.ReportMetric(float64(cpu)/float64(time.Millisecond)/float64(changes), "cpu-ms/change")
	b.ReportMetric(float64(q)/wall.Seconds(), "pg-stmt/s")
	b.ReportMetric(float64(q)/float64(changes*n), "pg-stmt/change/node")
}

// memReplica is a node's replica that keeps only its version.
type memReplica struct {
	mu      sync.Mutex
	version int64 // guarded by mu
}

func (r *memReplica) ReplicaVersion(context.Context) (int64, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.version, nil
}

func (r *memReplica) ReplaceUsers(_ context.Context, v int64, _ []*access.User) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.version = v
	return nil
}

func (r *memReplica) ApplyUsers(_ context.Context, from, to int64, _ []*access.User) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if from != r.version {
		return access.ErrReplicaGap
	}
	r.version = to
	return nil
}

func (r *memReplica) PendingTraffic(context.Context, int) ([]access.TrafficBatch, error) {
	return nil, nil
}

func (r *memReplica) AckTraffic(context.Context, uint64) error { return nil }

// copyReplica writes a consistent copy of the SQLite database at src (in
// use by a node) to dst.
func copyReplica(src, dst string) error {
	db, err := sql.Open("sqlite", src)
	if err != nil {
		return err
	}
	defer db.Close()
	_, err = db.Exec(`VACUUM INTO ?`, dst)
	return err
}

func copyFile(src, dst string) error {
	b, err := os.ReadFile(src)
	if err != nil {
		return err
	}
	return os.WriteFile(dst, b, 0o600)
}

// cpuTime is this process's user and system CPU time so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// rssBytes is this process's resident set (Linux /proc), 0 if unknown.
func rssBytes() int64 {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if kb, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			n, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(kb), "kB")), 10, 64)
			return n << 10
		}
	}
	return 0
}
