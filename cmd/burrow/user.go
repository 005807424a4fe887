package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/burrow-vpn/burrow/internal/access"
	"github.com/burrow-vpn/burrow/internal/admin"
	"github.com/burrow-vpn/burrow/internal/control"
	"github.com/burrow-vpn/burrow/internal/links"
	"github.com/burrow-vpn/burrow/internal/server"
	"github.com/burrow-vpn/burrow/internal/transport/xhttp"
)

// userLink builds the vless:// link of u on the server cfg.
func userLink(cfg *server.Config, u *access.User) (*links.VLESS, error) {
	pub, err := server.DecodeKey(cfg.PublicKey)
	if err != nil {
		return nil, err
	}
	sid, err := server.DecodeShortID(cfg.ShortIDs[0])
	if err != nil {
		return nil, err
	}
	_, port, err := splitPort(cfg.Listen)
	if err != nil {
		return nil, err
	}
	return &links.VLESS{
		UUID:        u.UUID,
		Host:        cfg.PublicAddr,
		Port:        port,
		Security:    "reality",
		Encryption:  "none",
		SNI:         cfg.ServerNames[0],
		Fingerprint: cfg.Fingerprint,
		PublicKey:   pub,
		ShortID:     sid,
		Flow:        "xtls-rprx-vision",
		Type:        "tcp",
		TCPMux:      true,
		Name:        u.Name,
	}, nil
}

// userXHTTPLink builds u's link for the XHTTP transport with rotation on
// (budget=, which other clients ignore; they get plain XHTTP packet-up).
// The server accepts any path; the link's is fixed per server key so it
// stays the same for everyone.
func userXHTTPLink(cfg *server.Config, u *access.User) (*links.VLESS, error) {
	l, err := userLink(cfg, u)
	if err != nil {
		return nil, err
	}
	sum := sha256.Sum256(append([]byte("burrow xhttp path "), l.PublicKey...))
	l.Type, l.Flow, l.TCPMux = links.TypeXHTTP, "", false
	l.XHTTP = &links.XHTTP{Mode: links.ModePacketUp, Path: "/assets/" + hex.EncodeToString(sum[:6]), Budget: xhttp.DefaultBudget}
	return l, nil
}

// printXHTTPLink prints u's XHTTP link and, like printUserLink, the
// subscription URL (the subscription carries both links).
func printXHTTPLink(w io.Writer, cfg *server.Config, ui *admin.UserInfo, qrFile string) error {
	u, err := ui.User()
	if err != nil {
		return err
	}
	l, err := userXHTTPLink(cfg, u)
	if err != nil {
		return err
	}
	if err := writeLink(w, l.String(), qrFile); err != nil {
		return err
	}
	if ui.SubscriptionURL != "" {
		fmt.Fprintf(w, "subscription: %s\n", ui.SubscriptionURL)
	}
	return nil
}

func splitPort(hostport string) (string, uint16, error) {
	i := strings.LastIndexByte(hostport, ':')
	if i < 0 {
		return "", 0, fmt.Errorf("address %q has no port", hostport)
	}
	p, err := strconv.ParseUint(hostport[i+1:], 10, 16)
	if err != nil || p == 0 {
		return "", 0, fmt.Errorf("address %q: bad port", hostport)
	}
	return hostport[:i], uint16(p), nil
}

// printLink prints u's link (and a QR code when stdout is a terminal).
func printLink(w io.Writer, cfg *server.Config, u *access.User, qrFile string) error {
	l, err := userLink(cfg, u)
	if err != nil {
		return err
	}
	return writeLink(w, l.String(), qrFile)
}

// writeLink prints link s (with a QR code on a terminal) and writes its QR
// code to qrFile if set.
func writeLink(w io.Writer, s, qrFile string) error {
	fmt.Fprintln(w, s)
	if isTerminal(w) {
		fmt.Fprint(w, links.QRTerminal(s))
	}
	if qrFile != "" {
		png, err := links.QRPNG(s, 512)
		if err != nil {
			return err
		}
		if err := os.WriteFile(qrFile, png, 0o600); err != nil {
			return fmt.Errorf("write QR code: %w", err)
		}
	}
	return nil
}

// userEnv is what every `burrow user` command needs: the server config (for
// links) and the admin API — the running server's, over its unix socket, or
// the store itself when no server answers. Both implement admin.API, so each
// command below has one code path.
type userEnv struct {
	cfg   *server.Config // nil on a control directory
	fleet control.Store  // set on a control directory: links come from its nodes
	api   admin.API
	live  bool // api is the running server's: connected-now counts are real
	close func()
}

