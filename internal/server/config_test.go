package server

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/burrow-vpn/burrow/internal/camo"
)

// validConfig returns a config that passes Validate, with a fresh key pair.
func validConfig(t *testing.T) *Config {
	t.Helper()
	priv, pub, err := camo.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	c := &Config{
		Cover:       "www.example.com:443",
		ServerNames: []string{"www.example.com"},
		PublicAddr:  "203.0.113.7",
		PrivateKey:  EncodeKey(priv),
		PublicKey:   EncodeKey(pub),
		ShortIDs:    []string{"6ba85179e30d4fc2"},
	}
	c.Defaults()
	return c
}

// TestLoadConfigKeyPair writes configs to a data dir and loads them: a
// matching key pair loads; a public key from another pair (links made with it
// would only ever reach the cover site) is refused with an error that names
// the public key to set and never shows the private key.
func TestLoadConfigKeyPair(t *testing.T) {
	good := validConfig(t)
	dir := t.TempDir()
	if err := WriteConfig(dir, good); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadConfig(dir); err != nil {
		t.Fatalf("LoadConfig(matching keys) = %v, want nil", err)
	}

	bad := *good
	bad.PublicKey = validConfig(t).PublicKey
	dir = t.TempDir()
	if err := WriteConfig(dir, &bad); err != nil {
		t.Fatal(err)
	}
	_, err := LoadConfig(dir)
	if err == nil {
		t.Fatal("LoadConfig(public key of another pair) = nil, want an error")
	}
	msg := err.Error()
	if !strings.Contains(msg, "does not belong to private_key") || !strings.Contains(msg, "set public_key to "+good.PublicKey) {
		t.Errorf("LoadConfig error = %q, want it to say the keys do not match and to set public_key to %s", msg, good.PublicKey)
	}
	if strings.Contains(msg, good.PrivateKey) {
		t.Errorf("LoadConfig error shows the private key: %q", msg)
	}
}

// TestLoadConfigFile: a data dir without a config says how to make one
// (and is fs.ErrNotExist to callers), and the file is written 0600: it
// holds the private key.
func TestLoadConfigFile(t *testing.T) {
	dir := t.TempDir()
	_, err := LoadConfig(dir)
	if !errors.Is(err, fs.ErrNotExist) || !strings.Contains(err.Error(), "burrow server init --data "+dir) {
		t.Fatalf("LoadConfig of an empty dir = %v, want fs.ErrNotExist and advice to run server init", err)
	}
	if err := WriteConfig(dir, validConfig(t)); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(filepath.Join(dir, ConfigFile)); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("config.json: %v, mode %v; want 0600", err, fi.Mode().Perm())
	}
}
