package main

// `burrow server install | uninstall | upgrade`: run the server as a
// hardened systemd service, and replace its binary in place.

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/burrow-vpn/burrow/internal/relay"
	"github.com/burrow-vpn/burrow/internal/server"
)

// role is what a service runs: a server (exit) or an entry relay.
type role struct {
	cmd         string // "server" or "relay": `burrow CMD run`
	what        string // the unit's Description
	configFile  string // the file `burrow CMD init` makes in the data dir
	defaultUnit string
	defaultData string
}

var (
	roleServer = role{"server", "Burrow VPN server (VLESS + REALITY)", server.ConfigFile, "burrow", server.DefaultDataDir()}
	roleRelay  = role{"relay", "Burrow entry relay (carries clients to exits, reads nothing)", relay.ConfigFile, "burrow-relay", "/var/lib/burrow-relay"}
)

// service is the systemd service that runs `burrow server run` (or
// `burrow relay run`).
type service struct {
	Role    role   // zero: roleServer
	Name    string // unit name without ".service"
	User    string // system user the server runs as
	Binary  string // absolute path of the binary ExecStart runs
	Data    string // absolute data directory (the only writable path)
	UnitDir string // where the unit file goes
}

const (
	defaultUnitDir = "/etc/systemd/system"
	// installedBinary is where install copies a binary run from elsewhere
	// (a home directory, which the service user cannot reach).
	installedBinary = "/usr/local/bin/burrow"
)

func (s service) unitPath() string { return filepath.Join(s.UnitDir, s.Name+".service") }

func (s service) role() role {
	if s.Role.cmd == "" {
		return roleServer
	}
	return s.Role
}

// unit renders the unit file. A server or relay needs only to bind port 443
// (CAP_NET_BIND_SERVICE) and write its data directory; everything else is
// closed. It does not need CAP_NET_ADMIN: only the client's --tun does.
func (s service) unit() string {
	r := s.role()
	return fmt.Sprintf(`# Written by burrow %[4]s install. Remove with: burrow %[4]s uninstall
[Unit]
Description=%[5]s
Documentation=https://github.com/burrow-vpn/burrow
After=network-online.target
Wants=network-online.target

[Service]
Type=simple
User=%[1]s
Group=%[1]s
ExecStart=%[2]s %[4]s run --data %[3]s
Restart=on-failure
RestartSec=2s
TimeoutStopSec=30s
LimitNOFILE=1048576
AmbientCapabilities=CAP_NET_BIND_SERVICE
CapabilityBoundingSet=CAP_NET_BIND_SERVICE
NoNewPrivileges=yes
ProtectSystem=strict
ProtectHome=yes
ReadWritePaths=%[3]s
PrivateTmp=yes
PrivateDevices=yes
ProtectKernelTunables=yes
ProtectKernelModules=yes
ProtectKernelLogs=yes
ProtectControlGroups=yes
ProtectClock=yes
ProtectHostname=yes
RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX AF_NETLINK
RestrictNamespaces=yes
RestrictRealtime=yes
RestrictSUIDSGID=yes
LockPersonality=yes
MemoryDenyWriteExecute=yes
SystemCallArchitectures=native
SystemCallFilter=@system-service
UMask=0077

[Install]
WantedBy=multi-user.target
`, s.User, systemdQuote(s.Binary), systemdQuote(s.Data), r.cmd, r.what)
}

// systemdQuote quotes a path for ExecStart= and ReadWritePaths= when it
// holds a space or a quote (a path never holds a newline: checked earlier).
func systemdQuote(p string) string {
	if !strings.ContainsAny(p, " \t\"'\\") {
		return p
	}
	return strconv.Quote(p)
}

// host is what install, uninstall and upgrade do outside their own files,
// kept apart so tests can see what would run without changing the machine.
type host struct {
	systemd bool // systemd is the init system (/run/systemd/system exists)
	// run runs a command, its output going to the user.
	run func(name string, args ...string) error
	// ensureUser creates the system user if missing and returns its ids.
	ensureUser func(name, home string) (uid, gid int, err error)
}

func realHost(stderr io.Writer) host {
	_, err := os.Stat("/run/systemd/system")
	return host{
		systemd: err == nil,
		run: func(name string, args ...string) error {
			cmd := exec.Command(name, args...)
			cmd.Stdout, cmd.Stderr = stderr, stderr
			if err := cmd.Run(); err != nil {
				return fmt.Errorf("%s %s: %w", name, strings.Join(args, " "), err)
			}
			return nil
		},
		ensureUser: ensureSystemUser,
	}
}