func openUserEnv(ctx context.Context, data, sock string) (*userEnv, error) {
	if control.IsControlDir(data) {
		// The store is shared safely with a running control plane, and
		// every change reaches the nodes through its change log.
		_, st, err := openControl(ctx, data)
		if err != nil {
			return nil, err
		}
		return &userEnv{fleet: st, api: &admin.Local{Store: st}, close: func() { st.Close() }}, nil
	}
	cfg, err := server.LoadConfig(data)
	if err != nil {
		return nil, err
	}
	if cfg.Join != "" {
		return nil, errFleetNode
	}
	if sock == "" {
		sock = filepath.Join(data, server.AdminSock)
	}
	if c, err := admin.DialUnix(ctx, sock); err == nil {
		return &userEnv{cfg: cfg, api: c, live: true, close: c.Close}, nil
	}
	st, err := access.OpenSQLite(filepath.Join(data, server.StoreFile))
	if err != nil {
		return nil, fmt.Errorf("open user store: %w", err)
	}
	return &userEnv{cfg: cfg, api: &admin.Local{Store: st}, close: func() { st.Close() }}, nil
}

const userSubcommands = "add, list, show, set, revoke, enable, rotate or reset-traffic"

const userUsage = `usage: burrow user add NAME [--quota 50GB] [--expires 30d|2027-01-31] [--reset monthly|weekly|never] [--note TEXT]
       burrow user list
       burrow user show NAME [--qr FILE.png] [--transport tcp|xhttp] [--node NAME]
       burrow user set NAME [--quota SIZE] [--expires WHEN|never] [--reset PERIOD] [--note TEXT]
       burrow user revoke NAME | enable NAME | rotate NAME | reset-traffic NAME

They work while the server runs (through its admin socket) and while it is
stopped (on its store). Every one takes --data DIR; on a control plane's
directory (burrow control init) they act on the whole fleet, and links are
printed for every exit and relay path (--node NAME: only through that node). Run 'burrow user SUBCOMMAND -h'
for its flags.
`

