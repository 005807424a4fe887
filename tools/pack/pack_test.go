package main

import (
	"archive/tar"
	"archive/zip"
	"bytes"
	"compress/gzip"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

var mtime = time.Unix(1767225600, 0).UTC() // 2026-01-01

// files writes a binary and a readme to disk, with this run's own
// modification times and modes, which must not reach the archive.
func files(t *testing.T) []string {
	t.Helper()
	dir := t.TempDir()
	bin := filepath.Join(dir, "burrow")
	readme := filepath.Join(dir, "README.md")
	if err := os.WriteFile(bin, []byte("\x7fELF not really"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(readme, []byte("# Burrow\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return []string{readme, bin}
}

func build(t *testing.T, out string, args ...string) []byte {
	t.Helper()
	if err := run(append([]string{args[0], "-o", out}, args[1:]...)); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestReproducible: the same inputs at other times, from other
// directories, give the same bytes.
func TestReproducible(t *testing.T) {
	for _, name := range []string{"a.tar.gz", "a.zip"} {
		t.Run(name, func(t *testing.T) {
			f1, f2 := files(t), files(t)
			os.Chtimes(f2[1], time.Now().Add(time.Hour), time.Now().Add(time.Hour))
			args := func(fs []string) []string {
				return append([]string{"archive", "-mtime", "1767225600", "-dir", "burrow_1.0.0_linux_amd64"}, fs...)
			}
			a := build(t, filepath.Join(t.TempDir(), name), args(f1)...)
			b := build(t, filepath.Join(t.TempDir(), name), args(f2)...)
			if !bytes.Equal(a, b) {
				t.Errorf("two builds of %s differ (%d and %d bytes)", name, len(a), len(b))
			}
		})
	}
}

func TestTarGzContents(t *testing.T) {
	b := build(t, filepath.Join(t.TempDir(), "a.tar.gz"),
		append([]string{"archive", "-mtime", "1767225600", "-dir", "d"}, files(t)...)...)
	zr, err := gzip.NewReader(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	if zr.Name != "" || !zr.ModTime.IsZero() {
		t.Errorf("gzip header has name %q, time %v; want neither", zr.Name, zr.ModTime)
	}
	var got []string
	tr := tar.NewReader(zr)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if !h.ModTime.Equal(mtime) || h.Uid != 0 || h.Gid != 0 || h.Uname != "root" {
			t.Errorf("%s: time %v owner %d:%d %s; want %v, root", h.Name, h.ModTime, h.Uid, h.Gid, h.Uname, mtime)
		}
		got = append(got, h.Name+" "+os.FileMode(h.Mode).String())
	}
	want := "d/ -rwxr-xr-x|d/README.md -rw-r--r--|d/burrow -rwxr-xr-x"
	if strings.Join(got, "|") != want {
		t.Errorf("tar entries %q, want %q", strings.Join(got, "|"), want)
	}
}

func TestZipContents(t *testing.T) {
	b := build(t, filepath.Join(t.TempDir(), "a.zip"),
		append([]string{"archive", "-mtime", "1767225600", "-dir", "d"}, files(t)...)...)
	zr, err := zip.NewReader(bytes.NewReader(b), int64(len(b)))
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, f := range zr.File {
		if !f.Modified.Equal(mtime) {
			t.Errorf("%s: time %v, want %v", f.Name, f.Modified, mtime)
		}
		got = append(got, f.Name+" "+f.Mode().String())
	}
	want := "d/ drwxr-xr-x|d/README.md -rw-r--r--|d/burrow -rwxr-xr-x"
	if strings.Join(got, "|") != want {
		t.Errorf("zip entries %q, want %q", strings.Join(got, "|"), want)
	}
}

// TestDeb builds a package and, where dpkg-deb is installed, has it read
// the control data and list the files.
func TestDeb(t *testing.T) {
	dir := t.TempDir()
	fs := files(t)
	unit := filepath.Join(dir, "burrow.service")
	if err := os.WriteFile(unit, []byte("[Service]\nExecStart=/usr/bin/burrow server run\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	args := []string{"deb", "-mtime", "1767225600", "-version", "1.2.0", "-arch", "arm64", "-binary", fs[1], "-unit", unit}
	a := build(t, filepath.Join(dir, "a.deb"), args...)
	b := build(t, filepath.Join(dir, "b.deb"), args...)
	if !bytes.Equal(a, b) {
		t.Error("two builds of the .deb differ")
	}
	if !bytes.HasPrefix(a, []byte("!<arch>\ndebian-binary   1767225600  0     0     100644  4         `\n2.0\n")) {
		t.Errorf("deb does not start with the ar header and debian-binary member: %q", a[:min(len(a), 80)])
	}
	for _, bad := range [][]string{{"-version", "v1"}, {"-arch", "mips"}} {
		bargs := append(append([]string{}, args...), bad...)
		if err := run(append([]string{bargs[0], "-o", filepath.Join(dir, "bad.deb")}, bargs[1:]...)); err == nil {
			t.Errorf("deb %v: no error", bad)
		}
	}
	if _, err := exec.LookPath("dpkg-deb"); err != nil {
		t.Skip("dpkg-deb not installed: the package was not read back with dpkg")
	}
	info, err := exec.Command("dpkg-deb", "--info", filepath.Join(dir, "a.deb")).CombinedOutput()
	if err != nil {
		t.Fatalf("dpkg-deb --info: %v\n%s", err, info)
	}
	for _, want := range []string{"Package: burrow", "Version: 1.2.0", "Architecture: arm64", "postinst", "prerm"} {
		if !strings.Contains(string(info), want) {
			t.Errorf("dpkg-deb --info lacks %q:\n%s", want, info)
		}
	}
	list, err := exec.Command("dpkg-deb", "--contents", filepath.Join(dir, "a.deb")).CombinedOutput()
	if err != nil {
		t.Fatalf("dpkg-deb --contents: %v\n%s", err, list)
	}
	for _, want := range []string{"-rwxr-xr-x root/root", "./usr/bin/burrow", "./lib/systemd/system/burrow.service", "2026-01-01"} {
		if !strings.Contains(string(list), want) {
			t.Errorf("dpkg-deb --contents lacks %q:\n%s", want, list)
		}
	}
	// dpkg-deb unpacks it byte for byte.
	out := filepath.Join(dir, "x")
	if b, err := exec.Command("dpkg-deb", "-x", filepath.Join(dir, "a.deb"), out).CombinedOutput(); err != nil {
		t.Fatalf("dpkg-deb -x: %v\n%s", err, b)
	}
	if got, _ := os.ReadFile(filepath.Join(out, "usr/bin/burrow")); !bytes.Equal(got, []byte("\x7fELF not really")) {
		t.Errorf("unpacked binary = %q", got)
	}
}
