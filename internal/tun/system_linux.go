package tun

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"strconv"
	"strings"
)

// Defaults for NetConfig.
const (
	DefaultName  = "burrow0"
	DefaultMTU   = 9000
	DefaultTable = 0x4255 // "BU"
	DefaultMark  = 0x4255
	// rulePriority is our policy rule's place: before main (32766).
	rulePriority = 5210
)

// Addresses of the TUN interface itself. The kernel needs one per family to
// pick source addresses; the subnets are private and tiny.
var (
	tunAddr4 = netip.MustParsePrefix("172.19.0.1/30")
	tunAddr6 = netip.MustParsePrefix("fdfe:dcba:9876::1/126")
	// DNSAddr is where the resolver configuration points: a TUN-side address
	// answered by Stack.Config.DNS.
	DNSAddr = netip.MustParseAddr("172.19.0.2")
)

// NetConfig says how to route the machine (or network namespace) into the
// TUN device. Zero fields take the defaults above.
//
// Every packet not carrying Mark is routed by table Table, whose default
// routes lead into the device; the tunnel's own sockets and direct-routed
// connections carry Mark and use the main table, so the route to the server
// never loops. With KillSwitch, table Table also holds blackhole default
// routes that outlive the device: if burrow dies, traffic is dropped rather
// than sent in the clear until the next start (or `--tun-restore`) undoes
// them.
//
// DNS: where systemd-resolved manages /etc/resolv.conf, the device gets
// per-link DNS (DNSAddr) and the "~." routing domain, and the file is never
// written; otherwise the file is rewritten, its original kept in the state
// file. In a network namespace that shares the machine's resolver file (a
// process that entered it by setns, not `ip netns exec`), the file is left
// alone and Logger says so. Either way the TUN answers every query to port
// 53, so no query leaves around the tunnel.
type NetConfig struct {
	Device     string // interface name (already created by Open)
	Table      int
	Mark       uint32
	KillSwitch bool
	// ResolvConf is the resolver file to point at DNSAddr. Default
	// /etc/resolv.conf ("-" leaves DNS settings alone).
	ResolvConf string
	// StateFile records what was changed, so a later start undoes it after
	// a crash. Default StateFile(Device): one per network namespace and
	// interface.
	StateFile string
	// Logger receives warnings (the resolver left alone, and why).
	// Default: discarded.
	Logger *slog.Logger

	env resolverEnv // the system's, unless a test sets it
}

