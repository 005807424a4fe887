package control

import (
	"bytes"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/burrow-vpn/burrow/internal/access"
	"github.com/burrow-vpn/burrow/internal/links"
)

func testConfig(t *testing.T) *Config {
	t.Helper()
	c, err := NewConfig(DBSQLite, "127.0.0.1:8443", "control.example", "cover.example:443", []string{"cover.example"})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestTokenRoundTrip(t *testing.T) {
	c := testConfig(t)
	priv, sid := newIdentity()
	n := &Node{Name: "exit-1", Role: RoleExit, PrivateKey: priv, ShortID: sid}
	tok, err := NewToken(c, n)
	if err != nil {
		t.Fatal(err)
	}
	s := tok.String()
	if strings.ContainsAny(s, " \n") || !strings.HasPrefix(s, TokenScheme+"://") {
		t.Fatalf("token %q is not one line of %s://", s, TokenScheme)
	}
	got, err := ParseToken(s)
	if err != nil {
		t.Fatal(err)
	}
	if !got.Key.Equal(priv) || got.ShortID != sid || got.Addr != "control.example:8443" || got.Role != RoleExit ||
		got.SNI != "cover.example" || got.Name != "exit-1" || !got.Control.Equal(c.Identity().Public()) ||
		string(got.PublicKey) != string(tok.PublicKey) || got.Fingerprint != "chrome" {
		t.Fatalf("ParseToken(String()) = %+v, want %+v", got, tok)
	}
	if strings.Contains(got.Redacted(), b64(priv.Seed())) {
		t.Fatal("Redacted() shows the node's key")
	}
	if _, err := NewToken(c, &Node{Name: "x"}); err == nil {
		t.Fatal("NewToken of a node without its private key: want an error")
	}
}

func TestParseTokenRejects(t *testing.T) {
	c := testConfig(t)
	priv, sid := newIdentity()
	tok, _ := NewToken(c, &Node{Name: "r", Role: RoleRelay, PrivateKey: priv, ShortID: sid})
	good := tok.String()
	for name, s := range map[string]string{
		"empty":     "",
		"scheme":    strings.Replace(good, TokenScheme, "burrow-relay", 1),
		"no key":    strings.Replace(good, b64(priv.Seed())+"@", "", 1),
		"short key": strings.Replace(good, b64(priv.Seed()), "abc", 1),
		"role":      strings.Replace(good, "role=relay", "role=boss", 1),
		"sid":       strings.Replace(good, "sid=", "sid=zz", 1),
		"no port":   strings.Replace(good, ":8443", "", 1),
		"huge":      good + strings.Repeat("a", 3000),
	} {
		if _, err := ParseToken(s); !errors.Is(err, ErrToken) {
			t.Errorf("%s: ParseToken = %v, want ErrToken", name, err)
		}
	}
}

func FuzzParseToken(f *testing.F) {
	c, _ := NewConfig(DBSQLite, ":443", "203.0.113.1", "cover.example:443", []string{"cover.example"})
	priv, sid := newIdentity()
	tok, _ := NewToken(c, &Node{Name: "n", Role: RoleExit, PrivateKey: priv, ShortID: sid})
	f.Add(tok.String())
	f.Add("burrow-node://x@h:1?role=exit")
	f.Fuzz(func(t *testing.T, s string) {
		tok, err := ParseToken(s)
		if err != nil {
			return
		}
		again, err := ParseToken(tok.String())
		if err != nil || !again.Key.Equal(tok.Key) || again.Addr != tok.Addr || again.ShortID != tok.ShortID {
			t.Fatalf("token %q does not survive String and ParseToken: %v", s, err)
		}
	})
}

func TestConfigValidate(t *testing.T) {
	for name, mod := range map[string]func(*Config){
		"db":          func(c *Config) { c.DB = "mysql://x" },
		"listen":      func(c *Config) { c.Listen = "443" },
		"public addr": func(c *Config) { c.PublicAddr = "" },
		"cover":       func(c *Config) { c.Cover = "cover.example" },
		"sni":         func(c *Config) { c.ServerNames = nil },
		"key pair":    func(c *Config) { c.PublicKey = testConfig(t).PublicKey },
		"identity":    func(c *Config) { c.IdentityKey = "x" },
	} {
		c := testConfig(t)
		mod(c)
		if err := c.Validate(); err == nil {
			t.Errorf("%s: Validate() = nil, want an error", name)
		}
	}
	dir := t.TempDir()
	c := testConfig(t)
	if err := WriteConfig(dir, c); err != nil {
		t.Fatal(err)
	}
	got, err := LoadConfig(dir)
	if err != nil || !reflect.DeepEqual(got, c) {
		t.Fatalf("LoadConfig(WriteConfig(c)) = %+v, %v; want %+v", got, err, c)
	}
	if fi, err := os.Stat(filepath.Join(dir, ConfigFile)); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("control.json: %v, mode %v; want 0600 (it holds private keys)", err, fi.Mode().Perm())
	}
	if _, err := LoadConfig(t.TempDir()); !errors.Is(err, fs.ErrNotExist) || !strings.Contains(err.Error(), "burrow control init") {
		t.Errorf("LoadConfig of an empty dir = %v, want fs.ErrNotExist and advice to run control init", err)
	}
}

func TestUserLinks(t *testing.T) {
	u := &access.User{Name: "alice", UUID: access.NewUUID()}
	ep := Endpoint{Addr: "203.0.113.1:443", SNI: "cover.example", PublicKey: b64(bytes.Repeat([]byte{7}, 32)), ShortID: "01020304", Fingerprint: "firefox"}
	ex := &Node{ID: 1, Name: "exit-1", Role: RoleExit, Endpoint: ep}
	ex2 := &Node{ID: 2, Name: "exit-2", Role: RoleExit} // not registered yet
	rl := &Node{ID: 3, Name: "relay-1", Role: RoleRelay, Endpoint: Endpoint{Addr: "198.51.100.7:8443", SNI: "local.example"}}
	gone := &Node{ID: 4, Name: "relay-2", Role: RoleRelay, Revoked: true, Endpoint: Endpoint{Addr: "198.51.100.8:443"}}
	nodes := []*Node{ex, ex2, rl, gone}
	paths := []RelayPath{{Relay: 3, Exit: 1}, {Relay: 4, Exit: 1}, {Relay: 3, Exit: 2}}
	ls, err := UserLinks(u, nodes, paths, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(ls) != 2 || ls[0].Label() != "exit-1" || ls[1].Label() != "relay-1 > exit-1" {
		t.Fatalf("UserLinks = %d links %v, want exit-1 and relay-1 > exit-1", len(ls), ls)
	}
	direct, via := ls[0].Link, ls[1].Link
	if direct.Host != "203.0.113.1" || direct.Port != 443 || direct.SNI != "cover.example" || direct.Fingerprint != "firefox" {
		t.Fatalf("direct link = %+v", direct)
	}
	if via.Host != "198.51.100.7" || via.Port != 8443 || via.SNI != "local.example" || string(via.PublicKey) != string(direct.PublicKey) {
		t.Fatalf("relay link = %+v, want the relay's address and SNI with the exit's key", via)
	}
	if _, err := links.ParseVLESS(via.String()); err != nil {
		t.Fatalf("relay link does not parse: %v", err)
	}
	only, err := UserLinks(u, nodes, paths, rl)
	if err != nil || len(only) != 1 || only[0].Relay != rl {
		t.Fatalf("UserLinks(only relay-1) = %v, %v; want the one path through it", only, err)
	}
}
