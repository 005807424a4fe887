package tun

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// fakeSystem is a resolverEnv over a temporary directory: two network
// namespace files (self and init), a resolv.conf as this process sees it
// and a root as PID 1 sees it.
type fakeSystem struct {
	dir   string
	env   resolverEnv
	calls [][]string // resolvectl invocations
}

func newFakeSystem(t *testing.T) *fakeSystem {
	t.Helper()
	dir := t.TempDir()
	fs := &fakeSystem{dir: dir}
	for _, d := range []string{"ns", "etc", "resolve", "netns", "etc-netns/bwc1"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for _, f := range []string{"ns/self", "ns/other"} {
		if err := os.WriteFile(filepath.Join(dir, f), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	fs.env = resolverEnv{
		resolvConf:  filepath.Join(dir, "etc/resolv.conf"),
		selfNetNS:   filepath.Join(dir, "ns/self"),
		initNetNS:   filepath.Join(dir, "ns/self"),
		initRoot:    "/", // the same file system: PID 1 sees our file
		namedNetNS:  filepath.Join(dir, "netns"),
		netnsEtc:    filepath.Join(dir, "etc-netns"),
		resolvedDir: filepath.Join(dir, "resolve"),
		resolvectl: func(args ...string) error {
			fs.calls = append(fs.calls, args)
			return nil
		},
	}
	return fs
}

// name makes this process's namespace the named namespace name, as
// `ip netns add` does (a bind mount of the namespace file: the same inode).
func (fs *fakeSystem) name(t *testing.T, name string) {
	t.Helper()
	if err := os.Link(fs.env.selfNetNS, filepath.Join(fs.env.namedNetNS, name)); err != nil {
		t.Fatal(err)
	}
}

func (fs *fakeSystem) write(t *testing.T, rel, body string) string {
	t.Helper()
	p := filepath.Join(fs.dir, rel)
	if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestChooseResolver(t *testing.T) {
	down := func(...string) error { return errors.New("Failed to get global data: Could not activate remote peer") }
	tests := []struct {
		name    string
		setup   func(t *testing.T, fs *fakeSystem)
		want    string
		wantWhy string
	}{
		{"initial namespace, plain file", func(t *testing.T, fs *fakeSystem) {
			fs.write(t, "etc/resolv.conf", "nameserver 192.0.2.53\n")
		}, resolverFile, ""},
		{"initial namespace, resolved's stub", func(t *testing.T, fs *fakeSystem) {
			fs.write(t, "resolve/stub-resolv.conf", "nameserver 127.0.0.53\n")
			os.Symlink(filepath.Join(fs.dir, "resolve/stub-resolv.conf"), fs.env.resolvConf)
		}, resolverResolved, ""},
		{"initial namespace, resolved's resolv.conf by a relative link", func(t *testing.T, fs *fakeSystem) {
			fs.write(t, "resolve/resolv.conf", "nameserver 192.0.2.53\n")
			os.Symlink("../resolve/resolv.conf", fs.env.resolvConf)
		}, resolverResolved, ""},
		{"initial namespace, link to resolved but resolved not running", func(t *testing.T, fs *fakeSystem) {
			fs.write(t, "resolve/stub-resolv.conf", "nameserver 127.0.0.53\n")
			os.Symlink(filepath.Join(fs.dir, "resolve/stub-resolv.conf"), fs.env.resolvConf)
			fs.env.resolvectl = down
		}, resolverFile, ""},
		{"initial namespace, link to resolved but no resolvectl", func(t *testing.T, fs *fakeSystem) {
			fs.write(t, "resolve/stub-resolv.conf", "nameserver 127.0.0.53\n")
			os.Symlink(filepath.Join(fs.dir, "resolve/stub-resolv.conf"), fs.env.resolvConf)
			fs.env.resolvectl = nil
		}, resolverFile, ""},
		{"initial namespace, link elsewhere (resolvconf)", func(t *testing.T, fs *fakeSystem) {
			fs.write(t, "etc/resolvconf-out", "nameserver 192.0.2.53\n")
			os.Symlink("resolvconf-out", fs.env.resolvConf)
		}, resolverFile, ""},
		{"own namespace by setns: the machine's file", func(t *testing.T, fs *fakeSystem) {
			fs.write(t, "etc/resolv.conf", "nameserver 192.0.2.53\n")
			fs.env.initNetNS = filepath.Join(fs.dir, "ns/other")
		}, resolverNone, "that file is the machine's"},
		{"own namespace by setns: the machine's file is resolved's", func(t *testing.T, fs *fakeSystem) {
			fs.write(t, "resolve/stub-resolv.conf", "nameserver 127.0.0.53\n")
			os.Symlink(filepath.Join(fs.dir, "resolve/stub-resolv.conf"), fs.env.resolvConf)
			fs.env.initNetNS = filepath.Join(fs.dir, "ns/other")
		}, resolverNone, "that file is the machine's"},
		{"own namespace by setns, no file anywhere", func(t *testing.T, fs *fakeSystem) {
			fs.env.initNetNS = filepath.Join(fs.dir, "ns/other")
		}, resolverNone, "that file is the machine's"},
		{"own namespace by ip netns exec: a file of its own", func(t *testing.T, fs *fakeSystem) {
			fs.write(t, "etc/resolv.conf", "nameserver 10.200.3.2\n")
			fs.env.initNetNS = filepath.Join(fs.dir, "ns/other")
			// PID 1 sees another file at the same path, as after the bind
			// mount `ip netns exec` makes.
			fs.env.initRoot = filepath.Join(fs.dir, "init")
			initView := filepath.Join(fs.env.initRoot, fs.env.resolvConf)
			os.MkdirAll(filepath.Dir(initView), 0o755)
			if err := os.WriteFile(initView, []byte("nameserver 192.0.2.53\n"), 0o644); err != nil {
				t.Fatal(err)
			}
		}, resolverFile, ""},
		{"no /proc/1 access, named namespace entered by setns", func(t *testing.T, fs *fakeSystem) {
			fs.write(t, "etc/resolv.conf", "nameserver 192.0.2.53\n")
			fs.write(t, "etc-netns/bwc1/resolv.conf", "nameserver 10.200.3.2\n")
			fs.env.initNetNS = filepath.Join(fs.dir, "ns/missing")
			fs.name(t, "bwc1")
		}, resolverNone, "that file is the machine's"},
		{"no /proc/1 access, named namespace without a file of its own", func(t *testing.T, fs *fakeSystem) {
			fs.write(t, "etc/resolv.conf", "nameserver 192.0.2.53\n")
			fs.env.initNetNS = filepath.Join(fs.dir, "ns/missing")
			fs.name(t, "bwc1")
		}, resolverNone, "that file is the machine's"},
		{"no /proc/1 access, named namespace by ip netns exec", func(t *testing.T, fs *fakeSystem) {
			// The bind mount makes /etc/resolv.conf the namespace's file.
			fs.env.resolvConf = fs.write(t, "etc-netns/bwc1/resolv.conf", "nameserver 10.200.3.2\n")
			fs.env.initNetNS = filepath.Join(fs.dir, "ns/missing")
			fs.name(t, "bwc1")
		}, resolverFile, ""},
		{"no /proc/1 access, not a named namespace (a container's own)", func(t *testing.T, fs *fakeSystem) {
			fs.write(t, "etc/resolv.conf", "nameserver 192.0.2.53\n")
			fs.env.initNetNS = filepath.Join(fs.dir, "ns/missing")
		}, resolverFile, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fs := newFakeSystem(t)
			tt.setup(t, fs)
			got, why, err := chooseResolver(fs.env)
			if err != nil {
				t.Fatalf("chooseResolver: %v", err)
			}
			if got != tt.want {
				t.Errorf("chooseResolver = %q (%s), want %q", got, why, tt.want)
			}
			if !strings.Contains(why, tt.wantWhy) {
				t.Errorf("chooseResolver's reason = %q, want it to say %q", why, tt.wantWhy)
			}
		})
	}
}

func TestResolvedLinkSettings(t *testing.T) {
	var calls [][]string
	rc := func(args ...string) error { calls = append(calls, args); return nil }
	if err := pointResolved(rc, "burrow0"); err != nil {
		t.Fatal(err)
	}
	if err := revertResolved(rc, "lo"); err != nil { // an interface that exists
		t.Fatal(err)
	}
	if err := revertResolved(rc, "burrow-gone"); err != nil { // one that is gone took its settings
		t.Fatal(err)
	}
	want := [][]string{
		{"dns", "burrow0", DNSAddr.String()},
		{"domain", "burrow0", "~."},
		{"default-route", "burrow0", "yes"},
		{"revert", "lo"},
	}
	if !slices.EqualFunc(calls, want, slices.Equal) {
		t.Errorf("resolvectl calls = %q, want %q", calls, want)
	}
}

// TestResolvFileRoundTrip: what the file was (content and mode, a symlink,
// nothing) is what it is again after restore; a file someone else changed
// meanwhile is left alone; a torn write of ours is undone.
func TestResolvFileRoundTrip(t *testing.T) {
	tests := []struct {
		name     string
		before   func(path string) // nil: no file
		meddle   func(path string) // after our write, before restore
		restored bool
	}{
		{"regular file", func(p string) { os.WriteFile(p, []byte("nameserver 192.0.2.53\n"), 0o755) }, nil, true},
		{"symlink", func(p string) { os.Symlink("../run/elsewhere/resolv.conf", p) }, nil, true},
		{"no file", nil, nil, true},
		{"torn write", func(p string) { os.WriteFile(p, []byte("nameserver 192.0.2.53\n"), 0o644) },
			func(p string) { os.WriteFile(p, resolvBody[:10], 0o644) }, true},
		{"changed by someone else", func(p string) { os.WriteFile(p, []byte("nameserver 192.0.2.53\n"), 0o644) },
			func(p string) { os.WriteFile(p, []byte("nameserver 198.51.100.1\n"), 0o644) }, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "resolv.conf")
			if tt.before != nil {
				tt.before(path)
			}
			orig := snapshot(path)
			b, err := backupFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if err := replaceFile(path, b.Written, b.Mode); err != nil {
				t.Fatal(err)
			}
			if got, _ := os.ReadFile(path); string(got) != string(resolvBody) {
				t.Fatalf("after replaceFile the file holds %q, want %q", got, resolvBody)
			}
			if tt.meddle != nil {
				tt.meddle(path)
			}
			meddled := snapshot(path)
			if err := restoreFile(path, b); err != nil {
				t.Fatal(err)
			}
			got, want := snapshot(path), orig
			if !tt.restored {
				want = meddled
			}
			if got != want {
				t.Errorf("after restore the file is %s, want %s", got, want)
			}
		})
	}
}

// snapshot describes a file: kind, mode, content or link target.
func snapshot(path string) string {
	fi, err := os.Lstat(path)
	if err != nil {
		return "missing"
	}
	if fi.Mode()&os.ModeSymlink != 0 {
		t, _ := os.Readlink(path)
		return "symlink to " + t
	}
	b, _ := os.ReadFile(path)
	return fi.Mode().String() + " " + string(b)
}
