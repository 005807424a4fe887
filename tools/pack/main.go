// Command pack writes Burrow's release archives and Debian packages
// byte for byte reproducibly: entries sorted by name, every timestamp the
// release commit's time, owner root:root, fixed modes, and no compressor
// header fields that vary (gzip name and time). release.sh runs it.
//
//	pack archive -mtime UNIX -o burrow_V_OS_ARCH.tar.gz|.zip -dir NAME FILE...
//	pack deb -mtime UNIX -o burrow_V_ARCH.deb -version V -arch ARCH -binary FILE -unit FILE
//
// An archive holds FILE... under the directory NAME (executables mode
// 0755, the rest 0644). A .deb is the three-member ar archive dpkg reads:
// debian-binary, control.tar.gz and data.tar.gz.
package main

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"strings"
	"time"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "pack:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	if len(args) == 0 {
		return errors.New("want `pack archive ...` or `pack deb ...`")
	}
	fs := flag.NewFlagSet("pack "+args[0], flag.ContinueOnError)
	mtime := fs.Int64("mtime", -1, "timestamp of every entry, Unix seconds (the release commit's time)")
	out := fs.String("o", "", "file to write")
	switch args[0] {
	case "archive":
		dir := fs.String("dir", "", "directory the files go under inside the archive")
		if err := fs.Parse(args[1:]); err != nil {
			return err
		}
		if *mtime < 0 || *out == "" || *dir == "" || fs.NArg() == 0 {
			return errors.New("archive: want -mtime, -o, -dir and at least one file")
		}
		files, err := readFiles(*dir, fs.Args())
		if err != nil {
			return err
		}
		t := time.Unix(*mtime, 0).UTC()
		switch {
		case strings.HasSuffix(*out, ".tar.gz"):
			return writeOut(*out, func(f *os.File) error { return writeTarGz(f, files, t) })
		case strings.HasSuffix(*out, ".zip"):
			return writeOut(*out, func(f *os.File) error { return writeZip(f, files, t) })
		}
		return fmt.Errorf("archive: %s: want a .tar.gz or .zip name", *out)
	case "deb":
		var p debPackage
		fs.StringVar(&p.Version, "version", "", "package version")
		fs.StringVar(&p.Arch, "arch", "", "Debian architecture (amd64, arm64)")
		bin := fs.String("binary", "", "the burrow binary for that architecture")
		unit := fs.String("unit", "", "the systemd unit file")
		if err := fs.Parse(args[1:]); err != nil {
			return err
		}
		if *mtime < 0 || *out == "" || p.Version == "" || p.Arch == "" || *bin == "" || *unit == "" || fs.NArg() > 0 {
			return errors.New("deb: want -mtime, -o, -version, -arch, -binary and -unit")
		}
		var err error
		if p.Binary, err = os.ReadFile(*bin); err != nil {
			return fmt.Errorf("deb: %w", err)
		}
		if p.Unit, err = os.ReadFile(*unit); err != nil {
			return fmt.Errorf("deb: %w", err)
		}
		t := time.Unix(*mtime, 0).UTC()
		return writeOut(*out, func(f *os.File) error { return writeDeb(f, p, t) })
	}
	return fmt.Errorf("unknown command %q (want archive or deb)", args[0])
}

// writeOut creates path, fills it, and removes it again on failure.
func writeOut(path string, fill func(*os.File) error) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	err = fill(f)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(path)
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}