// ensureSystemUser creates a system user (and its group) with no login
// shell and home at the data directory, unless it exists.
func ensureSystemUser(name, home string) (int, int, error) {
	u, err := user.Lookup(name)
	if err != nil {
		var unknown user.UnknownUserError
		if !errors.As(err, &unknown) {
			return 0, 0, fmt.Errorf("look up user %s: %w", name, err)
		}
		out, err := exec.Command("useradd", "--system", "--user-group", "--home-dir", home,
			"--no-create-home", "--shell", "/usr/sbin/nologin", "--comment", "Burrow VPN server", name).CombinedOutput()
		if err != nil {
			return 0, 0, fmt.Errorf("create system user %s: useradd: %v: %s", name, err, bytes.TrimSpace(out))
		}
		if u, err = user.Lookup(name); err != nil {
			return 0, 0, fmt.Errorf("look up user %s after creating it: %w", name, err)
		}
	}
	uid, err1 := strconv.Atoi(u.Uid)
	gid, err2 := strconv.Atoi(u.Gid)
	if err := errors.Join(err1, err2); err != nil {
		return 0, 0, fmt.Errorf("user %s: %w", name, err)
	}
	return uid, gid, nil
}

func serviceFlags(name string, r role, stderr io.Writer) (*flag.FlagSet, *service) {
	fs := newFlagSet(name, stderr)
	s := &service{Role: r}
	fs.StringVar(&s.Name, "name", r.defaultUnit, "systemd unit name (without .service)")
	fs.StringVar(&s.UnitDir, "unit-dir", defaultUnitDir, "directory the unit file goes in")
	return fs, s
}

func serverInstall(args []string, stdout, stderr io.Writer) error {
	return serviceInstall(roleServer, args, stdout, stderr)
}

func relayInstall(args []string, stdout, stderr io.Writer) error {
	return serviceInstall(roleRelay, args, stdout, stderr)
}

func serviceInstall(r role, args []string, stdout, stderr io.Writer) error {
	cmd := r.cmd + " install"
	fs, s := serviceFlags(cmd, r, stderr)
	fs.StringVar(&s.Data, "data", r.defaultData, "data directory made by `burrow "+r.cmd+" init`")
	fs.StringVar(&s.User, "user", "burrow", "system user the "+r.cmd+" runs as (created if missing)")
	fs.StringVar(&s.Binary, "binary", "", "path the service runs; default: this binary if it lies under /usr, else a copy at "+installedBinary)
	printOnly := fs.Bool("print", false, "print the unit and change nothing")
	pos, err := parseArgs(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return fmt.Errorf("%s: unexpected argument %q", cmd, pos[0])
	}
	self, err := selfPath()
	if err != nil {
		return fmt.Errorf("%s: %w", cmd, err)
	}
	if err := s.resolve(self, !*printOnly); err != nil {
		return fmt.Errorf("%s: %w", cmd, err)
	}
	if *printOnly {
		_, err := io.WriteString(stdout, s.unit())
		return err
	}
	if runtime.GOOS != "linux" {
		return fmt.Errorf("%s: needs Linux with systemd (this is %s); run `burrow %s run --data %s` under your own service manager", cmd, runtime.GOOS, r.cmd, s.Data)
	}
	if os.Geteuid() != 0 {
		return fmt.Errorf("%s: must run as root (it creates a system user and writes %s); try sudo, or --print to see the unit", cmd, s.unitPath())
	}
	return installService(*s, self, realHost(stderr), stderr)
}

// resolve makes the paths absolute and checks them: the data directory
// must be somewhere the service user can reach, and hold a server when
// needServer (--print shows the unit for a server not made yet).
func (s *service) resolve(self string, needServer bool) error {
	if s.Name == "" || strings.ContainsAny(s.Name, "/ \n") {
		return fmt.Errorf("--name %q: want a plain unit name such as burrow", s.Name)
	}
	if s.User == "" || strings.ContainsAny(s.User, " \n:/") {
		return fmt.Errorf("--user %q: want a user name such as burrow", s.User)
	}
	data, err := filepath.Abs(s.Data)
	if err != nil {
		return fmt.Errorf("--data: %w", err)
	}
	s.Data = data
	if _, err := os.Stat(filepath.Join(data, s.role().configFile)); err != nil && needServer {
		return fmt.Errorf("%s holds no %s (%v): run `burrow %s init --data %s ...` first", data, s.role().cmd, err, s.role().cmd, data)
	}
	for _, home := range []string{"/root", "/home", "/run/user"} {
		if data == home || strings.HasPrefix(data, home+"/") {
			return fmt.Errorf("--data %s: the service runs as user %s with %s hidden (ProtectHome); move the data, e.g. `mv %s /var/lib/burrow`, and pass --data /var/lib/burrow", data, s.User, home, data)
		}
	}
	if s.Binary == "" {
		s.Binary = installedBinary
		if strings.HasPrefix(self, "/usr/") {
			s.Binary = self
		}
	}
	if s.Binary, err = filepath.Abs(s.Binary); err != nil {
		return fmt.Errorf("--binary: %w", err)
	}
	if strings.ContainsAny(s.Binary+s.Data, "\n\"\\") {
		return errors.New("the binary and data paths must not contain newlines, quotes or backslashes")
	}
	return nil
}

