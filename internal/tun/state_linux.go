package tun

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// stateDir holds the crash-restore state of every run. /run is shared by
// all network namespaces of the machine, so each file is keyed by the
// namespace as well as the interface name.
const stateDir = "/run/burrow"

// ErrRunning is returned when the state file belongs to a burrow that is
// still running: its changes are not leftovers to undo.
var ErrRunning = errors.New("tun: another burrow is running")

// StateFile is the default state file for device in the calling process's
// network namespace: /run/burrow/tun-NETNS-DEVICE.json, NETNS being the
// inode number of /proc/self/ns/net. Two runs in two namespaces (each with
// its own burrow0) therefore never share a file.
func StateFile(device string) (string, error) {
	ns, err := netnsID("/proc/self/ns/net")
	if err != nil {
		return "", err
	}
	return filepath.Join(stateDir, fmt.Sprintf("tun-%d-%s.json", ns, device)), nil
}

// netnsID is the inode number of a network namespace file.
func netnsID(path string) (uint64, error) {
	var st syscall.Stat_t
	if err := syscall.Stat(path, &st); err != nil {
		return 0, fmt.Errorf("tun: network namespace of this process: %w", err)
	}
	return st.Ino, nil
}

// state is what Setup changed, written (crash-safely) before each change.
type state struct {
	// PID and PIDStart name the run that owns the changes; PIDStart (the
	// process start time from /proc/PID/stat) tells a reused pid apart.
	PID      int
	PIDStart uint64
	NetNS    uint64 // inode of the network namespace changed
	Device   string
	Table    int
	Mark     uint32
	IPv6     bool
	// Resolver is how DNS was pointed at the TUN: "" (not at all),
	// "file" (ResolvConf rewritten) or "resolved" (per-link settings of
	// systemd-resolved on Device).
	Resolver   string
	ResolvConf string
	Resolv     *fileBackup `json:",omitempty"`
}

// fileBackup is a file as it was before Setup rewrote it, and what Setup
// wrote: the original is put back only while the file still holds ours.
type fileBackup struct {
	Existed bool
	Link    string      // symlink target, if it was a symlink
	Data    []byte      // content, if it was a regular file
	Mode    os.FileMode // permission bits of the regular file
	Written []byte      // what Setup wrote in its place
}

// ownerAlive says whether the process that wrote st is still running.
func (st *state) ownerAlive() bool {
	if st.PID <= 0 || st.PID == os.Getpid() {
		return false
	}
	start, err := processStart(st.PID)
	return err == nil && start == st.PIDStart
}

// processStart is field 22 of /proc/PID/stat: the start time in clock ticks
// since boot.
func processStart(pid int) (uint64, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, err
	}
	// The command name (field 2) may hold spaces and parentheses; the
	// fields after the last ")" are plain.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, fmt.Errorf("/proc/%d/stat: no command field", pid)
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 20 {
		return 0, fmt.Errorf("/proc/%d/stat: %d fields", pid, len(f))
	}
	return strconv.ParseUint(f[19], 10, 64) // field 22 is the 20th after field 2
}

func readState(path string) (*state, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var st state
	if err := json.Unmarshal(b, &st); err != nil || st.Table == 0 || st.Device == "" {
		return nil, fmt.Errorf("state file %s is damaged; remove it after checking `ip rule`, `ip route show table all` and /etc/resolv.conf", path)
	}
	return &st, nil
}

func writeState(path string, st *state) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return fmt.Errorf("tun: state dir: %w", err)
	}
	b, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return fmt.Errorf("tun: encode state: %w", err)
	}
	if err := writeFileAtomic(path, b, 0o600); err != nil {
		return fmt.Errorf("tun: write state: %w", err)
	}
	return nil
}

// writeFileAtomic replaces path by a file holding data: a temporary file in
// the same directory is written and synced, renamed over path, and the
// directory synced, so after a crash path holds either the old or the new
// content, never a part.
func writeFileAtomic(path string, data []byte, mode os.FileMode) error {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	_, err = f.Write(data)
	if err == nil {
		err = f.Chmod(mode)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
		return err
	}
	return syncDir(dir)
}

// symlinkAtomic replaces path by a symlink to target, by rename.
func symlinkAtomic(target, path string) error {
	dir := filepath.Dir(path)
	tmp := filepath.Join(dir, "."+filepath.Base(path)+".tmp-link-"+strconv.Itoa(os.Getpid()))
	os.Remove(tmp)
	if err := os.Symlink(target, tmp); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return err
	}
	return syncDir(dir)
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
