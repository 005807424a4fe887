package main

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
)

// fakeHost records what install, uninstall and upgrade would run, and
// creates no user: the test must not change the machine.
func fakeHost(systemd bool, ran *[]string) host {
	return host{
		systemd: systemd,
		run: func(name string, args ...string) error {
			*ran = append(*ran, name+" "+strings.Join(args, " "))
			return nil
		},
		ensureUser: func(name, home string) (int, int, error) {
			*ran = append(*ran, "ensure user "+name+" home "+home)
			return os.Getuid(), os.Getgid(), nil
		},
	}
}

// tempServer is a data directory that looks initialised to install.
func tempServer(t *testing.T) string {
	t.Helper()
	data := filepath.Join(t.TempDir(), "data")
	if err := os.MkdirAll(data, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(data, "config.json"), []byte("{}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return data
}

// TestServiceInstallUninstall installs into a temporary unit directory
// with a recording host, checks the unit with systemd-analyze verify, and
// uninstalls it. What ran: the file writes and systemd-analyze; the
// systemctl calls are recorded, not run.
func TestServiceInstallUninstall(t *testing.T) {
	if runtime.GOOS != "linux" || os.Geteuid() != 0 {
		t.Skip("systemd unit test: needs Linux and root (the unit names a system user)")
	}
	analyze, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Fatal("systemd-analyze is missing: install Debian's systemd package (.ci/run does) to check the unit")
	}
	self, err := selfPath()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	s := service{Name: "burrow", User: "burrow", Data: tempServer(t), UnitDir: filepath.Join(dir, "units"),
		Binary: filepath.Join(dir, "bin", "burrow")}
	if err := s.resolve(self, true); err != nil {
		t.Fatal(err)
	}
	var ran []string
	var log bytes.Buffer
	if err := installService(s, self, fakeHost(true, &ran), &log); err != nil {
		t.Fatalf("install: %v\n%s", err, log.String())
	}
	want := []string{"ensure user burrow home " + s.Data, "systemctl daemon-reload", "systemctl enable --now burrow.service"}
	if !slices.Equal(ran, want) {
		t.Errorf("install ran %q, want %q", ran, want)
	}
	if a, b := fileBytes(t, self), fileBytes(t, s.Binary); !bytes.Equal(a, b) {
		t.Errorf("install copied %d bytes to %s, want the %d of %s", len(b), s.Binary, len(a), self)
	}
	unit := string(fileBytes(t, s.unitPath()))
	for _, line := range []string{"User=burrow", "ExecStart=" + s.Binary + " server run --data " + s.Data,
		"ReadWritePaths=" + s.Data, "AmbientCapabilities=CAP_NET_BIND_SERVICE", "NoNewPrivileges=yes",
		"ProtectSystem=strict", "Restart=on-failure", "LimitNOFILE=1048576"} {
		if !strings.Contains(unit, "\n"+line+"\n") {
			t.Errorf("unit lacks %q:\n%s", line, unit)
		}
	}
	if strings.Contains(unit, "CAP_NET_ADMIN") {
		t.Errorf("unit grants CAP_NET_ADMIN, which the server does not need:\n%s", unit)
	}
	// verify also checks that ExecStart's binary exists and is executable.
	if out, err := exec.Command(analyze, "verify", s.unitPath()).CombinedOutput(); err != nil || len(out) > 0 {
		t.Errorf("systemd-analyze verify %s: %v\n%s", s.unitPath(), err, out)
	}

	ran = nil
	if err := uninstallService(s, fakeHost(true, &ran), &log); err != nil {
		t.Fatal(err)
	}
	if want := []string{"systemctl disable --now burrow.service", "systemctl daemon-reload"}; !slices.Equal(ran, want) {
		t.Errorf("uninstall ran %q, want %q", ran, want)
	}
	if _, err := os.Stat(s.unitPath()); !os.IsNotExist(err) {
		t.Errorf("unit still there after uninstall: %v", err)
	}
	if _, err := os.Stat(filepath.Join(s.Data, "config.json")); err != nil {
		t.Errorf("uninstall lost the data: %v", err)
	}
	if !strings.Contains(log.String(), "The data in "+s.Data+" is kept") {
		t.Errorf("uninstall did not say the data is kept:\n%s", log.String())
	}
}

func TestServiceResolveRefuses(t *testing.T) {
	empty := t.TempDir()
	tests := []struct {
		name string
		s    service
		want string
	}{
		{"no server", service{Name: "burrow", User: "burrow", Data: empty}, "burrow server init"},
		{"bad name", service{Name: "a/b", User: "burrow", Data: tempServer(t)}, "--name"},
		{"bad user", service{Name: "burrow", User: "a:b", Data: tempServer(t)}, "--user"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.s.resolve("/usr/bin/burrow", true)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("resolve(%+v) = %v, want an error mentioning %q", tt.s, err, tt.want)
			}
		})
	}
	s := service{Name: "burrow", User: "burrow", Data: tempServer(t)}
	if err := s.resolve("/usr/bin/burrow", true); err != nil || s.Binary != "/usr/bin/burrow" {
		t.Errorf("resolve from /usr/bin: binary %q, %v; want the binary used in place", s.Binary, err)
	}
	s = service{Name: "burrow", User: "burrow", Data: s.Data}
	if err := s.resolve("/root/burrow", true); err != nil || s.Binary != installedBinary {
		t.Errorf("resolve from /root: binary %q, %v; want a copy at %s", s.Binary, err, installedBinary)
	}
}