// installService creates the user, hands it the data directory, places
// the binary, writes the unit, and enables and starts it under systemd.
func installService(s service, self string, h host, stderr io.Writer) error {
	cmd := s.role().cmd + " install"
	uid, gid, err := h.ensureUser(s.User, s.Data)
	if err != nil {
		return fmt.Errorf("%s: %w", cmd, err)
	}
	if err := chownTree(s.Data, uid, gid); err != nil {
		return fmt.Errorf("%s: hand %s to user %s: %w", cmd, s.Data, s.User, err)
	}
	if s.Binary != self {
		if err := replaceFile(s.Binary, self, 0o755); err != nil {
			return fmt.Errorf("%s: %w", cmd, err)
		}
		fmt.Fprintf(stderr, "Copied %s to %s.\n", self, s.Binary)
	}
	if err := os.MkdirAll(s.UnitDir, 0o755); err != nil {
		return fmt.Errorf("%s: %w", cmd, err)
	}
	if err := writeFileAtomic(s.unitPath(), []byte(s.unit()), 0o644); err != nil {
		return fmt.Errorf("%s: %w", cmd, err)
	}
	fmt.Fprintf(stderr, "Wrote %s (runs as %s, writes only %s).\n", s.unitPath(), s.User, s.Data)
	if !h.systemd {
		fmt.Fprintf(stderr, "systemd is not running here, so nothing was started: start `%s %s run --data %s` as user %s yourself.\n", s.Binary, s.role().cmd, s.Data, s.User)
		return nil
	}
	for _, c := range [][]string{{"daemon-reload"}, {"enable", "--now", s.Name + ".service"}} {
		if err := h.run("systemctl", c...); err != nil {
			return fmt.Errorf("%s: %w", cmd, err)
		}
	}
	fmt.Fprintf(stderr, "Started %s.service; logs: journalctl -u %s -f\n", s.Name, s.Name)
	return nil
}

func serverUninstall(args []string, stdout, stderr io.Writer) error {
	return serviceUninstall(roleServer, args, stderr)
}

func relayUninstall(args []string, stdout, stderr io.Writer) error {
	return serviceUninstall(roleRelay, args, stderr)
}

func serviceUninstall(r role, args []string, stderr io.Writer) error {
	cmd := r.cmd + " uninstall"
	fs, s := serviceFlags(cmd, r, stderr)
	pos, err := parseArgs(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return fmt.Errorf("%s: unexpected argument %q", cmd, pos[0])
	}
	if os.Geteuid() != 0 {
		return errors.New(cmd + ": must run as root")
	}
	return uninstallService(*s, realHost(stderr), stderr)
}

// uninstallService stops and removes the unit. The data directory, the
// user and the binary stay: reinstalling picks up where it stopped.
func uninstallService(s service, h host, stderr io.Writer) error {
	cmd := s.role().cmd + " uninstall"
	unit, err := os.ReadFile(s.unitPath())
	if errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("%s: no %s: nothing is installed", cmd, s.unitPath())
	} else if err != nil {
		return fmt.Errorf("%s: %w", cmd, err)
	}
	if h.systemd {
		if err := h.run("systemctl", "disable", "--now", s.Name+".service"); err != nil {
			return fmt.Errorf("%s: %w", cmd, err)
		}
	}
	if err := os.Remove(s.unitPath()); err != nil {
		return fmt.Errorf("%s: %w", cmd, err)
	}
	if h.systemd {
		if err := h.run("systemctl", "daemon-reload"); err != nil {
			return fmt.Errorf("%s: %w", cmd, err)
		}
	}
	fmt.Fprintf(stderr, "Removed %s.", s.unitPath())
	if data := unitValue(string(unit), "ReadWritePaths"); data != "" {
		fmt.Fprintf(stderr, " The data in %s is kept.", data)
	}
	fmt.Fprintln(stderr)
	return nil
}

