// Package atomicfile writes a file so that a crash or a full disk never
// leaves it torn: a temporary file beside it is written, synced and renamed
// over it, and the directory is synced so that the rename lasts. LoadJSON
// and WriteJSON read and write the JSON config files kept that way.
package atomicfile

import (
	"fmt"
	"os"
	"path/filepath"
)

// Write replaces path by a file holding data, with mode. On error path is
// untouched and no temporary file is left. The error names path.
func Write(path string, data []byte, mode os.FileMode) error {
	if err := write(path, data, mode); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

func write(path string, data []byte, mode os.FileMode) error {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, ".tmp-"+filepath.Base(path)+"-*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	defer os.Remove(tmp) // no-op after a successful rename
	if err := f.Chmod(mode); err != nil {
		f.Close()
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		return err
	}
	return syncDir(dir)
}
