package control

import (
	"context"
	"crypto/ecdh"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/burrow-vpn/burrow/internal/atomicfile"
)

// ConfigVersion is the version of the control config format this build
// writes and reads.
const ConfigVersion = 1

// Files inside a control directory.
const (
	ConfigFile = "control.json" // its presence marks a control directory
	StoreFile  = "control.db"   // the SQLite store, when DB is "sqlite"
	AdminSock  = "admin.sock"
)

// DBSQLite is Config.DB's value for the embedded store.
const DBSQLite = "sqlite"

// Config is the control plane's configuration, stored as JSON in
// DIR/control.json (mode 0600: it holds private keys and perhaps a
// database password). Field comments are the user documentation.
type Config struct {
	// Version of this file's format. Must be 1.
	Version int `json:"version"`
	// DB is where the store lives: "sqlite" (DIR/control.db, for one
	// machine) or a PostgreSQL URL, postgres://USER:PASS@HOST/DB?....
	DB string `json:"db"`
	// Listen is the TCP address the camouflaged control endpoint accepts
	// nodes (and probers) on. Default ":443".
	Listen string `json:"listen"`
	// PublicAddr is the host or IP nodes dial; join tokens carry it with
	// Listen's port.
	PublicAddr string `json:"public_addr"`
	// Cover is the HOST:PORT of the real HTTPS site probers of the control
	// endpoint are spliced to; it must speak TLS 1.3 with X25519.
	Cover string `json:"cover"`
	// ServerNames are the SNIs nodes send; names the cover answers for.
	ServerNames []string `json:"server_names"`
	// PrivateKey and PublicKey are the endpoint's REALITY X25519 key pair,
	// base64url without padding. Tokens carry the public key.
	PrivateKey string `json:"private_key"`
	PublicKey  string `json:"public_key"`
	// IdentityKey is the seed of the control plane's Ed25519 identity,
	// base64url without padding; tokens carry its public key, so a node
	// can check what the control plane signs.
	IdentityKey string `json:"identity_key"`
	// Fingerprint is the browser whose ClientHello nodes send. Default
	// "chrome".
	Fingerprint string `json:"fingerprint,omitempty"`
}

// NewConfig returns a config with fresh keys for the given settings,
// defaults filled and validated.
func NewConfig(db, listen, publicAddr, cover string, names []string) (*Config, error) {
	x, err := ecdh.X25519().GenerateKey(rand.Reader)
	if err != nil {
		return nil, err
	}
	_, id, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, err
	}
	c := &Config{DB: db, Listen: listen, PublicAddr: publicAddr, Cover: cover, ServerNames: names,
		PrivateKey: b64(x.Bytes()), PublicKey: b64(x.PublicKey().Bytes()), IdentityKey: b64(id.Seed())}
	c.Defaults()
	if err := c.Validate(); err != nil {
		return nil, err
	}
	return c, nil
}

func b64(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

// Defaults fills unset fields with their documented defaults.
func (c *Config) Defaults() {
	if c.Version == 0 {
		c.Version = ConfigVersion
	}
	if c.DB == "" {
		c.DB = DBSQLite
	}
	if c.Listen == "" {
		c.Listen = ":443"
	}
	if c.Fingerprint == "" {
		c.Fingerprint = "chrome"
	}
}

// Validate reports the first thing wrong with c, in words an operator can
// act on.
func (c *Config) Validate() error {
	if c.Version != ConfigVersion {
		return fmt.Errorf("config version %d is not supported by this burrow (it reads version %d); upgrade burrow", c.Version, ConfigVersion)
	}
	if c.DB != DBSQLite && !strings.HasPrefix(c.DB, "postgres://") && !strings.HasPrefix(c.DB, "postgresql://") {
		return errors.New(`db: want "sqlite" or a postgres:// URL`)
	}
	if _, port, err := net.SplitHostPort(c.Listen); err != nil {
		return fmt.Errorf("listen %q: want HOST:PORT, e.g. :443", c.Listen)
	} else if p, err := strconv.Atoi(port); err != nil || p < 1 || p > 65535 {
		return fmt.Errorf("listen %q: port must be 1-65535 (tokens carry it)", c.Listen)
	}
	if c.PublicAddr == "" || strings.ContainsAny(c.PublicAddr, " /\t\r\n") {
		return errors.New("public_addr: set it to the host or IP nodes reach the control plane at")
	}
	if host, port, err := net.SplitHostPort(c.Cover); err != nil || host == "" || port == "" {
		return fmt.Errorf("cover %q: want the HOST:PORT of a real HTTPS site, e.g. www.example.com:443", c.Cover)
	}
	if len(c.ServerNames) == 0 {
		return errors.New("server_names: at least one SNI is needed, e.g. --sni www.example.com")
	}
	for _, n := range c.ServerNames {
		if n == "" || strings.ContainsAny(n, " /:\t\r\n") || len(n) > 253 {
			return fmt.Errorf("server name %q is not a valid DNS name", n)
		}
	}
	priv, err := decode32(c.PrivateKey)
	if err != nil {
		return fmt.Errorf("private_key: %w", err)
	}
	k, err := ecdh.X25519().NewPrivateKey(priv)
	if err != nil {
		return fmt.Errorf("private_key: %w", err)
	}
	if b64(k.PublicKey().Bytes()) != c.PublicKey {
		return fmt.Errorf("public_key does not belong to private_key; set it to %s", b64(k.PublicKey().Bytes()))
	}
	if _, err := decode32(c.IdentityKey); err != nil {
		return fmt.Errorf("identity_key: %w", err)
	}
	if c.Fingerprint == "" || strings.ContainsAny(c.Fingerprint, " &#=?") {
		return fmt.Errorf("fingerprint %q is not a browser name", c.Fingerprint)
	}
	return nil
}

func decode32(s string) ([]byte, error) {
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil || len(b) != 32 {
		return nil, errors.New("want 43 characters of base64url encoding 32 bytes")
	}
	return b, nil
}

// Identity returns the control plane's Ed25519 identity key.
func (c *Config) Identity() ed25519.PrivateKey {
	seed, _ := decode32(c.IdentityKey) // checked by Validate
	return ed25519.NewKeyFromSeed(seed)
}

// IsControlDir reports whether dir holds a control plane's config.
func IsControlDir(dir string) bool {
	_, err := os.Stat(filepath.Join(dir, ConfigFile))
	return err == nil
}

// LoadConfig reads and validates DIR/control.json. Unknown fields are
// errors.
func LoadConfig(dir string) (*Config, error) {
	return atomicfile.LoadJSON(filepath.Join(dir, ConfigFile),
		fmt.Sprintf("create the control plane with `burrow control init --data %s ...`", dir),
		func(c *Config) error { c.Defaults(); return c.Validate() })
}

// WriteConfig writes c to DIR/control.json (mode 0600) atomically.
func WriteConfig(dir string, c *Config) error {
	return atomicfile.WriteJSON(filepath.Join(dir, ConfigFile), c, 0o600)
}

// Open opens the store the config in dir names: the SQLite file in dir,
// or the PostgreSQL database.
func Open(ctx context.Context, dir string, c *Config) (*SQLStore, error) {
	if c.DB == DBSQLite {
		return OpenSQLite(ctx, filepath.Join(dir, StoreFile))
	}
	return OpenPostgres(ctx, c.DB)
}
