package interop

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// The burrow binary is built at most once per test process, into a temporary
// directory that TestMain removes.
var (
	binDir      string
	buildOnce   sync.Once
	burrowBin   string
	buildErr    error
	buildTook   time.Duration
	buildStderr string
)

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "burrow-interop-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "interop: temp dir:", err)
		os.Exit(2)
	}
	binDir = dir
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// requireBurrowEnv, when set to 1, turns "burrow is not ready" skips into
// failures. CI sets it; during development the tests skip and say why.
const requireBurrowEnv = "INTEROP_REQUIRE_BURROW"

// notReady skips the test (or fails it under INTEROP_REQUIRE_BURROW=1).
func notReady(t *testing.T, format string, args ...any) {
	t.Helper()
	msg := fmt.Sprintf(format, args...)
	if os.Getenv(requireBurrowEnv) == "1" {
		t.Fatalf("%s (%s=1)", msg, requireBurrowEnv)
	}
	t.Skipf("%s (set %s=1 to fail instead)", msg, requireBurrowEnv)
}

// goTool is the go command that runs these tests: go test puts its own
// GOROOT/bin first on the tests' PATH.
func goTool() string { return "go" }

// burrowBinEnv names a prebuilt burrow binary to test instead of building one.
const burrowBinEnv = "INTEROP_BURROW_BIN"

// burrowBinary builds ../cmd/burrow once (in the main module, not this one)
// and returns its path; it skips the test if the build fails.
func burrowBinary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		if p := os.Getenv(burrowBinEnv); p != "" {
			burrowBin, buildErr = filepath.Abs(p)
			return
		}
		start := time.Now()
		out := filepath.Join(binDir, "burrow")
		cmd := exec.Command(goTool(), "build", "-o", out, "./cmd/burrow")
		cmd.Dir = ".." // the repository root: cmd/burrow belongs to the main module
		cmd.Env = append(os.Environ(), "GOWORK=off")
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		buildErr = cmd.Run()
		buildTook = time.Since(start)
		buildStderr = stderr.String()
		if buildErr == nil {
			burrowBin = out
		}
	})
	if buildErr != nil {
		notReady(t, "burrow: go build ./cmd/burrow failed: %v\n%s", buildErr, buildStderr)
	}
	return burrowBin
}

// runBurrow runs the binary to completion and returns its stdout and stderr.
func runBurrow(t *testing.T, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, burrowBinary(t), args...)
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	err = cmd.Run()
	return o.String(), e.String(), err
}

// unknownCommand reports whether the CLI said it does not know a subcommand yet.
func unknownCommand(out string) bool {
	s := strings.ToLower(out)
	return strings.Contains(s, "unknown command") || strings.Contains(s, "unknown subcommand")
}

// syncBuffer collects a subprocess's output while the test reads it.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// burrowProc is a long-running burrow subprocess (server run, connect).
type burrowProc struct {
	cmd    *exec.Cmd
	out    *syncBuffer // stdout and stderr interleaved
	exited chan struct{}
	err    error // valid after exited is closed
}

// startBurrow starts the binary; at test end it gets SIGTERM (the contract's
// graceful stop), then SIGKILL after 10s. Its output is logged if the test fails.
func startBurrow(t *testing.T, args ...string) *burrowProc {
	t.Helper()
	p := &burrowProc{out: new(syncBuffer), exited: make(chan struct{})}
	p.cmd = exec.Command(burrowBinary(t), args...)
	p.cmd.Stdout, p.cmd.Stderr = p.out, p.out
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("burrow %s: start: %v", args[0], err)
	}
	go func() {
		p.err = p.cmd.Wait()
		close(p.exited)
	}()
	t.Cleanup(func() {
		select {
		case <-p.exited:
			if !t.Failed() && !t.Skipped() {
				t.Errorf("burrow %s exited during the test: %v", args[0], p.err)
			}
		default:
			p.cmd.Process.Signal(syscall.SIGTERM)
			select {
			case <-p.exited:
				// The contract: SIGTERM is a graceful stop, so the process
				// must handle it rather than be killed by it.
				if ws, ok := p.cmd.ProcessState.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
					t.Errorf("burrow %s: killed by %v instead of stopping gracefully", args[0], ws.Signal())
				} else if p.err != nil {
					t.Logf("burrow %s: after SIGTERM: %v", args[0], p.err)
				}
			case <-time.After(10 * time.Second):
				t.Errorf("burrow %s: still running 10s after SIGTERM; killing it", args[0])
				p.cmd.Process.Kill()
				<-p.exited
			}
		}
		if t.Failed() || testing.Verbose() {
			t.Logf("burrow %s output:\n%s", strings.Join(args, " "), p.out.String())
		}
	})
	return p
}

// waitListening waits until addr accepts TCP, failing early if the process exits.
func (p *burrowProc) waitListening(t *testing.T, addr string) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-p.exited:
			out := p.out.String()
			if unknownCommand(out) {
				notReady(t, "burrow %s: not implemented yet: %s", p.cmd.Args[1], firstLine(out))
			}
			t.Fatalf("burrow %s exited before listening on %s: %v\n%s", p.cmd.Args[1], addr, p.err, out)
		default:
		}
		if c, err := dialTimeout(addr, 200*time.Millisecond); err == nil {
			c.Close()
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("burrow %s: nothing listens on %s after 15s\n%s", p.cmd.Args[1], addr, p.out.String())
}

func firstLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i]
	}
	return s
}

// burrowServer is a running `burrow server run` and the link `server init` printed.
type burrowServer struct {
	Addr string    // 127.0.0.1:port it listens on
	Link vlessLink // the owner's link
	Raw  string    // the link as printed
}

// startBurrowServer runs `burrow server init` (listen on loopback, cover at
// coverAddr, private egress allowed so the loopback sites are reachable) and
// then `burrow server run`, and waits until it listens.
func startBurrowServer(t *testing.T, coverAddr string) *burrowServer {
	t.Helper()
	data := t.TempDir()
	addr := "127.0.0.1:" + strconv.Itoa(freePort(t))
	stdout, stderr, err := runBurrow(t, "server", "init",
		"--data", data,
		"--listen", addr,
		"--cover", coverAddr,
		"--sni", coverSNI,
		"--public-addr", "127.0.0.1",
		"--allow-private-egress")
	if err != nil {
		if unknownCommand(stdout + stderr) {
			notReady(t, "burrow server init: not implemented yet: %s", firstLine(stdout+stderr))
		}
		t.Fatalf("burrow server init: %v\nstdout:\n%s\nstderr:\n%s", err, stdout, stderr)
	}
	raw := ""
	sc := bufio.NewScanner(strings.NewReader(stdout))
	for sc.Scan() {
		if line := strings.TrimSpace(sc.Text()); strings.HasPrefix(line, "vless://") {
			raw = line
			break
		}
	}
	if raw == "" {
		t.Fatalf("burrow server init printed no line starting with vless://\nstdout:\n%s", stdout)
	}
	link, err := parseVLESSLink(raw)
	if err != nil {
		t.Fatalf("parse the link burrow server init printed: %v", err)
	}
	p := startBurrow(t, "server", "run", "--data", data)
	p.waitListening(t, addr)
	return &burrowServer{Addr: addr, Link: link, Raw: raw}
}

// vlessLink is a vless:// share link as v2rayN/Xray clients read it:
//
//	vless://UUID@HOST:PORT?encryption=none&security=reality&type=tcp
//	       &flow=xtls-rprx-vision&sni=SNI&fp=chrome&pbk=PUBKEY&sid=SHORTID&spx=PATH#NAME
//
// It is parsed here independently of Burrow's internal/links, so the test
// checks what a third-party client would read.
type vlessLink struct {
	UUID        string
	Host        string
	Port        int
	Flow        string
	Security    string
	Type        string
	SNI         string
	Fingerprint string
	PublicKey   string // pbk, base64 raw URL
	ShortID     string // sid, hex
	SpiderX     string // spx
	Name        string
}

func parseVLESSLink(s string) (vlessLink, error) {
	u, err := url.Parse(s)
	if err != nil {
		return vlessLink{}, fmt.Errorf("link: %w", err)
	}
	if u.Scheme != "vless" {
		return vlessLink{}, fmt.Errorf("link: scheme = %q, want vless", u.Scheme)
	}
	if u.User == nil || u.User.Username() == "" {
		return vlessLink{}, errors.New("link: no UUID before @")
	}
	port, err := strconv.Atoi(u.Port())
	if err != nil || port <= 0 || port > 65535 {
		return vlessLink{}, fmt.Errorf("link: bad port %q", u.Port())
	}
	q := u.Query()
	l := vlessLink{
		UUID:        u.User.Username(),
		Host:        u.Hostname(),
		Port:        port,
		Flow:        q.Get("flow"),
		Security:    q.Get("security"),
		Type:        q.Get("type"),
		SNI:         q.Get("sni"),
		Fingerprint: q.Get("fp"),
		PublicKey:   q.Get("pbk"),
		ShortID:     q.Get("sid"),
		SpiderX:     q.Get("spx"),
		Name:        u.Fragment,
	}
	if enc := q.Get("encryption"); enc != "" && enc != "none" {
		return l, fmt.Errorf("link: encryption = %q, want none", enc)
	}
	if l.Security != "reality" {
		return l, fmt.Errorf("link: security = %q, want reality", l.Security)
	}
	if l.Type != "" && l.Type != "tcp" && l.Type != "raw" {
		return l, fmt.Errorf("link: type = %q, want tcp", l.Type)
	}
	if l.PublicKey == "" || l.SNI == "" {
		return l, fmt.Errorf("link: pbk and sni are required, got pbk=%q sni=%q", l.PublicKey, l.SNI)
	}
	return l, nil
}

// String builds the link back, in the field order Xray's share links use.
func (l vlessLink) String() string {
	q := url.Values{}
	q.Set("encryption", "none")
	q.Set("flow", l.Flow)
	q.Set("security", l.Security)
	q.Set("sni", l.SNI)
	q.Set("fp", l.Fingerprint)
	q.Set("pbk", l.PublicKey)
	q.Set("sid", l.ShortID)
	if l.SpiderX != "" {
		q.Set("spx", l.SpiderX)
	}
	q.Set("type", l.Type)
	u := url.URL{
		Scheme:   "vless",
		User:     url.User(l.UUID),
		Host:     net.JoinHostPort(l.Host, strconv.Itoa(l.Port)),
		RawQuery: q.Encode(),
		Fragment: l.Name,
	}
	return u.String()
}