func (c *NetConfig) defaults() error {
	if c.Device == "" {
		c.Device = DefaultName
	}
	if c.Table == 0 {
		c.Table = DefaultTable
	}
	if c.Mark == 0 {
		c.Mark = DefaultMark
	}
	if c.ResolvConf == "" {
		c.ResolvConf = "/etc/resolv.conf"
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.env.resolvConf == "" {
		c.env = systemResolverEnv(c.ResolvConf)
	}
	if c.StateFile == "" {
		f, err := StateFile(c.Device)
		if err != nil {
			return err
		}
		c.StateFile = f
	}
	return nil
}

// Setup routes everything into the device and points the resolver at
// DNSAddr. It first undoes anything a previous run in this network
// namespace left behind (per the state file), unless that run is still
// alive (ErrRunning). The returned undo restores what Setup changed; call
// it before closing the device. On error, Setup has undone its own changes.
func Setup(cfg NetConfig) (undo func() error, err error) {
	if err := cfg.defaults(); err != nil {
		return nil, err
	}
	if err := Restore(cfg.StateFile); err != nil {
		if errors.Is(err, ErrRunning) {
			return nil, err
		}
		return nil, fmt.Errorf("tun: undo the previous run's changes: %w", err)
	}
	if _, err := exec.LookPath("ip"); err != nil {
		return nil, errors.New("tun: the `ip` command (iproute2) is needed to set up routes; install iproute2")
	}
	ns, err := netnsID("/proc/self/ns/net")
	if err != nil {
		return nil, err
	}
	start, err := processStart(os.Getpid())
	if err != nil {
		return nil, fmt.Errorf("tun: own start time: %w", err)
	}
	st := &state{PID: os.Getpid(), PIDStart: start, NetNS: ns, Device: cfg.Device, Table: cfg.Table, Mark: cfg.Mark, IPv6: ipv6Enabled()}
	table := strconv.Itoa(cfg.Table)
	if out, err := ipOut("-4", "route", "show", "table", table); err == nil && strings.TrimSpace(out) != "" {
		return nil, fmt.Errorf("tun: routing table %d is already in use (another VPN, or leftovers of a burrow whose state file is gone); pick another, or remove it with `ip route flush table %d`", cfg.Table, cfg.Table)
	}
	if err := writeState(cfg.StateFile, st); err != nil {
		return nil, err
	}
	undo = func() error { return restoreOwn(cfg.StateFile, st, cfg.env.resolvectl) }
	if err := setupRoutes(cfg, st); err != nil {
		return nil, errors.Join(err, undo())
	}
	if err := pointDNS(cfg, st); err != nil {
		return nil, errors.Join(err, undo())
	}
	return undo, nil
}

func setupRoutes(cfg NetConfig, st *state) error {
	table := strconv.Itoa(cfg.Table)
	mark := fmt.Sprintf("0x%x", cfg.Mark)
	fams := []string{"-4"}
	if st.IPv6 {
		fams = append(fams, "-6")
	}
	steps := [][]string{
		{"-4", "addr", "add", tunAddr4.String(), "dev", cfg.Device},
		{"link", "set", cfg.Device, "up"},
	}
	if st.IPv6 {
		steps = append(steps, []string{"-6", "addr", "add", tunAddr6.String(), "dev", cfg.Device, "nodad"})
	}
	for _, f := range fams {
		// Metrics explicit: IPv6 would otherwise give the device route 1024,
		// behind the blackhole.
		steps = append(steps, []string{f, "route", "add", "default", "dev", cfg.Device, "table", table, "metric", "1"})
		if cfg.KillSwitch {
			steps = append(steps, []string{f, "route", "add", "blackhole", "default", "table", table, "metric", "100"})
		}
		steps = append(steps, []string{f, "rule", "add", "not", "fwmark", mark, "table", table, "priority", strconv.Itoa(rulePriority)})
	}
	for _, s := range steps {
		if err := ip(s...); err != nil {
			return err
		}
	}
	return nil
}

// pointDNS points the resolver at DNSAddr by the method chooseResolver
// picks, recording in the state file (synced) what it is about to change
// before it changes it.
func pointDNS(cfg NetConfig, st *state) error {
	if cfg.ResolvConf == "-" {
		return nil
	}
	method, why, err := chooseResolver(cfg.env)
	if err != nil {
		return err
	}
	switch method {
	case resolverNone:
		cfg.Logger.Warn("tun: " + why + "; DNS still goes through the tunnel, since the TUN answers every query to port 53")
		return nil
	case resolverResolved:
		st.Resolver = resolverResolved
		if err := writeState(cfg.StateFile, st); err != nil {
			return err
		}
		return pointResolved(cfg.env.resolvectl, cfg.Device)
	}
	b, err := backupFile(cfg.ResolvConf)
	if err != nil {
		return err
	}
	st.Resolver, st.ResolvConf, st.Resolv = resolverFile, cfg.ResolvConf, b
	if err := writeState(cfg.StateFile, st); err != nil {
		return err
	}
	if err := replaceFile(cfg.ResolvConf, b.Written, b.Mode); err != nil {
		return fmt.Errorf("tun: write %s: %w", cfg.ResolvConf, err)
	}
	return nil
}

// Restore undoes what the run that wrote stateFile changed: rules, routes,
// the device if it is still there, and the resolver. A missing state file
// means there is nothing to undo; a state file whose run is still alive is
// left alone (ErrRunning). Each step is attempted even if an earlier one
// failed; the state file is removed only when all succeeded.
func Restore(stateFile string) error {
	st, err := readState(stateFile)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if st.ownerAlive() {
		return fmt.Errorf("%w: pid %d has %s up in this network namespace; stop it first (its state: %s)", ErrRunning, st.PID, st.Device, stateFile)
	}
	return restoreOwn(stateFile, st, systemResolverEnv("").resolvectl)
}

// restoreOwn undoes st's changes, then removes stateFile.
func restoreOwn(stateFile string, st *state, resolvectl func(...string) error) error {
	if ns, err := netnsID("/proc/self/ns/net"); err != nil || ns != st.NetNS {
		return fmt.Errorf("state file %s belongs to another network namespace (%d); run --tun-restore there", stateFile, st.NetNS)
	}
	errs := undoRoutes(st)
	switch st.Resolver {
	case resolverResolved:
		if err := revertResolved(resolvectl, st.Device); err != nil {
			errs = append(errs, err)
		}
	case resolverFile:
		if st.Resolv != nil {
			if err := restoreFile(st.ResolvConf, st.Resolv); err != nil {
				errs = append(errs, err)
			}
		}
	}
	if len(errs) > 0 {
		return errors.Join(errs...)
	}
	if err := os.Remove(stateFile); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return nil
}

func undoRoutes(st *state) []error {
	var errs []error
	table := strconv.Itoa(st.Table)
	mark := fmt.Sprintf("0x%x", st.Mark)
	fams := []string{"-4"}
	if st.IPv6 {
		fams = append(fams, "-6")
	}
	for _, f := range fams {
		// Delete every copy of our rule (a crash between add and state write
		// cannot leave more than one, but be thorough).
		for range 8 {
			if ip(f, "rule", "del", "not", "fwmark", mark, "table", table, "priority", strconv.Itoa(rulePriority)) != nil {
				break
			}
		}
		if err := ip(f, "route", "flush", "table", table); err != nil && !strings.Contains(err.Error(), "does not exist") {
			errs = append(errs, err)
		}
	}
	if _, err := net.InterfaceByName(st.Device); err == nil {
		// Only a TUN device of ours: it vanishes with its fd, so one still
		// here belongs to a burrow still running or a stuck process.
		ip("link", "set", st.Device, "down")
	}
	return errs
}

func ipv6Enabled() bool {
	b, err := os.ReadFile("/proc/sys/net/ipv6/conf/all/disable_ipv6")
	return err == nil && strings.TrimSpace(string(b)) == "0"
}

func ip(args ...string) error {
	out, err := ipOut(args...)
	if err != nil {
		return fmt.Errorf("ip %s: %s", strings.Join(args, " "), strings.TrimSpace(out))
	}
	return nil
}

func ipOut(args ...string) (string, error) {
	out, err := exec.Command("ip", args...).CombinedOutput()
	return string(out), err
}
