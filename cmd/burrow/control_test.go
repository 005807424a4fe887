package main

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/burrow-vpn/burrow/internal/access"
	"github.com/burrow-vpn/burrow/internal/control"
	"github.com/burrow-vpn/burrow/internal/control/pgtest"
	"github.com/burrow-vpn/burrow/internal/links"
)

// controlDir runs `burrow control init` in a new directory with store db
// ("sqlite" or a postgres URL) and returns the directory.
func controlDir(t *testing.T, db string) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "control")
	runCmd(t, "control", "init", "--data", dir, "--db", db, "--cover", "cover.example:443",
		"--public-addr", "127.0.0.1", "--listen", "127.0.0.1:9443", "--skip-cover-check")
	return dir
}

func openTestControl(t *testing.T, dir string) *control.SQLStore {
	t.Helper()
	_, st, err := openControl(context.Background(), dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

func TestControlInit(t *testing.T) {
	dir := controlDir(t, "sqlite")
	for _, f := range []string{control.ConfigFile, control.StoreFile} {
		fi, err := os.Stat(filepath.Join(dir, f))
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != 0o600 {
			t.Errorf("%s has mode %v, want 0600", f, fi.Mode().Perm())
		}
	}
	if fi, _ := os.Stat(dir); fi.Mode().Perm() != 0o700 {
		t.Errorf("control dir has mode %v, want 0700", fi.Mode().Perm())
	}
	cfg, err := control.LoadConfig(dir)
	if err != nil || cfg.DB != "sqlite" || cfg.ServerNames[0] != "cover.example" || cfg.PublicAddr != "127.0.0.1" {
		t.Fatalf("config = %+v, %v; want sqlite, SNI from the cover, the public address given", cfg, err)
	}
	before, _ := os.ReadFile(filepath.Join(dir, control.ConfigFile))
	if msg := runCmdErr(t, "control", "init", "--data", dir, "--cover", "x.example:443", "--public-addr", "h", "--skip-cover-check"); !strings.Contains(msg, "already exists") {
		t.Errorf("init on an existing control dir: %q, want a refusal", msg)
	}
	if after, _ := os.ReadFile(filepath.Join(dir, control.ConfigFile)); !bytes.Equal(before, after) {
		t.Error("a refused init changed the config")
	}
	for args, want := range map[string]string{
		"--data " + t.TempDir() + "/a --public-addr h":                                           "--cover",
		"--data " + t.TempDir() + "/b --public-addr h --cover 192.0.2.1:443":                     "--sni",
		"--data " + t.TempDir() + "/c --public-addr h --cover c.example:443 --db mysql://x":      "postgres",
		"--data " + t.TempDir() + "/d --public-addr h --cover c.example:443 --db postgres://%zz": "postgres",
	} {
		msg := runCmdErr(t, append([]string{"control", "init", "--skip-cover-check"}, strings.Fields(args)...)...)
		if !strings.Contains(msg, want) {
			t.Errorf("control init %s: %q, want it to mention %s", args, msg, want)
		}
	}
	// A database that cannot be reached: the error says so without the password.
	bad := "postgres://burrow:s3cret@/burrow?host=" + t.TempDir() + "&connect_timeout=5"
	msg := runCmdErr(t, "control", "init", "--skip-cover-check", "--data", t.TempDir()+"/e", "--public-addr", "h", "--cover", "c.example:443", "--db", bad)
	if !strings.Contains(msg, "postgres") || strings.Contains(msg, "s3cret") {
		t.Errorf("control init with an unreachable database: %q, want a postgres error without the password", msg)
	}
}

func TestControlNodeTokens(t *testing.T) {
	dir := controlDir(t, "sqlite")
	line := runCmd(t, "control", "node-token", "exit-1", "--data", dir)
	if strings.Count(line, "\n") != 1 {
		t.Fatalf("node-token printed %q, want one line", line)
	}
	tok, err := control.ParseToken(line)
	if err != nil {
		t.Fatal(err)
	}
	cfg, _ := control.LoadConfig(dir)
	if tok.Role != control.RoleExit || tok.Addr != "127.0.0.1:9443" || tok.SNI != "cover.example" || !tok.Control.Equal(cfg.Identity().Public()) {
		t.Fatalf("token = %s, want an exit joining 127.0.0.1:9443 with SNI cover.example", tok.Redacted())
	}
	st := openTestControl(t, dir)
	n, err := st.NodeByKey(context.Background(), tok.Key.Public().(ed25519.PublicKey))
	if err != nil || n.Name != "exit-1" {
		t.Fatalf("the token's key finds %+v, %v; want node exit-1", n, err)
	}
	again, _ := control.ParseToken(runCmd(t, "control", "node-token", "exit-1", "--data", dir))
	if _, err := st.NodeByKey(context.Background(), tok.Key.Public().(ed25519.PublicKey)); err == nil || again.Key.Equal(tok.Key) {
		t.Fatal("a second node-token for the same name kept the first token working")
	}
	if msg := runCmdErr(t, "control", "node-token", "exit-1", "--data", dir, "--role", "relay"); !strings.Contains(msg, "not a relay") {
		t.Errorf("node-token with another role: %q, want a refusal", msg)
	}
	rl, _ := control.ParseToken(runCmd(t, "control", "node-token", "relay-1", "--role", "relay", "--data", dir))
	if rl.Role != control.RoleRelay {
		t.Fatalf("relay token role = %s", rl.Role)
	}
	if out := runCmd(t, "control", "node-token", "relay-1", "--revoke", "--data", dir); !strings.Contains(out, "Revoked") {
		t.Errorf("--revoke printed %q", out)
	}
	if msg := runCmdErr(t, "control", "node-token", "relay-1", "--role", "relay", "--data", dir); !strings.Contains(msg, "revoked") {
		t.Errorf("node-token for a revoked name: %q, want a refusal saying so", msg)
	}
	if msg := runCmdErr(t, "control", "node-token", "x", "--role", "bridge", "--data", dir); !strings.Contains(msg, "exit or relay") {
		t.Errorf("--role bridge: %q", msg)
	}
}

func TestControlNodes(t *testing.T) {
	ctx := context.Background()
	dir := controlDir(t, "sqlite")
	runCmd(t, "control", "node-token", "exit-1", "--data", dir)
	runCmd(t, "control", "node-token", "exit-2", "--data", dir)
	st := openTestControl(t, dir)
	n, _ := st.NodeByName(ctx, "exit-1")
	if err := st.RegisterNode(ctx, n.ID, control.Endpoint{Addr: "203.0.113.9:443"}); err != nil {
		t.Fatal(err)
	}
	if err := st.UpdateNodeStatus(ctx, n.ID, control.NodeStatus{Version: "v9.9", UsersOnline: 3, BytesUp: 1 << 20, BytesDown: 1 << 20, Health: "ok"}); err != nil {
		t.Fatal(err)
	}
	out := runCmd(t, "control", "nodes", "--data", dir)
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 3 {
		t.Fatalf("nodes printed %q, want a header and 2 nodes", out)
	}
	for _, want := range []string{"exit-1", "exit", "203.0.113.9:443", "v9.9", " 3 ", "2.09 MB", " ok"} {
		if !strings.Contains(lines[1], want) {
			t.Errorf("exit-1's line %q lacks %q", lines[1], want)
		}
	}
	if !strings.Contains(lines[2], "never connected") {
		t.Errorf("exit-2's line %q, want never connected", lines[2])
	}
}

// TestControlUserCommands: the user commands on a control dir act on the
// fleet's store (each change logged for the nodes), and user show prints a
// link for every exit and relay path.
func TestControlUserCommands(t *testing.T) {
	testControlUsers(t, controlDir(t, "sqlite"))
}

// TestControlPostgres: the same on a control plane on PostgreSQL.
func TestControlPostgres(t *testing.T) {
	dir := controlDir(t, pgtest.DB(t))
	if _, err := os.Stat(filepath.Join(dir, control.StoreFile)); err == nil {
		t.Fatal("a control plane on PostgreSQL made an SQLite file")
	}
	testControlUsers(t, dir)
}

func testControlUsers(t *testing.T, dir string) {
	ctx := context.Background()
	runCmd(t, "control", "node-token", "exit-1", "--data", dir)
	runCmd(t, "control", "node-token", "relay-1", "--role", "relay", "--data", dir)
	st := openTestControl(t, dir)
	ex, _ := st.NodeByName(ctx, "exit-1")
	rl, _ := st.NodeByName(ctx, "relay-1")
	pub := control.Endpoint{Addr: "203.0.113.1:443", SNI: "cover.example", PublicKey: "Av2B3xFx8FvcNxJ40I_vxjYpU-UWwxPYs3OG3C6fJwE", ShortID: "a1b2c3d4", Fingerprint: "chrome"}
	if err := st.RegisterNode(ctx, ex.ID, pub); err != nil {
		t.Fatal(err)
	}
	if err := st.RegisterNode(ctx, rl.ID, control.Endpoint{Addr: "198.51.100.2:8443"}); err != nil {
		t.Fatal(err)
	}
	if err := st.AddRelayPath(ctx, rl.ID, ex.ID); err != nil {
		t.Fatal(err)
	}
	v0, _ := st.Version(ctx)

	out := runCmd(t, "user", "add", "alice", "--quota", "5GB", "--data", dir)
	ls := linksIn(t, out)
	if len(ls) != 2 || ls[0].Host != "203.0.113.1" || ls[1].Host != "198.51.100.2" || ls[1].Port != 8443 || ls[1].SNI != "cover.example" {
		t.Fatalf("user add printed %q, want the exit's link and the relay path's", out)
	}
	runCmd(t, "user", "set", "alice", "--note", "team", "--data", dir)
	runCmd(t, "user", "revoke", "alice", "--data", dir)
	runCmd(t, "user", "enable", "alice", "--data", dir)
	rot := linksIn(t, runCmd(t, "user", "rotate", "alice", "--data", dir))
	if rot[0].UUID == ls[0].UUID {
		t.Fatal("rotate printed the old UUID")
	}
	runCmd(t, "user", "reset-traffic", "alice", "--data", dir)
	if out := runCmd(t, "user", "list", "--data", dir); !strings.Contains(out, "alice") || !strings.Contains(out, "5 GB") {
		t.Fatalf("user list = %q", out)
	}
	cs, err := st.Changes(ctx, v0, 100)
	if err != nil {
		t.Fatal(err)
	}
	if len(cs) != 6 { // add, set, revoke, enable, rotate, reset
		t.Fatalf("%d changes logged by the user commands, want 6: %+v", len(cs), cs)
	}
	u, _ := st.UserByName(ctx, "alice")
	if last := cs[len(cs)-1].User; last.UUID != u.UUID || last.Note != "team" {
		t.Fatalf("last change carries %+v, want alice's current row", last)
	}
	show := runCmd(t, "user", "show", "alice", "--data", dir, "--node", "relay-1")
	if l := linksIn(t, show); len(l) != 1 || l[0].Host != "198.51.100.2" || l[0].UUID != u.UUID {
		t.Fatalf("user show --node relay-1 = %q, want the one link through the relay", show)
	}
	if !strings.Contains(show, "relay-1 > exit-1:") || !strings.Contains(show, "status:     active") {
		t.Errorf("user show = %q, want the user's status and the path's name", show)
	}
	if msg := runCmdErr(t, "user", "show", "alice", "--data", dir, "--via", "1.2.3.4:443"); !strings.Contains(msg, "--via") {
		t.Errorf("--via on a control dir: %q", msg)
	}
	if msg := runCmdErr(t, "user", "show", "alice", "--data", dir, "--node", "nobody"); !strings.Contains(msg, "not found") {
		t.Errorf("--node nobody: %q", msg)
	}
}

// linksIn returns the vless:// links in out, in order.
func linksIn(t *testing.T, out string) []*links.VLESS {
	t.Helper()
	var ls []*links.VLESS
	for _, line := range strings.Split(out, "\n") {
		if strings.HasPrefix(line, "vless://") {
			l, err := links.ParseVLESS(line)
			if err != nil {
				t.Fatal(err)
			}
			ls = append(ls, l)
		}
	}
	return ls
}

// TestControlImport: a server's users move into the fleet with their
// credentials; a second import (names taken) imports nothing.
func TestControlImport(t *testing.T) {
	ctx := context.Background()
	srv := filepath.Join(t.TempDir(), "srv")
	runCmd(t, "server", "init", "--data", srv, "--listen", "127.0.0.1:9444", "--cover", "cover.example:443",
		"--public-addr", "127.0.0.1", "--skip-cover-check")
	runCmd(t, "user", "add", "bob", "--quota", "1GB", "--data", srv)
	old, err := access.OpenSQLite(filepath.Join(srv, "users.db"))
	if err != nil {
		t.Fatal(err)
	}
	want, err := old.ListUsers(ctx)
	old.Close()
	if err != nil || len(want) == 0 {
		t.Fatalf("server users: %d, %v", len(want), err)
	}
	dir := controlDir(t, "sqlite")
	runCmd(t, "control", "import", "--data", dir, "--from", srv)
	st := openTestControl(t, dir)
	for _, w := range want {
		got, err := st.UserByUUID(ctx, w.UUID)
		if err != nil || got.Name != w.Name || got.SubToken != w.SubToken || got.Quota != w.Quota {
			t.Fatalf("imported %q: %+v, %v", w.Name, got, err)
		}
	}
	v, _ := st.Version(ctx)
	if msg := runCmdErr(t, "control", "import", "--data", dir, "--from", srv); !strings.Contains(msg, "nothing imported") {
		t.Errorf("second import: %q, want a refusal", msg)
	}
	if v2, _ := st.Version(ctx); v2 != v {
		t.Errorf("a refused import moved the log from %d to %d", v, v2)
	}
	// A fleet node's replica is not a server to import from.
	node := filepath.Join(t.TempDir(), "node")
	if err := os.MkdirAll(node, 0o700); err != nil {
		t.Fatal(err)
	}
	rep, err := access.OpenSQLite(filepath.Join(node, "users.db"))
	if err != nil {
		t.Fatal(err)
	}
	if err := rep.ReplaceUsers(ctx, 7, []*access.User{{ID: 1, Name: "carol", CreatedAt: time.Now(), PeriodStart: time.Now(), Reset: access.ResetNever}}); err != nil {
		t.Fatal(err)
	}
	rep.Close()
	if msg := runCmdErr(t, "control", "import", "--data", dir, "--from", node); !strings.Contains(msg, "replica") {
		t.Errorf("import from a node's replica: %q, want a refusal naming the replica", msg)
	}
	if v2, _ := st.Version(ctx); v2 != v {
		t.Errorf("an import from a replica moved the log from %d to %d", v, v2)
	}
}

func TestControlPaths(t *testing.T) {
	dir := controlDir(t, "sqlite")
	runCmd(t, "control", "node-token", "exit-1", "--data", dir)
	runCmd(t, "control", "node-token", "relay-1", "--role", "relay", "--data", dir)
	if out := runCmd(t, "control", "path", "add", "relay-1", "exit-1", "--data", dir); !strings.Contains(out, "now fronts") {
		t.Errorf("path add printed %q", out)
	}
	out := runCmd(t, "control", "path", "list", "--data", dir)
	if lines := strings.Split(strings.TrimSpace(out), "\n"); len(lines) != 2 || !strings.HasPrefix(lines[1], "relay-1") || !strings.Contains(lines[1], "exit-1") {
		t.Fatalf("path list = %q, want relay-1 in front of exit-1", out)
	}
	if msg := runCmdErr(t, "control", "path", "add", "exit-1", "relay-1", "--data", dir); !strings.Contains(msg, "not a relay") {
		t.Errorf("path add with the roles swapped: %q", msg)
	}
	runCmd(t, "control", "path", "remove", "relay-1", "exit-1", "--data", dir)
	if msg := runCmdErr(t, "control", "path", "remove", "relay-1", "exit-1", "--data", dir); !strings.Contains(msg, "not found") {
		t.Errorf("removing a path twice: %q", msg)
	}
}
