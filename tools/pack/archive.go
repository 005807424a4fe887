package main

import (
	"archive/tar"
	"archive/zip"
	"compress/gzip"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// entry is one file or directory of an archive. Name uses '/' and, for a
// directory, ends in '/'.
type entry struct {
	Name string
	Mode fs.FileMode // permission bits only
	Data []byte
}

func (e entry) isDir() bool { return strings.HasSuffix(e.Name, "/") }

// readFiles loads paths as entries under dir: 0755 when the file is
// executable by its owner (or is a .exe), else 0644; sorted by name.
func readFiles(dir string, paths []string) ([]entry, error) {
	out := []entry{{Name: dir + "/", Mode: 0o755}}
	for _, p := range paths {
		st, err := os.Stat(p)
		if err != nil {
			return nil, err
		}
		if !st.Mode().IsRegular() {
			return nil, fmt.Errorf("%s is not a regular file", p)
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return nil, err
		}
		mode := fs.FileMode(0o644)
		if st.Mode()&0o100 != 0 || strings.HasSuffix(p, ".exe") {
			mode = 0o755
		}
		out = append(out, entry{Name: path.Join(dir, filepath.Base(p)), Mode: mode, Data: b})
	}
	sortEntries(out)
	for i := 1; i < len(out); i++ {
		if out[i].Name == out[i-1].Name {
			return nil, fmt.Errorf("two files named %s", out[i].Name)
		}
	}
	return out, nil
}

func sortEntries(es []entry) {
	slices.SortFunc(es, func(a, b entry) int { return strings.Compare(a.Name, b.Name) })
}

// writeTarGz writes a gzip'd ustar/PAX archive owned by root, with no
// name or time in the gzip header.
func writeTarGz(w io.Writer, es []entry, mtime time.Time) error {
	gz, err := gzip.NewWriterLevel(w, gzip.BestCompression)
	if err != nil {
		return err
	}
	if err := writeTar(gz, es, mtime); err != nil {
		return err
	}
	return gz.Close()
}

func writeTar(w io.Writer, es []entry, mtime time.Time) error {
	tw := tar.NewWriter(w)
	for _, e := range es {
		h := &tar.Header{Name: e.Name, Mode: int64(e.Mode), ModTime: mtime, Uname: "root", Gname: "root",
			Typeflag: tar.TypeReg, Size: int64(len(e.Data)), Format: tar.FormatGNU}
		if e.isDir() {
			h.Typeflag, h.Size = tar.TypeDir, 0
		}
		if err := tw.WriteHeader(h); err != nil {
			return fmt.Errorf("tar %s: %w", e.Name, err)
		}
		if _, err := tw.Write(e.Data); err != nil {
			return fmt.Errorf("tar %s: %w", e.Name, err)
		}
	}
	return tw.Close()
}

// writeZip writes a zip with fixed times and Unix modes (so unzip on
// Linux and macOS keeps the executable bit).
func writeZip(w io.Writer, es []entry, mtime time.Time) error {
	zw := zip.NewWriter(w)
	for _, e := range es {
		h := &zip.FileHeader{Name: e.Name, Method: zip.Deflate, Modified: mtime}
		h.SetMode(e.Mode)
		if e.isDir() {
			h.Method = zip.Store
			h.SetMode(fs.ModeDir | e.Mode)
		}
		f, err := zw.CreateHeader(h)
		if err != nil {
			return fmt.Errorf("zip %s: %w", e.Name, err)
		}
		if _, err := f.Write(e.Data); err != nil {
			return fmt.Errorf("zip %s: %w", e.Name, err)
		}
	}
	return zw.Close()
}
