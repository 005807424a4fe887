package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/user"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/burrow-vpn/burrow/internal/access"
	"github.com/burrow-vpn/burrow/internal/control"
	"github.com/burrow-vpn/burrow/internal/links"
	"github.com/burrow-vpn/burrow/internal/panel"
	"github.com/burrow-vpn/burrow/internal/server"
)

// PanelURLFile is where `server run --panel` notes the panel's address, in
// the data dir, so `burrow admin add` can print a whole setup link.
const PanelURLFile = "panel.url"

const adminUsage = `usage: burrow admin add NAME [--role owner|operator|viewer] [--password-stdin] [--totp] [--data DIR]
       burrow admin list [--data DIR]
       burrow admin remove NAME [--data DIR]
       burrow admin totp NAME [--off] [--data DIR]

Administrators of the web panel (burrow server run --panel HOST:PORT; for a
fleet, burrow control run --panel HOST:PORT, with --data CDIR here). A new
admin gets a one-time setup link (valid 24 hours) that sets the password, or
reads it from standard input with --password-stdin. Roles: an owner may do
everything and manages admins; an operator manages users; a viewer looks.
'admin totp' gives an admin a new authenticator secret (every login then
needs its code), or with --off removes it.
`

func runAdmin(args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, adminUsage)
		return exitError{2}
	}
	if isHelpFlag(args[0]) {
		fmt.Fprint(stderr, adminUsage)
		return nil
	}
	switch args[0] {
	case "add":
		return adminAdd(args[1:], stdin, stdout, stderr)
	case "list", "ls":
		return adminList(args[1:], stdout, stderr)
	case "remove", "rm":
		return adminRemove(args[1:], stdout, stderr)
	case "totp":
		return adminTOTP(args[1:], stdout, stderr)
	}
	fmt.Fprint(stderr, adminUsage)
	return fmt.Errorf("admin: unknown subcommand %.40q (want add, list, remove or totp)", args[0])
}

// adminStore is where a panel's administrators live: a server's users.db,
// or a fleet's control store.
type adminStore interface {
	panel.Admins
	Close() error
}

// openAdminStore opens the store of the server, or of the control plane,
// in data. A fleet's exit has none of its own: its panel is the control
// plane's.
func openAdminStore(data string) (adminStore, error) {
	if _, err := os.Stat(filepath.Join(data, control.ConfigFile)); err == nil {
		_, st, err := openControl(context.Background(), data)
		if err != nil {
			return nil, err
		}
		return st, nil
	}
	cfg, err := server.LoadConfig(data)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%s holds no burrow server or control plane (run `burrow server init` first, or pass --data DIR): %w", data, err)
	}
	if err != nil {
		return nil, err
	}
	if cfg.Join != "" {
		return nil, fmt.Errorf("%s is a node of a fleet: its panel and administrators are the control plane's (burrow admin add NAME --data CDIR on the control machine): %w", data, access.ErrInvalid)
	}
	st, err := access.OpenSQLite(filepath.Join(data, server.StoreFile))
	if err != nil {
		return nil, fmt.Errorf("open store: %w", err)
	}
	return st, nil
}

// cliActor names who runs a command, for the audit log.
func cliActor() string {
	if u, err := user.Current(); err == nil && access.ValidateName(u.Username) == nil {
		return u.Username
	}
	return "root"
}

