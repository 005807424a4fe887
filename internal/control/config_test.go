package control

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestLoadConfigFile: a directory without control.json says how to make
// one (and is fs.ErrNotExist to callers), the file is written 0600 (it
// holds private keys), and an unknown field is refused naming the file.
func TestLoadConfigFile(t *testing.T) {
	dir := t.TempDir()
	_, err := LoadConfig(dir)
	if !errors.Is(err, fs.ErrNotExist) || !strings.Contains(err.Error(), "burrow control init --data "+dir) {
		t.Fatalf("LoadConfig of an empty dir = %v, want fs.ErrNotExist and advice to run control init", err)
	}
	if err := WriteConfig(dir, testConfig(t)); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, ConfigFile)
	if fi, err := os.Stat(p); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("control.json: %v, mode %v; want 0600", err, fi.Mode().Perm())
	}
	b, _ := os.ReadFile(p)
	os.WriteFile(p, []byte(strings.Replace(string(b), "{", `{"extra": 1,`, 1)), 0o600)
	if _, err := LoadConfig(dir); err == nil || !strings.Contains(err.Error(), p) || !strings.Contains(err.Error(), "extra") {
		t.Errorf("LoadConfig with an unknown field = %v, want an error naming %s and the field", err, p)
	}
}
