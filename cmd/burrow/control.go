package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"text/tabwriter"
	"time"

	"github.com/burrow-vpn/burrow/internal/access"
	"github.com/burrow-vpn/burrow/internal/camo"
	"github.com/burrow-vpn/burrow/internal/control"
	"github.com/burrow-vpn/burrow/internal/server"
)

const controlUsage = `usage: burrow control init --data CDIR --cover HOST:PORT [--sni NAME] [--db sqlite|postgres://...] [--listen :443] [--public-addr HOST]
       burrow control run --data CDIR [--listen HOST:PORT] [--metrics HOST:PORT] [--subscribe HOST:PORT] [--panel 127.0.0.1:PORT]
       burrow control node-token NAME --data CDIR [--role exit|relay] [--revoke]
       burrow control nodes --data CDIR
       burrow control path add|remove RELAY EXIT --data CDIR   which relay fronts which exit
       burrow control path list --data CDIR
       burrow control import --data CDIR --from SERVERDIR   move a server's users into the fleet, links unchanged

The control plane keeps a fleet's users and nodes, in PostgreSQL (--db
postgres://...) or, to try it on one machine, SQLite. The user commands work
on it unchanged: burrow user add|list|show|set|... --data CDIR; so do the web
panel's (burrow admin add NAME --role owner --data CDIR, then control run --panel).
Run 'burrow control SUBCOMMAND -h' for its flags.
`

func runControl(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, controlUsage)
		return exitError{2}
	}
	if isHelpFlag(args[0]) {
		fmt.Fprint(stderr, controlUsage)
		return nil
	}
	switch args[0] {
	case "init":
		return controlInit(ctx, args[1:], stderr)
	case "run":
		return controlRun(ctx, args[1:], stderr)
	case "node-token":
		return controlNodeToken(ctx, args[1:], stdout, stderr)
	case "nodes":
		return controlNodes(ctx, args[1:], stdout, stderr)
	case "import":
		return controlImport(ctx, args[1:], stdout, stderr)
	case "path", "paths":
		return controlPath(ctx, args[1:], stdout, stderr)
	}
	fmt.Fprint(stderr, controlUsage)
	return fmt.Errorf("control: unknown subcommand %.40q (want init, run, node-token, nodes, path or import)", args[0])
}

func controlInit(ctx context.Context, args []string, stderr io.Writer) error {
	fs := newFlagSet("control init", stderr)
	data := fs.String("data", "", "control directory to create (required)")
	db := fs.String("db", control.DBSQLite, "the store: sqlite (a file in --data, for one machine) or a postgres:// URL")
	listen := fs.String("listen", ":443", "TCP address the camouflaged control endpoint accepts nodes on")
	publicAddr := fs.String("public-addr", "", "host or IP nodes reach the control plane at; default: detected from this machine's interfaces")
	cover := fs.String("cover", "", "HOST:PORT of the real HTTPS site probers of the control endpoint see (required)")
	sni := fs.String("sni", "", "server name(s) nodes send, comma-separated; default: the cover's host name")
	skipCheck := fs.Bool("skip-cover-check", false, "do not check now that the cover site speaks TLS 1.3 with X25519")
	pos, err := parseArgs(fs, args)
	if err != nil {
		return err
	}
	switch {
	case len(pos) > 0:
		return fmt.Errorf("control init: unexpected argument %q", pos[0])
	case *data == "":
		return errors.New("control init: --data CDIR is required")
	case *cover == "":
		return errors.New("control init: --cover HOST:PORT is required: the real HTTPS site probers of the control endpoint see")
	}
	names := splitList(*sni)
	if len(names) == 0 {
		host, _, err := net.SplitHostPort(*cover)
		if err != nil || net.ParseIP(host) != nil {
			return errors.New("control init: --sni NAME is required when --cover is an IP address")
		}
		names = []string{host}
	}
	if *publicAddr == "" {
		if *publicAddr, err = detectPublicAddr(); err != nil {
			return fmt.Errorf("control init: %w", err)
		}
	}
	cfg, err := control.NewConfig(*db, *listen, *publicAddr, *cover, names)
	if err != nil {
		return fmt.Errorf("control init: %w", err)
	}
	if !*skipCheck {
		cctx, cancel := context.WithTimeout(ctx, 15*time.Second)
		err := camo.CheckCover(cctx, nil, cfg.Cover, cfg.ServerNames[0])
		cancel()
		if err != nil {
			return fmt.Errorf("control init: %w\n(pass --skip-cover-check to set up anyway)", err)
		}
	}
	if err := control.Init(ctx, *data, cfg); err != nil {
		return fmt.Errorf("control init: %w", err)
	}
	store := "SQLite in " + filepath.Join(*data, control.StoreFile)
	if cfg.DB != control.DBSQLite {
		store = "PostgreSQL"
	}
	fmt.Fprintf(stderr, "Created the control plane in %s (store: %s; nodes reach it at %s).\n", *data, store,
		net.JoinHostPort(cfg.PublicAddr, portOf(cfg.Listen)))
	fmt.Fprintf(stderr, "Next: burrow control node-token NAME --data %s --role exit, then burrow user add NAME --data %s\n", *data, *data)
	return nil
}

