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
	"slices"
	"strings"
	"syscall"

	"golang.org/x/term"
)

const usage = `burrow — a censorship-resistant VPN (VLESS + REALITY + Vision, Xray-compatible)

Server:
  burrow server init --cover HOST:PORT --sni NAME [--data DIR] [--listen :443] [--public-addr HOST]
  burrow server run [--data DIR] [--metrics HOST:PORT] [--subscribe HOST:PORT] [--admin-listen 127.0.0.1:PORT] [--panel 127.0.0.1:PORT]
  burrow server stats [--days N] [--json]         what clients report about blocking (telemetry), per day

Web panel (burrow server run --panel 127.0.0.1:PORT):
  burrow admin add NAME [--role owner|operator|viewer] [--password-stdin] [--totp]
  burrow admin list | remove NAME | totp NAME [--off]

Users (work while the server runs):
  burrow user add NAME [--quota 50GB] [--expires 30d|2027-01-31] [--reset monthly|weekly|never] [--note TEXT]
  burrow user list | show NAME [--qr FILE.png] | set NAME ... | revoke NAME | enable NAME | rotate NAME | reset-traffic NAME

Entry relay (inside a whitelisted network; forwards to exits without reading the traffic):
  burrow server relay-token NAME [--revoke]       on an exit: a token for one relay
  burrow relay init --data DIR --listen HOST:PORT --public-addr HOST --exit TOKEN [--cover HOST:PORT --sni NAME]
  burrow relay run --data DIR [--metrics HOST:PORT]
  burrow user show NAME --via RELAYHOST:PORT      on the exit: the user's link through the relay

Fleet (a control plane for many exits and relays):
  burrow control init --data CDIR --cover HOST:PORT [--db sqlite|postgres://...]
  burrow control run --data CDIR [--subscribe HOST:PORT] [--metrics HOST:PORT]  serve the nodes (camouflaged like an exit)
  burrow control node-token NAME --data CDIR [--role exit|relay] [--revoke]
  burrow server init --join TOKEN --cover HOST:PORT [--data DIR] ...   an exit of the fleet
  burrow relay init --join TOKEN --data DIR --listen HOST:PORT ...    a relay of the fleet
  burrow control nodes --data CDIR
  burrow control path add|remove RELAY EXIT --data CDIR   which relay fronts which exit
  burrow control import --data CDIR --from SERVERDIR     a server's users into the fleet, links kept
  burrow user ... --data CDIR                      the user commands, fleet-wide

Client:
  burrow connect LINK|FILE [--socks 127.0.0.1:1080] [--http 127.0.0.1:8080] [--rules FILE|ru-direct]
  burrow connect LINK|FILE --tun [--kill-switch=false] [--dns 1.1.1.1:53] [--tun-name burrow0]   (Linux, root)

Try it on one machine (local cover site, server and client, no internet needed):
  burrow demo [--once] [--data DIR]
  burrow cover --listen 127.0.0.1:8443 --sni NAME   a stand-in HTTPS cover site for a trial server

Censorship checks:
  burrow lab [--json] [--scenario NAME]          run tunnels and baselines through simulated censors
  burrow check HOST:PORT --sni NAME [--cover HOST:PORT]   audit a deployed server as a prober would

  burrow version

Run 'burrow COMMAND -h' or 'burrow help COMMAND' for a command's flags.
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
		return // help was asked for and printed
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
	case "help", "-h", "-help", "--help":
		if len(rest) == 0 {
			fmt.Fprint(stdout, usage)
			return nil
		}
		// `burrow help CMD [SUB]` is `burrow CMD [SUB] -h`.
		return run(ctx, append(slices.Clone(rest), "-h"), stdout, stderr)
	case "version", "--version":
		printVersion(stdout)
		return nil
	}
	rest = helpWord(cmd, rest)
	if wantsHelp(rest) {
		stderr = stdout // asked-for help goes to stdout
	}
	switch cmd {
	case "server":
		return runServer(ctx, rest, stdout, stderr)
	case "user", "users":
		return runUser(rest, stdout, stderr)
	case "connect":
		return runConnect(ctx, rest, stdout, stderr)
	case "cover":
		return runCover(ctx, rest, stdout, stderr)
	case "demo":
		return runDemo(ctx, rest, stdout, stderr)
	case "lab":
		return runLab(ctx, rest, stdout, stderr)
	case "check":
		return runCheck(ctx, rest, stdout, stderr)
	case "relay":
		return runRelay(ctx, rest, stdout, stderr)
	case "control":
		return runControl(ctx, rest, stdout, stderr)
	case "admin", "admins":
		return runAdmin(rest, os.Stdin, stdout, stderr)
	}
	fmt.Fprint(stderr, usage)
	return fmt.Errorf("unknown command %q", cmd)
}

// helpWord turns the word "help" where it can only mean help into -h:
// `burrow server help`, `burrow user add help`, `burrow connect help`.
func helpWord(cmd string, rest []string) []string {
	group := cmd == "server" || cmd == "user" || cmd == "users" || cmd == "relay" || cmd == "control" || cmd == "admin" || cmd == "admins"
	switch {
	case len(rest) == 1 && rest[0] == "help":
		return []string{"-h"}
	case group && len(rest) == 2 && rest[1] == "help":
		return []string{rest[0], "-h"}
	}
	return rest
}

// wantsHelp reports whether args ask for help (-h, -help or --help before any "--").
func wantsHelp(args []string) bool {
	for _, a := range args {
		switch a {
		case "--":
			return false
		case "-h", "-help", "--help":
			return true
		}
	}
	return false
}

// isHelpFlag reports whether a is -h, -help or --help.
func isHelpFlag(a string) bool { return a == "-h" || a == "-help" || a == "--help" }

const serverUsage = `usage: burrow server init --cover HOST:PORT [--sni NAME] [--data DIR] [flags]   create a server
       burrow server run [--data DIR] [flags]                                    run it
       burrow server install [--data DIR] [--print]                              run it as a systemd service
       burrow server uninstall                                                   remove the service (keeps the data)
       burrow server upgrade BINARY                                              replace the binary, restart the service
       burrow server relay-token NAME [--revoke] [--data DIR]                    a token for an entry relay (burrow relay)
       burrow server stats [--days N] [--json] [--data DIR]                      what clients report about blocking, per day
       burrow server find-cover --near ADDR [--bits 24] [--all]                  find a cover site next to this server