func adminAdd(args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	fs := newFlagSet("admin add", stderr)
	data := fs.String("data", server.DefaultDataDir(), "data directory of the server")
	role := fs.String("role", access.RoleViewer, "owner (everything, manages admins), operator (manages users) or viewer (looks)")
	pwStdin := fs.Bool("password-stdin", false, "read the password from the first line of standard input instead of printing a setup link")
	totp := fs.Bool("totp", false, "require a code from an authenticator app at every login (prints its QR code)")
	pos, err := parseArgs(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return errors.New("admin add: want one NAME")
	}
	if _, err := access.ParseRole(*role); err != nil || *role == "" {
		return fmt.Errorf("admin add: --role %.20q: want owner, operator or viewer", *role)
	}
	var pw string
	if *pwStdin {
		line, err := bufio.NewReader(stdin).ReadString('\n')
		if err != nil && !(errors.Is(err, io.EOF) && line != "") {
			return fmt.Errorf("admin add: read the password from standard input: %w", err)
		}
		pw = strings.TrimRight(line, "\r\n")
		if err := panel.ValidatePassword(pw); err != nil {
			return fmt.Errorf("admin add: %w", err)
		}
	}
	st, err := openAdminStore(*data)
	if err != nil {
		return fmt.Errorf("admin add: %w", err)
	}
	defer st.Close()
	ctx := context.Background()
	tok, a, err := panel.AddAdmin(ctx, st, pos[0], *role, pw, *totp, time.Now())
	if err != nil {
		return fmt.Errorf("admin add: %w", err)
	}
	if err := st.AddAudit(ctx, access.AuditEntry{Admin: cliActor(), Action: "admin.cli-add", Target: a.Name, Detail: "role=" + a.Role}); err != nil {
		return fmt.Errorf("admin add: %w", err)
	}
	fmt.Fprintf(stderr, "Added %s (%s).\n", a.Name, a.Role)
	if tok != "" {
		base, _ := os.ReadFile(filepath.Join(*data, PanelURLFile))
		if b := strings.TrimSpace(string(base)); b != "" {
			fmt.Fprintf(stderr, "Open this link once, within 24 hours, to set the password:\n")
			fmt.Fprintln(stdout, panel.SetupURL(b, tok))
		} else {
			fmt.Fprintf(stderr, "Open this path on the panel (run with --panel HOST:PORT) once, within 24 hours, to set the password:\n")
			fmt.Fprintln(stdout, "/setup/"+tok)
		}
	}
	if a.TOTPSecret != "" {
		uri := panel.TOTPURI("Burrow", a.Name, a.TOTPSecret)
		fmt.Fprintf(stderr, "Add this to the authenticator app (scan the QR code or type the secret %s):\n", a.TOTPSecret)
		fmt.Fprintln(stdout, uri)
		if isTerminal(stdout) {
			fmt.Fprint(stdout, links.QRTerminal(uri))
		}
	}
	return nil
}

func adminList(args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("admin list", stderr)
	data := fs.String("data", server.DefaultDataDir(), "data directory of the server")
	pos, err := parseArgs(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return fmt.Errorf("admin list: unexpected argument %q", pos[0])
	}
	st, err := openAdminStore(*data)
	if err != nil {
		return fmt.Errorf("admin list: %w", err)
	}
	defer st.Close()
	admins, err := st.ListAdmins(context.Background())
	if err != nil {
		return fmt.Errorf("admin list: %w", err)
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tROLE\tPASSWORD\tTOTP\tADDED")
	for _, a := range admins {
		pw, totp := "set", "off"
		if a.PasswordHash == "" {
			pw = "pending setup"
		}
		if a.TOTPSecret != "" {
			totp = "on"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", a.Name, a.Role, pw, totp, a.CreatedAt.Format(time.DateOnly))
	}
	return tw.Flush()
}

func adminRemove(args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("admin remove", stderr)
	data := fs.String("data", server.DefaultDataDir(), "data directory of the server")
	pos, err := parseArgs(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return errors.New("admin remove: want one NAME")
	}
	st, err := openAdminStore(*data)
	if err != nil {
		return fmt.Errorf("admin remove: %w", err)
	}
	defer st.Close()
	ctx := context.Background()
	if err := st.RemoveAdmin(ctx, pos[0]); err != nil {
		return fmt.Errorf("admin remove: %w", err)
	}
	if err := st.AddAudit(ctx, access.AuditEntry{Admin: cliActor(), Action: "admin.cli-remove", Target: pos[0]}); err != nil {
		return fmt.Errorf("admin remove: %w", err)
	}
	fmt.Fprintf(stdout, "Removed %s; their sessions end at their next request.\n", pos[0])
	return nil
}

func adminTOTP(args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("admin totp", stderr)
	data := fs.String("data", server.DefaultDataDir(), "data directory of the server")
	off := fs.Bool("off", false, "remove the admin's authenticator secret: the password alone logs in")
	pos, err := parseArgs(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return errors.New("admin totp: want one NAME")
	}
	st, err := openAdminStore(*data)
	if err != nil {
		return fmt.Errorf("admin totp: %w", err)
	}
	defer st.Close()
	ctx := context.Background()
	secret, action := panel.NewTOTPSecret(), "admin.cli-totp"
	if *off {
		secret, action = "", "admin.cli-totp-off"
	}
	if err := st.SetAdminTOTP(ctx, pos[0], secret); err != nil {
		return fmt.Errorf("admin totp: %w", err)
	}
	if err := st.AddAudit(ctx, access.AuditEntry{Admin: cliActor(), Action: action, Target: pos[0]}); err != nil {
		return fmt.Errorf("admin totp: %w", err)
	}
	if *off {
		fmt.Fprintf(stdout, "%s now logs in with the password alone.\n", pos[0])
		return nil
	}
	uri := panel.TOTPURI("Burrow", pos[0], secret)
	fmt.Fprintf(stderr, "Add this to the authenticator app (scan the QR code or type the secret %s); every login of %s now needs its code:\n", secret, pos[0])
	fmt.Fprintln(stdout, uri)
	if isTerminal(stdout) {
		fmt.Fprint(stdout, links.QRTerminal(uri))
	}
	return nil
}
