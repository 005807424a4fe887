package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/burrow-vpn/burrow/internal/access"
	"github.com/burrow-vpn/burrow/internal/links"
	"github.com/burrow-vpn/burrow/internal/server"
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
		Name:        u.Name,
	}, nil
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
	s := l.String()
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

// userEnv is what every `burrow user` command needs.
type userEnv struct {
	cfg   *server.Config
	store *access.SQLiteStore
}

func openUserEnv(data string) (*userEnv, error) {
	cfg, err := server.LoadConfig(data)
	if err != nil {
		return nil, err
	}
	st, err := access.OpenSQLite(filepath.Join(data, server.StoreFile))
	if err != nil {
		return nil, fmt.Errorf("open user store: %w", err)
	}
	return &userEnv{cfg: cfg, store: st}, nil
}

func runUser(args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		return errors.New("user: want add, list, show, set, revoke, rotate or reset-traffic")
	}
	sub, args := args[0], args[1:]
	fs := newFlagSet("user "+sub, stderr)
	data := fs.String("data", server.DefaultDataDir(), "server data directory")
	var quota, expires, reset, note, qr *string
	switch sub {
	case "add", "set":
		quota = fs.String("quota", "", "traffic per period, e.g. 50GB, 20GiB (0 = unlimited)")
		expires = fs.String("expires", "", "expiry: a duration like 30d, 12h, or a date 2027-01-31 (\"never\" to clear)")
		reset = fs.String("reset", "", "when traffic counters restart: monthly, weekly or never")
		note = fs.String("note", "", "free text for the operator")
	case "show":
		qr = fs.String("qr", "", "also write the link's QR code to this PNG file")
	case "list", "revoke", "rotate", "reset-traffic":
	default:
		return fmt.Errorf("user: unknown subcommand %q (want add, list, show, set, revoke, rotate or reset-traffic)", sub)
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
	env, err := openUserEnv(*data)
	if err != nil {
		return err
	}
	defer env.store.Close()
	ctx := context.Background()
	now := time.Now()

	if sub == "list" {
		return listUsers(ctx, env, stdout, now)
	}
	name := pos[0]
	if sub == "add" {
		nu := access.NewUser{Name: name}
		if *quota != "" {
			if nu.Quota, err = access.ParseSize(*quota); err != nil {
				return fmt.Errorf("user add: --quota: %w", err)
			}
		}
		if *expires != "" && *expires != "never" {
			if nu.ExpiresAt, err = access.ParseExpiry(*expires, now); err != nil {
				return fmt.Errorf("user add: --expires: %w", err)
			}
		}
		if *reset != "" {
			if nu.Reset, err = access.ParseReset(*reset); err != nil {
				return fmt.Errorf("user add: --reset: %w", err)
			}
		}
		nu.Note = *note
		u, err := env.store.CreateUser(ctx, nu)
		if err != nil {
			return fmt.Errorf("user add: %w", err)
		}
		fmt.Fprintf(os.Stderr, "Added user %q. Their link:\n", u.Name)
		return printLink(stdout, env.cfg, u, "")
	}
	u, err := env.store.UserByName(ctx, name)
	if err != nil {
		return fmt.Errorf("user %s: %w", sub, err)
	}
	switch sub {
	case "show":
		printUser(stdout, u, now)
		return printLink(stdout, env.cfg, u, *qr)
	case "set":
		var upd access.UserUpdate
		set := map[string]bool{}
		fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
		if set["quota"] {
			q, err := access.ParseSize(*quota)
			if err != nil {
				return fmt.Errorf("user set: --quota: %w", err)
			}
			upd.Quota = &q
		}
		if set["expires"] {
			var t time.Time
			if *expires != "never" && *expires != "" {
				if t, err = access.ParseExpiry(*expires, now); err != nil {
					return fmt.Errorf("user set: --expires: %w", err)
				}
			}
			upd.ExpiresAt = &t
		}
		if set["reset"] {
			r, err := access.ParseReset(*reset)
			if err != nil {
				return fmt.Errorf("user set: --reset: %w", err)
			}
			upd.Reset = &r
		}
		if set["note"] {
			upd.Note = note
		}
		if len(set) == 0 || (len(set) == 1 && set["data"]) {
			return errors.New("user set: nothing to change; give --quota, --expires, --reset or --note")
		}
		u, err = env.store.UpdateUser(ctx, u.ID, upd)
		if err != nil {
			return fmt.Errorf("user set: %w", err)
		}
		printUser(stdout, u, now)
	case "revoke":
		if err := env.store.RevokeUser(ctx, u.ID); err != nil {
			return fmt.Errorf("user revoke: %w", err)
		}
		fmt.Fprintf(stdout, "Revoked %q: their connections are cut within a second and their link no longer works.\n", u.Name)
	case "rotate":
		u, err = env.store.RotateUUID(ctx, u.ID)
		if err != nil {
			return fmt.Errorf("user rotate: %w", err)
		}
		fmt.Fprintf(os.Stderr, "Rotated %q: the old link stopped working. The new link:\n", u.Name)
		return printLink(stdout, env.cfg, u, "")
	case "reset-traffic":
		if err := env.store.ResetTraffic(ctx, u.ID, now); err != nil {
			return fmt.Errorf("user reset-traffic: %w", err)
		}
		fmt.Fprintf(stdout, "Traffic of %q reset to zero.\n", u.Name)
	}
	return nil
}

func usageText(u *access.User, now time.Time) string {
	used := access.FormatSize(u.Used(now))
	if u.Quota > 0 {
		return used + " / " + access.FormatSize(u.Quota)
	}
	return used + " / unlimited"
}

func expiry(u *access.User) string {
	if u.ExpiresAt.IsZero() {
		return "never"
	}
	return u.ExpiresAt.UTC().Format("2006-01-02 15:04")
}

func status(u *access.User, now time.Time) string {
	if err := u.Usable(now); err != nil {
		switch {
		case errors.Is(err, access.ErrRevoked):
			return "revoked"
		case errors.Is(err, access.ErrExpired):
			return "expired"
		case errors.Is(err, access.ErrQuotaExceeded):
			return "over quota"
		}
		return "unusable"
	}
	return "active"
}

func printUser(w io.Writer, u *access.User, now time.Time) {
	fmt.Fprintf(w, "name:       %s\n", u.Name)
	fmt.Fprintf(w, "status:     %s\n", status(u, now))
	fmt.Fprintf(w, "created:    %s\n", u.CreatedAt.UTC().Format("2006-01-02"))
	fmt.Fprintf(w, "traffic:    %s (up %s, down %s; resets %s)\n", usageText(u, now), access.FormatSize(u.BytesUp), access.FormatSize(u.BytesDown), orNever(u.Reset))
	fmt.Fprintf(w, "expires:    %s\n", expiry(u))
	fmt.Fprintf(w, "last seen:  %s\n", orDash(u.LastSeenDay))
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

func listUsers(ctx context.Context, env *userEnv, w io.Writer, now time.Time) error {
	users, err := env.store.ListUsers(ctx)
	if err != nil {
		return fmt.Errorf("user list: %w", err)
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tSTATUS\tCREATED\tUSED / QUOTA\tEXPIRES\tLAST SEEN")
	for _, u := range users {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", u.Name, status(u, now), u.CreatedAt.UTC().Format("2006-01-02"), usageText(u, now), expiry(u), orDash(u.LastSeenDay))
	}
	return tw.Flush()
}
