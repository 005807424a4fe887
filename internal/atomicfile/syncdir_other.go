//go:build !unix

package atomicfile

// syncDir does nothing where a directory cannot be opened for syncing
// (Windows): there a rename lasts as the file system makes it last.
func syncDir(string) error { return nil }