func runUser(args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, userUsage)
		return exitError{2}
	}
	if isHelpFlag(args[0]) {
		fmt.Fprint(stderr, userUsage) // stdout: run sends asked-for help there
		return nil
	}
	sub, args := args[0], args[1:]
	fs := newFlagSet("user "+sub, stderr)
	data := fs.String("data", server.DefaultDataDir(), "server data directory, or a control plane's (burrow control init)")
	sock := fs.String("admin-socket", "", "admin API socket of the running server (default DATA/admin.sock)")
	var quota, expires, reset, note, qr, transport, via, node *string
	switch sub {
	case "add", "set":
		quota = fs.String("quota", "", "traffic per period, e.g. 50GB, 20GiB (0 = unlimited)")
		expires = fs.String("expires", "", "expiry: a duration like 30d, 12h, or a date 2027-01-31 (\"never\" to clear)")
		reset = fs.String("reset", "", "when traffic counters restart: monthly, weekly or never")
		note = fs.String("note", "", "free text for the operator")
	case "show":
		qr = fs.String("qr", "", "also write the link's QR code to this PNG file")
		transport = fs.String("transport", "tcp", "link for: tcp (REALITY + Vision) or xhttp (XHTTP with connection rotation)")
		via = fs.String("via", "", "the link through the entry relay at HOST:PORT (see burrow relay)")
		node = fs.String("node", "", "on a control directory: only the links through this exit or relay")
	case "list", "revoke", "enable", "rotate", "reset-traffic":
	default:
		fmt.Fprint(stderr, userUsage)
		return fmt.Errorf("user: unknown subcommand %.40q (want %s)", sub, userSubcommands)
	}
	pos, err := parseArgs(fs, args)
	if err != nil {
		return err
	}
	wantArgs := 1
	if sub == "list" {
		wantArgs = 0
	}
	if len(pos) != wantArgs {
		if wantArgs == 0 {
			return fmt.Errorf("user %s: takes no arguments", sub)
		}
		return fmt.Errorf("user %s: want exactly one user NAME", sub)
	}
	given := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { given[f.Name] = true })
	ctx := context.Background()
	env, err := openUserEnv(ctx, *data, *sock)
	if err != nil {
		return err
	}
	defer env.close()
	api := env.api

	if sub == "list" {
		users, err := api.ListUsers(ctx)
		if err != nil {
			return fmt.Errorf("user list: %w", err)
		}
		return listUsers(stdout, users, env.live)
	}
	name := pos[0]
	var u *admin.UserInfo
	switch sub {
	case "add":
		for _, f := range []string{"quota", "expires", "reset"} {
			if given[f] && fs.Lookup(f).Value.String() == "" {
				return fmt.Errorf("user add: --%s: empty (leave the flag out for the default)", f)
			}
		}
		u, err = api.AddUser(ctx, admin.AddRequest{Name: name, Quota: *quota, Expires: *expires, Reset: *reset, Note: *note})
		if err != nil {
			return fmt.Errorf("user add: %w", err)
		}
		fmt.Fprintf(stderr, "Added user %q. Their link:\n", u.Name)
		if env.fleet != nil {
			return printFleetLinks(ctx, stdout, stderr, env.fleet, u, "", "")
		}
		return printUserLink(stdout, env.cfg, u, "")
	case "show":
		if u, err = api.User(ctx, name); err != nil {
			return fmt.Errorf("user show: %w", err)
		}
		if *transport != "tcp" && *transport != "xhttp" {
			return fmt.Errorf("user show: --transport %.20q: want tcp or xhttp", *transport)
		}
		if env.fleet != nil {
			if *via != "" || *transport != "tcp" {
				return errors.New("user show: --via and --transport xhttp are for a single server; a control plane lists every relay path itself")
			}
			printUser(stdout, u, env.live)
			return printFleetLinks(ctx, stdout, stderr, env.fleet, u, *node, *qr)
		}
		if *node != "" {
			return errors.New("user show: --node is for a control plane's directory")
		}
		cfg := env.cfg
		if *via != "" {
			if cfg, err = viaRelay(ctx, *data, cfg, *via, stderr); err != nil {
				return fmt.Errorf("user show: %w", err)
			}
		}
		printUser(stdout, u, env.live)
		if *transport == "xhttp" {
			return printXHTTPLink(stdout, cfg, u, *qr)
		}
		return printUserLink(stdout, cfg, u, *qr)
	case "set":
		var req admin.SetRequest
		if given["quota"] {
			req.Quota = quota
		}
		if given["expires"] {
			req.Expires = expires
		}
		if given["reset"] {
			req.Reset = reset
		}
		if given["note"] {
			req.Note = note
		}
		if u, err = api.SetUser(ctx, name, req); err != nil {
			return fmt.Errorf("user set: %w", err)
		}
		printUser(stdout, u, env.live)
	case "revoke":
		if u, err = api.Revoke(ctx, name); err != nil {
			return fmt.Errorf("user revoke: %w", err)
		}
		fmt.Fprintf(stdout, "Revoked %q: their connections are cut within a second and their link no longer works (`burrow user enable %s` undoes it).\n", u.Name, u.Name)
	case "enable":
		return enableUser(ctx, api, name, stdout)
	case "rotate":
		if u, err = api.Rotate(ctx, name); err != nil {
			return fmt.Errorf("user rotate: %w", err)
		}
		fmt.Fprintf(stderr, "Rotated %q: the old link stopped working. The new link:\n", u.Name)
		if env.fleet != nil {
			return printFleetLinks(ctx, stdout, stderr, env.fleet, u, "", "")
		}
		return printUserLink(stdout, env.cfg, u, "")
	case "reset-traffic":
		if u, err = api.ResetTraffic(ctx, name); err != nil {
			return fmt.Errorf("user reset-traffic: %w", err)
		}
		fmt.Fprintf(stdout, "Traffic of %q reset to zero.\n", u.Name)
	}
	return nil
}

// enableUser lifts NAME's revocation and says whether they can connect now.
func enableUser(ctx context.Context, api admin.API, name string, stdout io.Writer) error {
	before, err := api.User(ctx, name)
	if err != nil {
		return fmt.Errorf("user enable: %w", err)
	}
	if !before.Revoked {
		fmt.Fprintf(stdout, "%q is not revoked; nothing changed (status: %s).\n", before.Name, before.Status)
		return nil
	}
	u, err := api.Enable(ctx, name)
	if err != nil {
		return fmt.Errorf("user enable: %w", err)
	}
	if u.Status != "active" {
		fmt.Fprintf(stdout, "Enabled %q, but they still cannot connect: %s (see `burrow user set`, `burrow user reset-traffic`).\n", u.Name, u.Status)
		return nil
	}
	fmt.Fprintf(stdout, "Enabled %q: their link works again.\n", u.Name)
	return nil
}

