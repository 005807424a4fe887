package relay

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/burrow-vpn/burrow/internal/relaylink"
)

func token(t *testing.T, addr string, key byte) string {
	t.Helper()
	tok := &relaylink.Token{Name: "r1", Addr: addr, SNI: "cover.test", Cover: "cover.test:443"}
	tok.PublicKey[0] = key
	tok.ShortID[0] = 7
	tok.Secret[0] = 9
	return tok.String()
}

func TestConfigValidate(t *testing.T) {
	good := func() *Config {
		c := &Config{Listen: "127.0.0.1:8443", PublicAddr: "198.51.100.1", Exits: []string{token(t, "203.0.113.1:443", 1), token(t, "203.0.113.2:443", 1)}}
		c.Defaults()
		return c
	}
	if err := good().Validate(); err != nil {
		t.Fatalf("Validate(good) = %v", err)
	}
	cases := []struct {
		name string
		edit func(c *Config)
		want string
	}{
		{"no exits", func(c *Config) { c.Exits = nil }, "no exits"},
		{"bad token", func(c *Config) { c.Exits[1] = "burrow-relay://x" }, "exit 2"},
		{"two servers", func(c *Config) { c.Exits[1] = token(t, "203.0.113.2:443", 2) }, "another key"},
		{"join and exits", func(c *Config) { c.Join = "burrow-node://x" }, "join and exits"},
		{"join not a node token", func(c *Config) { c.Exits, c.Join = nil, token(t, "203.0.113.2:443", 1) }, "not a fleet join token"},
		{"cover without sni", func(c *Config) { c.Cover = "vk.com:443" }, "go together"},
		{"bad listen", func(c *Config) { c.Listen = "8443" }, "listen"},
		{"no public addr", func(c *Config) { c.PublicAddr = "" }, "public_addr"},
		{"pool too big", func(c *Config) { c.MaxConns = 64 }, "max_conns"},
		{"budget too small", func(c *Config) { c.Budget = 100 }, "budget"},
	}
	for _, tc := range cases {
		c := good()
		tc.edit(c)
		if err := c.Validate(); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Validate(%s) = %v, want an error saying %q", tc.name, err, tc.want)
		}
	}
}

func TestConfigFile(t *testing.T) {
	dir := t.TempDir()
	c := &Config{Listen: ":443", PublicAddr: "198.51.100.1", Exits: []string{token(t, "203.0.113.1:443", 1)}, Cover: "vk.com:443", SNI: "vk.com"}
	c.Defaults()
	if err := WriteConfig(dir, c); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(filepath.Join(dir, ConfigFile))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("relay.json: %v, mode %v; want 0600 (it holds the relay's credentials)", err, fi.Mode().Perm())
	}
	got, err := LoadConfig(dir)
	if err != nil || got.SNI != "vk.com" || len(got.Exits) != 1 || got.MaxConns != DefaultMaxConns {
		t.Fatalf("LoadConfig = %+v, %v", got, err)
	}
	os.WriteFile(filepath.Join(dir, ConfigFile), []byte(`{"version":1,"listen":":443","public_addr":"x","exits":[],"extra":1}`), 0o600)
	if _, err := LoadConfig(dir); err == nil || !strings.Contains(err.Error(), "extra") {
		t.Errorf("LoadConfig with an unknown field = %v, want an error naming it", err)
	}
	if _, err := LoadConfig(t.TempDir()); !errors.Is(err, fs.ErrNotExist) || !strings.Contains(err.Error(), "relay init") {
		t.Errorf("LoadConfig of an empty dir = %v, want advice to run relay init", err)
	}
}

// TestConfigFleet: a fleet relay's file has a join token and no exits; as
// it runs (WithExits) it may have none yet, or exits of different keys.
func TestConfigFleet(t *testing.T) {
	c := &Config{Listen: "127.0.0.1:8443", PublicAddr: "198.51.100.1", Join: "burrow-node://from-the-control-plane"}
	c.Defaults()
	if err := c.Validate(); err != nil {
		t.Fatalf("Validate(join) = %v", err)
	}
	for _, exits := range [][]string{nil, {token(t, "203.0.113.1:443", 1), token(t, "203.0.113.2:443", 2)}} {
		run := c.WithExits(exits)
		if err := run.Validate(); err != nil {
			t.Errorf("Validate(WithExits(%d exits)) = %v", len(exits), err)
		}
		if run.Join != "" || c.Join == "" {
			t.Errorf("WithExits: join %q in the copy, %q in the file's", run.Join, c.Join)
		}
	}
}
