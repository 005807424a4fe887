// Command burrow is Burrow's single binary: the camouflaged exit server, the
// user administration, and the client. See `burrow help`.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/pprof"
	"strings"
	"syscall"

	"golang.org/x/term"
)

const usage = `burrow — a censorship-resistant VPN (VLESS + REALITY + Vision, Xray-compatible)

Server:
  burrow server init --cover HOST:PORT --sni NAME [--data DIR] [--listen :443] [--public-addr HOST]
  burrow server run [--data DIR] [--metrics HOST:PORT] [--subscribe HOST:PORT] [--admin-listen 127.0.0.1:PORT]

Users (work while the server runs):
  burrow user add NAME [--quota 50GB] [--expires 30d|2027-01-31] [--reset monthly|weekly|never] [--note TEXT]
  burrow user list | show NAME [--qr FILE.png] | set NAME ... | revoke NAME | rotate NAME | reset-traffic NAME

Client:
  burrow connect LINK|FILE [--socks 127.0.0.1:1080] [--http 127.0.0.1:8080] [--rules FILE|ru-direct]
  burrow connect LINK|FILE --tun [--kill-switch=false] [--dns 1.1.1.1:53] [--tun-name burrow0]   (Linux, root)

Try it on one machine (local cover site, server and client, no internet needed):
  burrow demo

Censorship checks:
  burrow lab [--json] [--scenario NAME]          run tunnels and baselines through simulated censors
  burrow check HOST:PORT --sni NAME [--cover HOST:PORT]   audit a deployed server as a prober would

Run 'burrow COMMAND -h' for a command's flags.
`

// exitError carries an exit status out of a command.
type exitError struct{ code int }

func (e exitError) Error() string { return fmt.Sprintf("exit status %d", e.code) }

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	stopProfile := startProfile(os.Getenv("BURROW_CPUPROFILE"))
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stopProfile()
	stop()
	if err == nil {
		return
	}
	var ee exitError
	if errors.As(err, &ee) {
		os.Exit(ee.code)
	}
	if errors.Is(err, flag.ErrHelp) {
		os.Exit(2)
	}
	fmt.Fprintln(os.Stderr, "burrow:", err)
	os.Exit(1)
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return exitError{2}
	}
	cmd, rest := args[0], args[1:]
	switch cmd {
	case "server":
		return runServer(ctx, rest, stdout, stderr)
	case "user", "users":
		return runUser(rest, stdout, stderr)
	case "connect":
		return runConnect(ctx, rest, stdout, stderr)
	case "demo":
		return runDemo(ctx, rest, stdout, stderr)
	case "lab":
		return runLab(ctx, rest, stdout, stderr)
	case "check":
		return runCheck(ctx, rest, stdout, stderr)
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return nil
	case "version", "--version":
		fmt.Fprintln(stdout, "burrow", version)
		return nil
	}
	fmt.Fprint(stderr, usage)
	return fmt.Errorf("unknown command %q", cmd)
}

var version = "dev"

func runServer(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		return errors.New("server: want `burrow server init` or `burrow server run`")
	}
	switch args[0] {
	case "init":
		return serverInit(args[1:], stdout, stderr)
	case "run":
		return serverRun(ctx, args[1:], stdout, stderr)
	case "install":
		return serverInstall(args[1:], stdout, stderr)
	case "uninstall":
		return serverUninstall(args[1:], stdout, stderr)
	case "upgrade":
		return serverUpgrade(ctx, args[1:], stdout, stderr)
	}
	return fmt.Errorf("server: unknown subcommand %q (want init, run, install, uninstall or upgrade)", args[0])
}

// parseArgs parses flags that may come before, between or after positional
// arguments (`user add NAME --quota 5GB`), and returns the positionals.
func parseArgs(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		args = fs.Args()
		if len(args) == 0 {
			return pos, nil
		}
		if args[0] == "--" {
			return append(pos, args[1:]...), nil
		}
		pos = append(pos, args[0])
		args = args[1:]
	}
}

func newFlagSet(name string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	return fs
}

func newLogger(w io.Writer, debug bool) *slog.Logger {
	lvl := slog.LevelInfo
	if debug {
		lvl = slog.LevelDebug
	}
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: lvl}))
}

// isTerminal reports whether w is a terminal (a console on Windows).
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

// splitList splits a comma-separated flag value, dropping empty items.
func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// startProfile writes a CPU profile of the whole run to path, or to
// path/burrow-PID.pprof if path is a directory (the BURROW_CPUPROFILE
// environment variable; for `go tool pprof`, as the profiling recipe in
// bench/README.md uses it). An empty path, or one that cannot be created,
// profiles nothing (the latter says so).
func startProfile(path string) (stop func()) {
	if path == "" {
		return func() {}
	}
	if st, err := os.Stat(path); err == nil && st.IsDir() {
		path = filepath.Join(path, fmt.Sprintf("burrow-%d.pprof", os.Getpid()))
	}
	f, err := os.Create(path)
	if err != nil {
		fmt.Fprintln(os.Stderr, "burrow: BURROW_CPUPROFILE:", err)
		return func() {}
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		fmt.Fprintln(os.Stderr, "burrow: BURROW_CPUPROFILE:", err)
		f.Close()
		return func() {}
	}
	return func() {
		pprof.StopCPUProfile()
		f.Close()
	}
}