// printUserLink prints the user's link (and QR code), then the
// subscription URL when the running server serves subscriptions.
func printUserLink(w io.Writer, cfg *server.Config, ui *admin.UserInfo, qrFile string) error {
	u, err := ui.User()
	if err != nil {
		return err
	}
	if err := printLink(w, cfg, u, qrFile); err != nil {
		return err
	}
	if ui.SubscriptionURL != "" {
		fmt.Fprintf(w, "subscription: %s\n", ui.SubscriptionURL)
	}
	return nil
}

func usageText(u *admin.UserInfo) string {
	used := access.FormatSize(addSat(u.BytesUp, u.BytesDown))
	if u.Quota > 0 {
		return used + " / " + access.FormatSize(u.Quota)
	}
	return used + " / unlimited"
}

func addSat(a, b int64) int64 {
	if s := a + b; s >= a {
		return s
	}
	return 1<<63 - 1
}

func expiry(u *admin.UserInfo) string {
	if u.ExpiresAt.IsZero() {
		return "never"
	}
	return u.ExpiresAt.UTC().Format("2006-01-02 15:04")
}

func connected(u *admin.UserInfo, live bool) string {
	if !live {
		return "-"
	}
	return strconv.Itoa(u.Connected)
}

func printUser(w io.Writer, u *admin.UserInfo, live bool) {
	fmt.Fprintf(w, "name:       %s\n", u.Name)
	fmt.Fprintf(w, "status:     %s\n", u.Status)
	fmt.Fprintf(w, "created:    %s\n", u.CreatedAt.UTC().Format("2006-01-02"))
	fmt.Fprintf(w, "traffic:    %s (up %s, down %s; resets %s)\n", usageText(u), access.FormatSize(u.BytesUp), access.FormatSize(u.BytesDown), orNever(u.Reset))
	fmt.Fprintf(w, "expires:    %s\n", expiry(u))
	fmt.Fprintf(w, "last seen:  %s\n", orDash(u.LastSeenDay))
	fmt.Fprintf(w, "connected:  %s\n", connected(u, live))
	if u.Note != "" {
		fmt.Fprintf(w, "note:       %s\n", u.Note)
	}
}

func orNever(s string) string {
	if s == "" {
		return "never"
	}
	return s
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// listUsers prints one line per user. CONNECTED is "-" when the server is
// not running (or its admin socket is off): nobody's connections are known.
func listUsers(w io.Writer, users []admin.UserInfo, live bool) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tSTATUS\tCREATED\tUSED / QUOTA\tEXPIRES\tCONNECTED\tLAST SEEN")
	for i := range users {
		u := &users[i]
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", u.Name, u.Status, u.CreatedAt.UTC().Format("2006-01-02"),
			usageText(u), expiry(u), connected(u, live), orDash(u.LastSeenDay))
	}
	return tw.Flush()
}

// printFleetLinks prints ui's link for every exit and relay path of the
// fleet (or only through node), each under its path's name.
func printFleetLinks(ctx context.Context, w, stderr io.Writer, st control.Store, ui *admin.UserInfo, node, qrFile string) error {
	u, err := ui.User()
	if err != nil {
		return err
	}
	nodes, err := st.ListNodes(ctx)
	if err != nil {
		return err
	}
	paths, err := st.RelayPaths(ctx)
	if err != nil {
		return err
	}
	var only *control.Node
	if node != "" {
		if only, err = st.NodeByName(ctx, node); err != nil {
			return err
		}
	}
	ls, err := control.UserLinks(u, nodes, paths, only)
	if err != nil {
		return err
	}
	if len(ls) == 0 {
		fmt.Fprintln(stderr, "No links yet: no exit has joined the fleet (burrow control node-token NAME --role exit, then burrow server init --join TOKEN on the exit).")
		return nil
	}
	if qrFile != "" && len(ls) > 1 {
		fmt.Fprintf(stderr, "%s holds the first link (%s); --node NAME chooses another.\n", qrFile, ls[0].Label())
	}
	for i, l := range ls {
		fmt.Fprintf(w, "%s:\n", l.Label())
		if i > 0 {
			qrFile = ""
		}
		if err := writeLink(w, l.Link.String(), qrFile); err != nil {
			return err
		}
	}
	return nil
}
