package tun

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
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
type NetConfig struct {
	Device     string // interface name (already created by Open)
	Table      int
	Mark       uint32
	KillSwitch bool
	// ResolvConf is the resolver file to point at DNSAddr. Default
	// /etc/resolv.conf ("-" leaves it alone).
	ResolvConf string
	// StateFile records what was changed, so a later start undoes it after
	// a crash. Default /run/burrow/tun-DEVICE.json.
	StateFile string
}

func (c *NetConfig) defaults() {
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
	if c.StateFile == "" {
		c.StateFile = StateFile(c.Device)
	}
}

// StateFile is the default state file for device name.
func StateFile(device string) string {
	return filepath.Join("/run/burrow", "tun-"+device+".json")
}

// state is what Setup changed, written before each change is made.
type state struct {
	Device      string
	Table       int
	Mark        uint32
	IPv6        bool
	ResolvConf  string
	ResolvSaved bool   // ResolvData/ResolvLink hold the original
	ResolvData  []byte // original content (regular file)
	ResolvLink  string // original symlink target, if it was a symlink
}

// Setup routes everything into the device and points the resolver at
// DNSAddr. It first undoes anything a previous run left behind (per the
// state file). The returned undo restores what Setup changed; call it
// before closing the device. On error, Setup has undone its own changes.
func Setup(cfg NetConfig) (undo func() error, err error) {
	cfg.defaults()
	if err := Restore(cfg.StateFile); err != nil {
		return nil, fmt.Errorf("tun: undo the previous run's changes: %w", err)
	}
	if _, err := exec.LookPath("ip"); err != nil {
		return nil, errors.New("tun: the `ip` command (iproute2) is needed to set up routes; install iproute2")
	}
	st := &state{Device: cfg.Device, Table: cfg.Table, Mark: cfg.Mark, IPv6: ipv6Enabled()}
	table := strconv.Itoa(cfg.Table)
	if out, err := ipOut("-4", "route", "show", "table", table); err == nil && strings.TrimSpace(out) != "" {
		return nil, fmt.Errorf("tun: routing table %d is already in use (another VPN, or a burrow started with a different state file); pick another, or remove it with `ip route flush table %d`", cfg.Table, cfg.Table)
	}
	if err := writeState(cfg.StateFile, st); err != nil {
		return nil, err
	}
	undo = func() error { return Restore(cfg.StateFile) }
	fail := func(err error) (func() error, error) {
		undo()
		return nil, err
	}
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
			return fail(err)
		}
	}
	if cfg.ResolvConf != "-" {
		if err := pointResolver(cfg.ResolvConf, cfg.StateFile, st); err != nil {
			return fail(err)
		}
		if err := writeState(cfg.StateFile, st); err != nil {
			return fail(err)
		}
	}
	return undo, nil
}

// pointResolver saves the resolver file into st and rewrites it in place
// (a bind mount, as `ip netns exec` makes, cannot be replaced by rename).
func pointResolver(path, stateFile string, st *state) error {
	st.ResolvConf = path
	if target, err := os.Readlink(path); err == nil {
		st.ResolvLink = target
	} else if b, err := os.ReadFile(path); err == nil {
		st.ResolvData = b
	} else if !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("tun: read %s: %w", path, err)
	}
	st.ResolvSaved = true
	if err := writeState(stateFile, st); err != nil {
		return err
	}
	if st.ResolvLink != "" {
		if err := os.Remove(path); err != nil {
			return fmt.Errorf("tun: replace %s: %w", path, err)
		}
	}
	body := "# written by burrow connect --tun; restored when it exits\nnameserver " + DNSAddr.String() + "\noptions edns0 trust-ad\n"
	if err := os.WriteFile(path, []byte(body), 0o644); err != nil {
		return fmt.Errorf("tun: write %s: %w", path, err)
	}
	return nil
}

func writeState(path string, st *state) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return fmt.Errorf("tun: state dir: %w", err)
	}
	b, _ := json.MarshalIndent(st, "", "  ")
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return fmt.Errorf("tun: write state: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("tun: write state: %w", err)
	}
	return nil
}

// Restore undoes what the run that wrote stateFile changed: rules, routes,
// the device if it is still there, and the resolver file. A missing state
// file means there is nothing to undo. Each step is attempted even if an
// earlier one failed; the state file is removed only when all succeeded.
func Restore(stateFile string) error {
	b, err := os.ReadFile(stateFile)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("read %s: %w", stateFile, err)
	}
	var st state
	if err := json.Unmarshal(b, &st); err != nil || st.Table == 0 {
		return fmt.Errorf("state file %s is damaged; remove it after checking `ip rule` and %s", stateFile, "/etc/resolv.conf")
	}
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
	if _, err := os.Stat("/sys/class/net/" + st.Device); err == nil {
		// Only a TUN device of ours: it vanishes with its fd, so one still
		// here belongs to a burrow still running or a stuck process.
		ip("link", "set", st.Device, "down")
	}
	if st.ResolvSaved {
		if err := restoreResolver(&st); err != nil {
			errs = append(errs, err)
		}
	}
	if len(errs) > 0 {
		return errors.Join(errs...)
	}
	return os.Remove(stateFile)
}

func restoreResolver(st *state) error {
	path := st.ResolvConf
	if st.ResolvLink != "" {
		os.Remove(path)
		if err := os.Symlink(st.ResolvLink, path); err != nil {
			return fmt.Errorf("restore %s: %w", path, err)
		}
		return nil
	}
	if st.ResolvData == nil {
		// There was no file before.
		if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("restore %s: %w", path, err)
		}
		return nil
	}
	if cur, err := os.ReadFile(path); err == nil && bytes.Equal(cur, st.ResolvData) {
		return nil
	}
	// Write in place (bind mounts), not by rename.
	if err := os.WriteFile(path, st.ResolvData, 0o644); err != nil {
		return fmt.Errorf("restore %s: %w", path, err)
	}
	return nil
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
