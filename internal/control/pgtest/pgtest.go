// Package pgtest starts a throwaway PostgreSQL cluster for tests: initdb and
// pg_ctl from the machine's PostgreSQL (Debian's postgresql package) in a
// temporary directory, listening on a unix socket only (no TCP port, so
// clusters of packages tested in parallel never collide), with durability
// off to start fast (fsync=off: nothing waits for the disk, yet a crash of
// PostgreSQL alone loses no commit, as the kernel still holds what was
// written; synchronous_commit stays on for that reason). As root it runs PostgreSQL as the unprivileged user
// "postgres" (PostgreSQL refuses to run as root).
//
// A test package that uses it says so in its TestMain:
//
//	func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }
//
// and each test asks for a fresh, empty database:
//
//	dsn := pgtest.DB(t) // postgres://postgres@/db3?host=/tmp/burrow-pg-…
//
// The cluster starts with the first DB call and stops when the package's
// tests end. A test that stops PostgreSQL on purpose takes a cluster of its
// own with New, and uses Halt and Resume. A cluster that cannot start fails the test loudly with
// PostgreSQL's own log; it never skips.
package pgtest

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// Cluster is one running PostgreSQL server.
type Cluster struct {
	dir string // holds data/, the socket and the log; removed by Stop
	bin string
	as  *user.User   // run PostgreSQL as this user; nil unless running as root
	n   atomic.Int64 // databases created
}

var (
	mu       sync.Mutex
	inMain   bool
	shared   *Cluster
	startErr error
)

// Main runs the package's tests and stops the shared cluster, if one was
// started, before returning m.Run's code.
func Main(m *testing.M) int {
	mu.Lock()
	inMain = true
	mu.Unlock()
	code := m.Run()
	mu.Lock()
	defer mu.Unlock()
	if shared != nil {
		if err := shared.Stop(); err != nil {
			fmt.Fprintln(os.Stderr, "pgtest:", err)
			if code == 0 {
				code = 1
			}
		}
		shared = nil
	}
	return code
}

// DB returns the DSN of a new empty database on the package's shared
// cluster, starting the cluster on first use.
func DB(tb testing.TB) string {
	tb.Helper()
	mu.Lock()
	if !inMain {
		mu.Unlock()
		tb.Fatal("pgtest: the package's TestMain must call os.Exit(pgtest.Main(m))")
	}
	if shared == nil && startErr == nil {
		shared, startErr = Start()
	}
	c, err := shared, startErr
	mu.Unlock()
	if err != nil {
		tb.Fatalf("pgtest: PostgreSQL did not start (install Debian's postgresql package): %v", err)
	}
	dsn, err := c.NewDB(context.Background())
	if err != nil {
		tb.Fatalf("pgtest: %v", err)
	}
	return dsn
}

// New starts a cluster of the test's own, stopped when the test ends: for
// tests that stop and restart PostgreSQL (Halt, Resume), which must not
// disturb the package's shared cluster.
func New(tb testing.TB) *Cluster {
	tb.Helper()
	c, err := Start()
	if err != nil {
		tb.Fatalf("pgtest: PostgreSQL did not start (install Debian's postgresql package): %v", err)
	}
	tb.Cleanup(func() {
		if err := c.Stop(); err != nil {
			tb.Errorf("pgtest: %v", err)
		}
	})
	return c
}

// Start starts a new cluster. The caller stops it.
func Start() (*Cluster, error) {
	bin, err := findBin()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "burrow-pg-")
	if err != nil {
		return nil, err
	}
	c := &Cluster{dir: dir, bin: bin}
	if err := c.start(); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	return c, nil
}