// unitValue returns the first value of key= in a unit file, unquoted.
func unitValue(unit, key string) string {
	for _, line := range strings.Split(unit, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), key+"="); ok {
			if u, err := strconv.Unquote(v); err == nil {
				return u
			}
			return v
		}
	}
	return ""
}

// execBinary is the binary an installed unit runs ("" when unknown).
func execBinary(unit string) string {
	v := unitValue(unit, "ExecStart")
	if strings.HasPrefix(v, `"`) {
		if end := strings.Index(v[1:], `"`); end >= 0 {
			if u, err := strconv.Unquote(v[:end+2]); err == nil {
				return u
			}
		}
		return ""
	}
	bin, _, _ := strings.Cut(v, " ")
	return bin
}

func serverUpgrade(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	return serviceUpgrade(ctx, roleServer, args, stderr)
}

func relayUpgrade(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	return serviceUpgrade(ctx, roleRelay, args, stderr)
}

func serviceUpgrade(ctx context.Context, r role, args []string, stderr io.Writer) error {
	cmd := r.cmd + " upgrade"
	fs, s := serviceFlags(cmd, r, stderr)
	fs.StringVar(&s.Binary, "binary", "", "binary to replace; default: the one the installed unit runs, else this one")
	noRestart := fs.Bool("no-restart", false, "replace the binary but do not restart the service")
	pos, err := parseArgs(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return errors.New(cmd + ": want the path of the new burrow binary")
	}
	if s.Binary == "" {
		if unit, err := os.ReadFile(s.unitPath()); err == nil {
			s.Binary = execBinary(string(unit))
		}
	}
	if s.Binary == "" {
		if s.Binary, err = selfPath(); err != nil {
			return fmt.Errorf("%s: %w", cmd, err)
		}
	}
	h := realHost(stderr)
	if *noRestart {
		h.systemd = false
	}
	return upgradeService(ctx, *s, pos[0], h, stderr)
}

// upgradeService checks that newBin runs here, swaps it in for s.Binary
// atomically, and restarts the service. A restart is a SIGTERM, on which
// the server flushes its traffic counters to the store before it exits;
// users and counters live in the data directory, which is not touched.
func upgradeService(ctx context.Context, s service, newBin string, h host, stderr io.Writer) error {
	cmd := s.role().cmd + " upgrade"
	newVer, err := binaryVersion(ctx, newBin)
	if err != nil {
		return fmt.Errorf("%s: %s does not run here, nothing was changed: %w", cmd, newBin, err)
	}
	oldVer, err := binaryVersion(ctx, s.Binary)
	if err != nil {
		oldVer = "unknown version"
	}
	if err := replaceFile(s.Binary, newBin, 0o755); err != nil {
		return fmt.Errorf("%s: %w", cmd, err)
	}
	fmt.Fprintf(stderr, "Replaced %s: %s -> %s.\n", s.Binary, oldVer, newVer)
	_, unitErr := os.Stat(s.unitPath())
	switch {
	case !h.systemd:
		fmt.Fprintf(stderr, "Not restarting (systemd is not running here, or --no-restart): restart the %s to run the new binary (under systemd: systemctl restart %s.service).\n", s.role().cmd, s.Name)
	case unitErr != nil:
		fmt.Fprintf(stderr, "No %s, so no service to restart: restart the %s yourself to run the new binary.\n", s.unitPath(), s.role().cmd)
	default:
		if err := h.run("systemctl", "restart", s.Name+".service"); err != nil {
			return fmt.Errorf("%s: the binary is replaced, but %w", cmd, err)
		}
		fmt.Fprintf(stderr, "Restarted %s.service.\n", s.Name)
	}
	return nil
}

// binaryVersion runs `BIN version` and returns what it prints.
func binaryVersion(ctx context.Context, bin string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, bin, "version").Output()
	if err != nil {
		return "", fmt.Errorf("`%s version`: %w", bin, err)
	}
	v := strings.TrimSpace(string(out))
	if !strings.HasPrefix(v, "burrow") {
		return "", fmt.Errorf("`%s version` printed %q, not a burrow version", bin, v)
	}
	return v, nil
}

func selfPath() (string, error) {
	p, err := os.Executable()
	if err != nil {
		return "", fmt.Errorf("find this binary: %w", err)
	}
	return filepath.EvalSymlinks(p)
}
