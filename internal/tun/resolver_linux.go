package tun

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// How the system resolver is pointed at DNSAddr (state.Resolver):
const (
	resolverNone     = ""         // left alone; the TUN still answers every query to port 53
	resolverFile     = "file"     // ResolvConf rewritten, the original kept in the state file
	resolverResolved = "resolved" // per-link DNS of systemd-resolved on the TUN, with the "~." routing domain
)

// resolverEnv is what the choice of method looks at: the system's paths and
// commands, which tests replace.
type resolverEnv struct {
	resolvConf string // the resolver file, "/etc/resolv.conf"
	selfNetNS  string // "/proc/self/ns/net"
	initNetNS  string // "/proc/1/ns/net": the namespace the machine's resolver serves
	initRoot   string // "/proc/1/root": the file system as PID 1 sees it
	// namedNetNS and netnsEtc are where `ip netns` keeps named namespaces
	// ("/run/netns/NAME") and their own files ("/etc/netns/NAME/").
	namedNetNS, netnsEtc string
	// resolvedDir is where systemd-resolved keeps the files
	// /etc/resolv.conf links to, "/run/systemd/resolve".
	resolvedDir string
	// resolvectl runs resolvectl; nil when it is not installed.
	resolvectl func(args ...string) error
}

func systemResolverEnv(resolvConf string) resolverEnv {
	env := resolverEnv{resolvConf: resolvConf, selfNetNS: "/proc/self/ns/net", initNetNS: "/proc/1/ns/net",
		initRoot: "/proc/1/root", namedNetNS: "/run/netns", netnsEtc: "/etc/netns", resolvedDir: "/run/systemd/resolve"}
	if _, err := exec.LookPath("resolvectl"); err == nil {
		env.resolvectl = runResolvectl
	}
	return env
}