// openControl loads the control dir's config and opens its store.
func openControl(ctx context.Context, dir string) (*control.Config, *control.SQLStore, error) {
	if dir == "" {
		return nil, nil, errors.New("--data CDIR is required")
	}
	cfg, err := control.LoadConfig(dir)
	if err != nil {
		return nil, nil, err
	}
	st, err := control.Open(ctx, dir, cfg)
	if err != nil {
		return nil, nil, fmt.Errorf("open control store: %w", err)
	}
	return cfg, st, nil
}

func controlNodeToken(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("control node-token", stderr)
	data := fs.String("data", "", "control directory (required)")
	roleFlag := fs.String("role", "exit", "what the node is: exit (a server) or relay (an entry relay)")
	revoke := fs.Bool("revoke", false, "revoke the node instead: its token stops working, its name is never reused")
	pos, err := parseArgs(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return errors.New("control node-token: want exactly one node NAME")
	}
	role, err := control.ParseRole(*roleFlag)
	if err != nil {
		return fmt.Errorf("control node-token: --role: %w", err)
	}
	cfg, st, err := openControl(ctx, *data)
	if err != nil {
		return fmt.Errorf("control node-token: %w", err)
	}
	defer st.Close()
	if *revoke {
		n, err := st.NodeByName(ctx, pos[0])
		if err == nil {
			err = st.RevokeNode(ctx, n.ID)
		}
		if err != nil {
			return fmt.Errorf("control node-token --revoke: %w", err)
		}
		fmt.Fprintf(stdout, "Revoked node %q: its token no longer works and its relay paths are gone.\n", n.Name)
		return nil
	}
	tok, rekeyed, err := control.IssueToken(ctx, st, cfg, pos[0], role)
	if err != nil {
		return fmt.Errorf("control node-token: %w", err)
	}
	if rekeyed {
		fmt.Fprintf(stderr, "Node %q existed: this is a new token, and its previous token stopped working.\n", tok.Name)
	}
	fmt.Fprintln(stdout, tok.String())
	return nil
}

func controlNodes(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("control nodes", stderr)
	data := fs.String("data", "", "control directory (required)")
	pos, err := parseArgs(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return fmt.Errorf("control nodes: unexpected argument %q", pos[0])
	}
	_, st, err := openControl(ctx, *data)
	if err != nil {
		return fmt.Errorf("control nodes: %w", err)
	}
	defer st.Close()
	nodes, err := st.ListNodes(ctx)
	if err != nil {
		return fmt.Errorf("control nodes: %w", err)
	}
	v, err := st.Version(ctx)
	if err != nil {
		return fmt.Errorf("control nodes: %w", err)
	}
	return listNodes(stdout, nodes, v, time.Now())
}

// listNodes prints one line per node. LAG is how many changes the node's
// replica is behind the log (version v).
func listNodes(w io.Writer, nodes []*control.Node, v int64, now time.Time) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tROLE\tADDRESS\tVERSION\tLAST SEEN\tONLINE\tTRAFFIC\tLAG\tHEALTH")
	for _, n := range nodes {
		seen, online, traffic, lag := "-", "-", "-", "-"
		if !n.Status.LastSeen.IsZero() {
			seen = n.Status.LastSeen.UTC().Format("2006-01-02 15:04:05")
			online = strconv.Itoa(n.Status.UsersOnline)
			traffic = access.FormatSize(addSat(n.Status.BytesUp, n.Status.BytesDown))
			lag = strconv.FormatInt(max(v-n.Status.AppliedVersion, 0), 10)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", n.Name, n.Role, orDash(n.Endpoint.Addr),
			orDash(n.Status.Version), seen, online, traffic, lag, n.Health(now))
	}
	return tw.Flush()
}

