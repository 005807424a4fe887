//go:build unix

package atomicfile

import "os"

// syncDir makes a rename in dir durable: until the directory itself is
// synced, a crash may bring back the old file.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	if err := d.Sync(); err != nil {
		d.Close()
		return err
	}
	return d.Close()
}