func runResolvectl(args ...string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "resolvectl", append([]string{"--no-pager", "--no-ask-password"}, args...)...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("resolvectl %s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

// chooseResolver picks how to point DNS at the TUN. In the machine's own
// network namespace: through systemd-resolved when it manages
// /etc/resolv.conf (the file is never written then), else by rewriting the
// file. In any other namespace: rewrite the file only if it is the
// namespace's own (as `ip netns exec` mounts /etc/netns/NAME/resolv.conf);
// a process that only entered the namespace (setns) sees the machine's file,
// and rewriting it would move the whole machine's DNS into a TUN it cannot
// reach. Then the file is left alone, and why is returned. (resolved serves
// the initial namespace only: its link indexes are not ours.)
func chooseResolver(env resolverEnv) (method, why string, err error) {
	self, err := os.Stat(env.selfNetNS)
	if err != nil {
		return "", "", fmt.Errorf("tun: network namespace of this process: %w", err)
	}
	name := namedNetNS(env.namedNetNS, self)
	initNS, ierr := os.Stat(env.initNetNS)
	// Without access to PID 1 (hardened /proc, some sandboxes), a named
	// namespace (`ip netns add`) is known not to be the initial one.
	if ierr == nil && !os.SameFile(self, initNS) || ierr != nil && name != "" {
		if own(env, name) {
			return resolverFile, "", nil
		}
		return resolverNone, fmt.Sprintf("%s left alone: burrow runs in a network namespace of its own, but that file is the machine's "+
			"(give the namespace its own with /etc/netns/NAME/resolv.conf and start burrow with `ip netns exec NAME`)", env.resolvConf), nil
	}
	if resolvedManages(env) {
		return resolverResolved, "", nil
	}
	return resolverFile, "", nil
}

// namedNetNS is the name under dir (/run/netns) of the namespace self, or "".
func namedNetNS(dir string, self os.FileInfo) string {
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		if fi, err := os.Stat(filepath.Join(dir, e.Name())); err == nil && os.SameFile(fi, self) {
			return e.Name()
		}
	}
	return ""
}

// own says whether the resolver file this process sees is its network
// namespace's own: the namespace's /etc/netns/NAME/resolv.conf (mounted
// there by `ip netns exec`), or at least another file than PID 1 sees.
func own(env resolverEnv, name string) bool {
	mine, err := os.Stat(env.resolvConf)
	if err != nil {
		return false
	}
	if name != "" {
		if fi, err := os.Stat(filepath.Join(env.netnsEtc, name, filepath.Base(env.resolvConf))); err == nil && os.SameFile(fi, mine) {
			return true
		}
	}
	private, err := privateFile(env.resolvConf, filepath.Join(env.initRoot, env.resolvConf))
	return err == nil && private
}

// privateFile says whether path, as this process sees it, is another file
// than initPath (the same path as PID 1 sees it). A file missing on both
// sides would be created as the machine's.
func privateFile(path, initPath string) (bool, error) {
	mine, err := os.Stat(path)
	if errors.Is(err, os.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	theirs, err := os.Stat(initPath)
	if errors.Is(err, os.ErrNotExist) {
		return true, nil
	}
	if err != nil {
		return false, err
	}
	return !os.SameFile(mine, theirs), nil
}

// resolvedManages says whether systemd-resolved runs and /etc/resolv.conf
// is its file (a symlink to its stub-resolv.conf or resolv.conf).
func resolvedManages(env resolverEnv) bool {
	target, err := os.Readlink(env.resolvConf)
	if err != nil || env.resolvectl == nil {
		return false
	}
	if !filepath.IsAbs(target) {
		target = filepath.Join(filepath.Dir(env.resolvConf), target)
	}
	switch filepath.Clean(target) {
	case filepath.Join(env.resolvedDir, "stub-resolv.conf"), filepath.Join(env.resolvedDir, "resolv.conf"):
	default:
		return false
	}
	return env.resolvectl("status") == nil
}

// pointResolved gives the TUN link DNSAddr as its DNS server and the "~."
// routing domain, so systemd-resolved sends every query there.
func pointResolved(resolvectl func(...string) error, dev string) error {
	for _, args := range [][]string{
		{"dns", dev, DNSAddr.String()},
		{"domain", dev, "~."},
		{"default-route", dev, "yes"},
	} {
		if err := resolvectl(args...); err != nil {
			return fmt.Errorf("tun: %w", err)
		}
	}
	return nil
}

// revertResolved drops the link's settings; a link that is gone (the
// device closed) took them with it.
func revertResolved(resolvectl func(...string) error, dev string) error {
	if _, err := net.InterfaceByName(dev); err != nil || resolvectl == nil {
		return nil
	}
	return resolvectl("revert", dev)
}

// resolvBody is what the resolver file holds while the TUN is up.
var resolvBody = []byte("# written by burrow connect --tun; restored when it exits\nnameserver " + DNSAddr.String() + "\noptions edns0 trust-ad\n")

// backupFile records path as it is now.
func backupFile(path string) (*fileBackup, error) {
	b := &fileBackup{Written: resolvBody}
	fi, err := os.Lstat(path)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return b, nil
	case err != nil:
		return nil, fmt.Errorf("tun: %w", err)
	}
	b.Existed = true
	if fi.Mode()&os.ModeSymlink != 0 {
		if b.Link, err = os.Readlink(path); err != nil {
			return nil, fmt.Errorf("tun: %w", err)
		}
		return b, nil
	}
	b.Mode = fi.Mode().Perm()
	if b.Data, err = os.ReadFile(path); err != nil {
		return nil, fmt.Errorf("tun: %w", err)
	}
	return b, nil
}

// replaceFile writes data to path crash-safely (temp file, sync, rename).
// A bind-mounted file, as `ip netns exec` makes, cannot be renamed over; it
// is rewritten in place, and a torn write is undone from the backup.
func replaceFile(path string, data []byte, mode os.FileMode) error {
	if mode == 0 {
		mode = 0o644
	}
	err := writeFileAtomic(path, data, mode)
	if !errors.Is(err, syscall.EBUSY) {
		return err
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_TRUNC, 0)
	if err != nil {
		return err
	}
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// restoreFile puts the backup back, but only while path still holds what
// Setup wrote (or a torn part of it): a file someone changed since is
// theirs, and is left alone.
func restoreFile(path string, b *fileBackup) error {
	fi, err := os.Lstat(path)
	if err != nil || !fi.Mode().IsRegular() {
		return nil
	}
	cur, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("restore %s: %w", path, err)
	}
	if !bytes.HasPrefix(b.Written, cur) {
		return nil
	}
	switch {
	case !b.Existed:
		err = os.Remove(path)
	case b.Link != "":
		err = symlinkAtomic(b.Link, path)
	default:
		err = replaceFile(path, b.Data, b.Mode)
	}
	if err != nil {
		return fmt.Errorf("restore %s: %w", path, err)
	}
	return nil
}