func TestUnitParsing(t *testing.T) {
	s := service{Name: "burrow", User: "burrow", Binary: "/opt/my tools/burrow", Data: "/srv/burrow data"}
	unit := s.unit()
	if got := execBinary(unit); got != s.Binary {
		t.Errorf("execBinary(unit of %q) = %q", s.Binary, got)
	}
	if got := unitValue(unit, "ReadWritePaths"); got != s.Data {
		t.Errorf("ReadWritePaths of unit = %q, want %q", got, s.Data)
	}
	s.Binary = "/usr/bin/burrow"
	if got := execBinary(s.unit()); got != s.Binary {
		t.Errorf("execBinary(unit of %q) = %q", s.Binary, got)
	}
}

// TestServerUpgrade swaps real burrow binaries in a temporary directory
// with `server upgrade --no-restart`: a binary that does not run is
// refused and changes nothing; a good one replaces the old, and the
// server's users are there for the new binary. The restart itself is
// checked with a recording host (systemd is not run by tests); that a
// SIGTERM and start keep users and counters is TestServerSIGTERMAndRestart.
func TestServerUpgrade(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("server upgrade replaces a Linux service's binary")
	}
	bin := burrowBinary(t)
	dir := t.TempDir()
	target := filepath.Join(dir, "bin", "burrow")
	if err := replaceFile(target, bin, 0o755); err != nil {
		t.Fatal(err)
	}
	newBin := filepath.Join(dir, "new", "burrow")
	const newVer = "v9.9.9-upgrade-test"
	if out, err := exec.Command("go", "build", "-o", newBin, "-ldflags",
		"-X main.version="+newVer+" -X main.releaseVersion="+newVer, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	data, _, _ := initBinaryServer(t, target)
	if out, err := exec.Command(target, "user", "add", "alice", "--data", data).CombinedOutput(); err != nil {
		t.Fatalf("user add: %v\n%s", err, out)
	}
	upgrade := func(from string) ([]byte, error) {
		return exec.Command(target, "server", "upgrade", from, "--binary", target,
			"--unit-dir", filepath.Join(dir, "units"), "--no-restart").CombinedOutput()
	}

	bad := filepath.Join(dir, "bad")
	if err := os.WriteFile(bad, []byte("#!/bin/sh\nexit 3\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	before := fileBytes(t, target)
	if out, err := upgrade(bad); err == nil || !strings.Contains(string(out), "nothing was changed") {
		t.Errorf("upgrade to a failing binary: %v\n%s\nwant refused", err, out)
	}
	if !bytes.Equal(fileBytes(t, target), before) {
		t.Fatal("a refused upgrade changed the binary")
	}

	out, err := upgrade(newBin)
	if err != nil {
		t.Fatalf("upgrade: %v\n%s", err, out)
	}
	if !bytes.Equal(fileBytes(t, target), fileBytes(t, newBin)) {
		t.Fatal("after upgrade the binary is not the new one")
	}
	if v, err := exec.Command(target, "version").Output(); err != nil || !strings.Contains(string(v), newVer) {
		t.Errorf("upgraded binary's version: %q, %v; want %s", v, err, newVer)
	}
	if st, err := os.Stat(target); err != nil || st.Mode().Perm() != 0o755 {
		t.Errorf("upgraded binary mode: %v, %v; want 0755", st.Mode(), err)
	}
	if leftovers, _ := filepath.Glob(filepath.Join(dir, "bin", ".*")); len(leftovers) > 0 {
		t.Errorf("upgrade left temporary files: %q", leftovers)
	}
	list, err := exec.Command(target, "user", "list", "--data", data).CombinedOutput()
	if err != nil || !strings.Contains(string(list), "owner") || !strings.Contains(string(list), "alice") {
		t.Errorf("user list with the new binary: %v\n%s\nwant owner and alice", err, list)
	}

	// Under systemd, with the unit installed, the service is restarted.
	s := service{Name: "burrow", Binary: target, UnitDir: filepath.Join(dir, "units")}
	if err := writeFileAtomic(s.unitPath(), []byte(s.unit()), 0o644); err != nil {
		t.Fatal(err)
	}
	var ran []string
	var log bytes.Buffer
	if err := upgradeService(context.Background(), s, newBin, fakeHost(true, &ran), &log); err != nil {
		t.Fatalf("upgrade: %v\n%s", err, log.String())
	}
	if want := []string{"systemctl restart burrow.service"}; !slices.Equal(ran, want) {
		t.Errorf("upgrade under systemd ran %q, want %q", ran, want)
	}
}

func fileBytes(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestRelayServiceUnit: `burrow relay install` writes the same hardened
// unit for `burrow relay run`, under its own name, which systemd accepts;
// a directory without a relay is refused.
func TestRelayServiceUnit(t *testing.T) {
	if runtime.GOOS != "linux" || os.Geteuid() != 0 {
		t.Skip("systemd unit test: needs Linux and root (the unit names a system user)")
	}
	analyze, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Fatal("systemd-analyze is missing: install Debian's systemd package (.ci/run does) to check the unit")
	}
	self, err := selfPath()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	data := filepath.Join(dir, "relay")
	if err := os.MkdirAll(data, 0o700); err != nil {
		t.Fatal(err)
	}
	s := service{Role: roleRelay, Name: roleRelay.defaultUnit, User: "burrow", Data: data,
		UnitDir: filepath.Join(dir, "units"), Binary: filepath.Join(dir, "bin", "burrow")}
	if err := s.resolve(self, true); err == nil || !strings.Contains(err.Error(), "burrow relay init") {
		t.Fatalf("resolve without relay.json = %v, want a pointer to burrow relay init", err)
	}
	if err := os.WriteFile(filepath.Join(data, "relay.json"), []byte("{}"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := s.resolve(self, true); err != nil {
		t.Fatal(err)
	}
	var ran []string
	var log bytes.Buffer
	if err := installService(s, self, fakeHost(true, &ran), &log); err != nil {
		t.Fatalf("install: %v\n%s", err, log.String())
	}
	if want := "systemctl enable --now burrow-relay.service"; !slices.Contains(ran, want) {
		t.Errorf("install ran %q, want %q among them", ran, want)
	}
	unit := string(fileBytes(t, s.unitPath()))
	for _, line := range []string{"ExecStart=" + s.Binary + " relay run --data " + s.Data, "ReadWritePaths=" + s.Data,
		"AmbientCapabilities=CAP_NET_BIND_SERVICE", "NoNewPrivileges=yes", "ProtectSystem=strict",
		"# Written by burrow relay install. Remove with: burrow relay uninstall"} {
		if !strings.Contains(unit, line+"\n") {
			t.Errorf("unit lacks %q:\n%s", line, unit)
		}
	}
	if out, err := exec.Command(analyze, "verify", s.unitPath()).CombinedOutput(); err != nil || len(out) > 0 {
		t.Errorf("systemd-analyze verify %s: %v\n%s", s.unitPath(), err, out)
	}
}