func controlImport(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("control import", stderr)
	data := fs.String("data", "", "control directory (required)")
	from := fs.String("from", "", "a server's data directory whose users to import (required; stop that server first)")
	pos, err := parseArgs(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return fmt.Errorf("control import: unexpected argument %q", pos[0])
	}
	if *from == "" {
		return errors.New("control import: --from SERVERDIR is required")
	}
	src := filepath.Join(*from, server.StoreFile)
	if _, err := os.Stat(src); err != nil {
		return fmt.Errorf("control import: %w", err)
	}
	old, err := access.OpenSQLite(src)
	if err != nil {
		return fmt.Errorf("control import: %w", err)
	}
	defer old.Close()
	if v, err := old.ReplicaVersion(ctx); err != nil {
		return fmt.Errorf("control import: %w", err)
	} else if v > 0 {
		return fmt.Errorf("control import: %s is a fleet node's replica of a control plane (at version %d), not a single server: its users belong to that control plane already, and its subscription tokens are placeholders; import from a single server's data directory, or restore the control plane's database (docs/fleet.md)", *from, v)
	}
	users, err := old.ListUsers(ctx)
	if err != nil {
		return fmt.Errorf("control import: %w", err)
	}
	_, st, err := openControl(ctx, *data)
	if err != nil {
		return fmt.Errorf("control import: %w", err)
	}
	defer st.Close()
	if err := st.ImportUsers(ctx, users); err != nil {
		return fmt.Errorf("control import: nothing imported: %w", err)
	}
	fmt.Fprintf(stdout, "Imported %d users from %s with their UUIDs and subscription tokens: the credentials they hold stay valid in the fleet.\n", len(users), *from)
	return nil
}

func controlPath(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || (args[0] != "add" && args[0] != "remove" && args[0] != "list") {
		return errors.New("control path: want add RELAY EXIT, remove RELAY EXIT or list")
	}
	sub := args[0]
	fs := newFlagSet("control path "+sub, stderr)
	data := fs.String("data", "", "control directory (required)")
	pos, err := parseArgs(fs, args[1:])
	if err != nil {
		return err
	}
	if want := map[string]int{"add": 2, "remove": 2, "list": 0}[sub]; len(pos) != want {
		return fmt.Errorf("control path %s: want %d arguments, got %d", sub, want, len(pos))
	}
	_, st, err := openControl(ctx, *data)
	if err != nil {
		return fmt.Errorf("control path: %w", err)
	}
	defer st.Close()
	if sub == "list" {
		return listPaths(ctx, stdout, st)
	}
	var ids [2]int64
	for i, name := range pos {
		n, err := st.NodeByName(ctx, name)
		if err != nil {
			return fmt.Errorf("control path %s: %w", sub, err)
		}
		ids[i] = n.ID
	}
	if sub == "add" {
		err = st.AddRelayPath(ctx, ids[0], ids[1])
	} else {
		err = st.RemoveRelayPath(ctx, ids[0], ids[1])
	}
	if err != nil {
		return fmt.Errorf("control path %s: %w", sub, err)
	}
	verb := map[string]string{"add": "now fronts", "remove": "no longer fronts"}[sub]
	fmt.Fprintf(stdout, "Relay %s %s exit %s; users' links and subscriptions follow.\n", pos[0], verb, pos[1])
	return nil
}

func listPaths(ctx context.Context, w io.Writer, st control.Store) error {
	nodes, err := st.ListNodes(ctx)
	if err != nil {
		return err
	}
	paths, err := st.RelayPaths(ctx)
	if err != nil {
		return err
	}
	name := map[int64]string{}
	for _, n := range nodes {
		name[n.ID] = n.Name
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "RELAY\tEXIT\tSINCE")
	for _, p := range paths {
		fmt.Fprintf(tw, "%s\t%s\t%s\n", name[p.Relay], name[p.Exit], p.CreatedAt.UTC().Format("2006-01-02"))
	}
	return tw.Flush()
}