Run 'burrow server SUBCOMMAND -h' for its flags.
`

func runServer(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, serverUsage)
		return exitError{2}
	}
	if isHelpFlag(args[0]) {
		fmt.Fprint(stderr, serverUsage) // stdout: run sends asked-for help there
		return nil
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
	case "relay-token":
		return serverRelayToken(args[1:], stdout, stderr)
	case "stats":
		return serverStats(args[1:], stdout, stderr)
	case "find-cover":
		return serverFindCover(ctx, args[1:], stdout, stderr)
	}
	fmt.Fprint(stderr, serverUsage)
	return fmt.Errorf("server: unknown subcommand %.40q (want init, run, install, uninstall, upgrade, relay-token, stats or find-cover)", args[0])
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

// newFlagSet returns the flag set of command name ("connect", "user add"),
// whose -h prints the command's usage line (commandUsage) and its flags.
func newFlagSet(name string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	line, ok := commandUsage[name]
	if !ok {
		line = "burrow " + name + " [flags]"
	}
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage: %s\n", line)
		n := 0
		fs.VisitAll(func(*flag.Flag) { n++ })
		if n > 0 {
			fmt.Fprintln(fs.Output(), "\nflags:")
			fs.PrintDefaults()
		}
	}
	return fs
}

// commandUsage is each command's usage line, printed by -h above its flags.
var commandUsage = map[string]string{
	"server init":        "burrow server init --cover HOST:PORT [--sni NAME] [--data DIR] [--listen :443] [--public-addr HOST] [flags]",
	"server run":         "burrow server run [--data DIR] [flags]",
	"server install":     "burrow server install [--data DIR] [--print] [flags]",
	"server uninstall":   "burrow server uninstall [flags]",
	"server upgrade":     "burrow server upgrade BINARY [flags]",
	"server relay-token": "burrow server relay-token NAME [--revoke] [--data DIR]",
	"server stats":       "burrow server stats [--days N] [--json] [--data DIR]",
	"relay init":         "burrow relay init --data DIR --listen HOST:PORT --public-addr HOST --exit TOKEN [--exit TOKEN ...] [--cover HOST:PORT --sni NAME]",
	"relay run":          "burrow relay run --data DIR [--metrics HOST:PORT] [--debug]",
	"relay install":      "burrow relay install [--data DIR] [--print] [flags]",
	"relay uninstall":    "burrow relay uninstall [flags]",
	"relay upgrade":      "burrow relay upgrade BINARY [flags]",
	"user add":           "burrow user add NAME [--quota 50GB] [--expires 30d|2027-01-31] [--reset monthly|weekly|never] [--note TEXT]",
	"user list":          "burrow user list",
	"user show":          "burrow user show NAME [--qr FILE.png] [--transport tcp|xhttp] [--via RELAYHOST:PORT]",
	"user set":           "burrow user set NAME [--quota SIZE] [--expires WHEN|never] [--reset monthly|weekly|never] [--note TEXT]",
	"user revoke":        "burrow user revoke NAME      (cut the user off; 'burrow user enable NAME' undoes it)",
	"user enable":        "burrow user enable NAME      (lift a revocation: the user's link works again)",
	"user rotate":        "burrow user rotate NAME      (give the user a new link; the old one stops working)",
	"user reset-traffic": "burrow user reset-traffic NAME",
	"connect":            "burrow connect LINK|FILE [flags]\n  LINK is a vless:// link (quote it in the shell), FILE a file holding one",
	"cover":              "burrow cover [--listen 127.0.0.1:8443] [--sni NAME]",
	"demo":               "burrow demo [--once] [--data DIR] [--socks ADDR] [--http ADDR]",
	"admin add":          "burrow admin add NAME [--role owner|operator|viewer] [--password-stdin] [--totp] [--data DIR]",
	"admin list":         "burrow admin list [--data DIR]",
	"admin remove":       "burrow admin remove NAME [--data DIR]",
	"admin totp":         "burrow admin totp NAME [--off] [--data DIR]",
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