func (c *Cluster) start() error {
	if os.Geteuid() == 0 {
		u, err := user.Lookup("postgres")
		if err != nil {
			return fmt.Errorf("running as root, PostgreSQL needs an unprivileged user and %w", err)
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		if err := os.Chown(c.dir, uid, gid); err != nil {
			return err
		}
		c.as = u
	}
	if out, err := c.run("initdb", "-D", c.data(), "-U", "postgres", "-A", "trust", "-E", "UTF8",
		"--locale=C", "--no-sync", "--no-instructions"); err != nil {
		return fmt.Errorf("initdb: %v\n%s", err, out)
	}
	return c.Resume()
}

// Resume starts the cluster's server (again, after Halt) on its data.
func (c *Cluster) Resume() error {
	opts := fmt.Sprintf("-k %s -c listen_addresses='' -c fsync=off "+
		"-c full_page_writes=off -c max_connections=200 -c shared_buffers=32MB", c.dir)
	logf := filepath.Join(c.dir, "postgres.log")
	if out, err := c.run("pg_ctl", "start", "-w", "-t", "120", "-D", c.data(), "-l", logf, "-o", opts); err != nil {
		log, _ := os.ReadFile(logf)
		return fmt.Errorf("pg_ctl start: %v\n%s\n%s", err, out, log)
	}
	return nil
}

func (c *Cluster) data() string { return filepath.Join(c.dir, "data") }

// Halt stops the cluster's server at once, as a crash would, keeping its
// data; every connection breaks. Resume starts it again.
func (c *Cluster) Halt() error {
	if out, err := c.run("pg_ctl", "stop", "-w", "-m", "immediate", "-D", c.data()); err != nil {
		return fmt.Errorf("pg_ctl stop: %v\n%s", err, out)
	}
	return nil
}

// Stop stops the server at once and removes its files.
func (c *Cluster) Stop() error {
	out, err := c.run("pg_ctl", "status", "-D", c.data())
	if err == nil {
		out, err = c.run("pg_ctl", "stop", "-w", "-m", "immediate", "-D", c.data())
	} else {
		err = nil // not running (halted): nothing to stop
	}
	os.RemoveAll(c.dir)
	if err != nil {
		return fmt.Errorf("pg_ctl stop: %v\n%s", err, out)
	}
	return nil
}

// DSN returns the DSN of database db on the cluster.
func (c *Cluster) DSN(db string) string {
	return "postgres://postgres@/" + db + "?host=" + url.QueryEscape(c.dir) + "&sslmode=disable"
}

// NewDB creates a new empty database and returns its DSN.
func (c *Cluster) NewDB(ctx context.Context) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	conn, err := pgx.Connect(ctx, c.DSN("postgres"))
	if err != nil {
		return "", fmt.Errorf("connect: %w", err)
	}
	defer conn.Close(ctx)
	name := fmt.Sprintf("db%d", c.n.Add(1))
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+name); err != nil {
		return "", fmt.Errorf("create database: %w", err)
	}
	return c.DSN(name), nil
}

func (c *Cluster) run(prog string, args ...string) ([]byte, error) {
	cmd := exec.Command(filepath.Join(c.bin, prog), args...)
	cmd.Dir = c.dir
	cmd.Env = append(os.Environ(), "LC_ALL=C", "PGTZ=UTC")
	if c.as != nil {
		if err := runAs(cmd, c.as); err != nil {
			return nil, err
		}
		cmd.Env = append(cmd.Env, "HOME="+c.dir)
	}
	return cmd.CombinedOutput()
}

// findBin returns the directory of initdb and pg_ctl: $BURROW_PG_BIN, the
// newest /usr/lib/postgresql/*/bin (Debian keeps them off PATH), or PATH.
func findBin() (string, error) {
	if d := os.Getenv("BURROW_PG_BIN"); d != "" {
		return d, nil
	}
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	sort.Slice(dirs, func(i, j int) bool { return pgMajor(dirs[i]) > pgMajor(dirs[j]) })
	for _, d := range dirs {
		if _, err := os.Stat(filepath.Join(d, "initdb")); err == nil {
			return d, nil
		}
	}
	if p, err := exec.LookPath("initdb"); err == nil {
		return filepath.Dir(p), nil
	}
	return "", errors.New("no initdb in $BURROW_PG_BIN, /usr/lib/postgresql/*/bin or PATH")
}

func pgMajor(binDir string) int {
	n, _ := strconv.Atoi(strings.Split(strings.TrimPrefix(binDir, "/usr/lib/postgresql/"), "/")[0])
	return n
}
