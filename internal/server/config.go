package server

import (
	"bytes"
	"crypto/ecdh"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/burrow-vpn/burrow/internal/atomicfile"
	"github.com/burrow-vpn/burrow/internal/links"
)

// ConfigVersion is the version of the config file format this build writes
// and reads. Older versions are migrated on load; newer ones are refused.
const ConfigVersion = 1

// ConfigFile and StoreFile are the names of the files inside the data dir.
const (
	ConfigFile = "config.json"
	StoreFile  = "users.db"
	AdminSock  = "admin.sock"
)

// Config is the server's configuration, stored as JSON in DIR/config.json
// (mode 0600: it holds the private key). Field comments are the user
// documentation; Defaults fills zero values and Validate checks the result.
type Config struct {
	// Version of this file's format. Must be 1.
	Version int `json:"version"`
	// Listen is the TCP address to accept clients and probes on. Default ":443".
	Listen string `json:"listen"`
	// Cover is the host:port of the real HTTPS site that anyone without a key
	// is spliced to. It must speak TLS 1.3 with X25519.
	Cover string `json:"cover"`
	// ServerNames are the SNIs clients put in their ClientHello; they must be
	// names the cover site answers for.
	ServerNames []string `json:"server_names"`
	// PublicAddr is the host or IP that invite links point at.
	PublicAddr string `json:"public_addr"`
	// PrivateKey is the server's X25519 private key, base64url without padding.
	// Never share it; links carry the public key.
	PrivateKey string `json:"private_key"`
	// PublicKey is the matching public key (the link's pbk).
	PublicKey string `json:"public_key"`
	// ShortIDs are hex strings of 0..16 characters; a client must present one.
	ShortIDs []string `json:"short_ids"`
	// MaxTimeDiff bounds the clock difference accepted in a client's
	// handshake, and the replay cache's window. Default "90s".
	MaxTimeDiff Duration `json:"max_time_diff,omitempty"`
	// AllowPrivateEgress lets clients reach loopback, private and reserved
	// addresses through the server. Off by default: only for labs and tests.
	AllowPrivateEgress bool `json:"allow_private_egress,omitempty"`
	// Fingerprint is the fp= put into invite links: chrome, firefox, safari, ios, android,
	// edge, 360, qq, random, or another name Xray-core's links use (links.Fingerprints).
	// Default "chrome".
	Fingerprint string `json:"fingerprint,omitempty"`
	// Join, on an exit of a fleet, is the join token the control plane gave
	// it (`burrow control node-token`; `server init --join`): the server's
	// users come from the control plane then, kept in users.db as a replica,
	// and its traffic is counted there. It holds the node's identity key.
	Join string `json:"join,omitempty"`
}

// Duration is a time.Duration that reads and writes as a Go duration string.
type Duration time.Duration

func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(time.Duration(d).String()) }

func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("duration must be a string like \"90s\": %w", err)
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return err
	}
	*d = Duration(v)
	return nil
}

// Defaults fills unset fields with their documented defaults.
func (c *Config) Defaults() {
	if c.Version == 0 {
		c.Version = ConfigVersion
	}
	if c.Listen == "" {
		c.Listen = ":443"
	}
	if c.MaxTimeDiff == 0 {
		c.MaxTimeDiff = Duration(90 * time.Second)
	}
	if c.Fingerprint == "" {
		c.Fingerprint = "chrome"
	}
}

// Validate reports the first thing wrong with c, in words an operator can act on.
func (c *Config) Validate() error {
	if c.Version != ConfigVersion {
		return fmt.Errorf("config version %d is not supported by this burrow (it reads version %d); upgrade burrow", c.Version, ConfigVersion)
	}
	if _, port, err := net.SplitHostPort(c.Listen); err != nil {
		return fmt.Errorf("listen %q: want HOST:PORT, e.g. :443", c.Listen)
	} else if p, err := strconv.Atoi(port); err != nil || p < 1 || p > 65535 {
		return fmt.Errorf("listen %q: port must be 1-65535 (links carry it, so it cannot be chosen at random)", c.Listen)
	}
	if err := validHostPort(c.Cover); err != nil {
		return fmt.Errorf("cover %q: %v; want the HOST:PORT of a real HTTPS site, e.g. www.example.com:443", c.Cover, err)
	}
	if len(c.ServerNames) == 0 {
		return errors.New("server_names: at least one SNI is needed, e.g. --sni www.example.com")
	}
	for _, n := range c.ServerNames {
		if n == "" || strings.ContainsAny(n, " /:\t\r\n") || len(n) > 253 {
			return fmt.Errorf("server name %q is not a valid DNS name", n)
		}
	}
	if c.PublicAddr == "" {
		return errors.New("public_addr is empty; set it to the address clients use to reach this server")
	}
	priv, err := DecodeKey(c.PrivateKey)
	if err != nil {
		return fmt.Errorf("private_key: %w", err)
	}
	pub, err := DecodeKey(c.PublicKey)
	if err != nil {
		return fmt.Errorf("public_key: %w", err)
	}
	if err := matchKeys(priv, pub); err != nil {
		return err
	}
	if len(c.ShortIDs) == 0 {
		return errors.New("short_ids: at least one short id is needed")
	}
	for _, s := range c.ShortIDs {
		if _, err := DecodeShortID(s); err != nil {
			return fmt.Errorf("short id %q: %w", s, err)
		}
	}
	if c.MaxTimeDiff < 0 {
		return errors.New("max_time_diff must not be negative")
	}
	if _, err := links.FingerprintBrowser(c.Fingerprint); err != nil {
		return fmt.Errorf("fingerprint: %w", err)
	}
	return nil
}

func validHostPort(s string) error {
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		return errors.New("not HOST:PORT")
	}
	if host == "" {
		return errors.New("empty host")
	}
	if p, err := strconv.Atoi(port); err != nil || p < 1 || p > 65535 {
		return errors.New("port must be 1-65535")
	}
	return nil
}

// matchKeys checks that pub is the public key of priv. A mismatch would go
// unnoticed until every client is refused: links carry the public key, the
// server authenticates with the private one, and an unauthenticated client is
// handed to the cover site like a prober.
func matchKeys(priv, pub []byte) error {
	k, err := ecdh.X25519().NewPrivateKey(priv)
	if err != nil {
		return fmt.Errorf("private_key: %w", err)
	}
	want := k.PublicKey().Bytes()
	if !bytes.Equal(pub, want) {
		return fmt.Errorf("public_key %s does not belong to private_key (whose public key is %s): "+
			"links would carry the wrong key and clients would only ever reach the cover site; "+
			"set public_key to %s", EncodeKey(pub), EncodeKey(want), EncodeKey(want))
	}
	return nil
}

// DecodeKey decodes a 32-byte X25519 key in base64url (padding optional).
func DecodeKey(s string) ([]byte, error) {
	b, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(s, "="))
	if err != nil || len(b) != 32 {
		return nil, errors.New("want 43 characters of base64url encoding a 32-byte X25519 key")
	}
	return b, nil
}

// EncodeKey encodes a key the way Xray-core prints it (base64url, no padding).
func EncodeKey(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

// DecodeShortID decodes a REALITY short id: 0..16 hex characters, even length.
func DecodeShortID(s string) ([]byte, error) {
	if len(s) > 16 || len(s)%2 != 0 {
		return nil, errors.New("want an even number (0-16) of hex characters")
	}
	b, err := hex.DecodeString(s)
	if err != nil {
		return nil, errors.New("want hex characters")
	}
	return b, nil
}

// LoadConfig reads and validates DIR/config.json. Unknown fields are errors.
func LoadConfig(dir string) (*Config, error) {
	return atomicfile.LoadJSON(filepath.Join(dir, ConfigFile),
		fmt.Sprintf("run `burrow server init --data %s` first", dir),
		func(c *Config) error { c.Defaults(); return c.Validate() })
}

// WriteConfig writes c to DIR/config.json atomically (temp file, fsync,
// rename) with mode 0600, so a crash or a full disk never leaves a torn file.
func WriteConfig(dir string, c *Config) error {
	return atomicfile.WriteJSON(filepath.Join(dir, ConfigFile), c, 0o600)
}

// DefaultDataDir is the platform-conventional data dir: /var/lib/burrow for
// root, otherwise the user's config dir (~/.config/burrow on Linux).
func DefaultDataDir() string {
	if os.Geteuid() == 0 {
		return "/var/lib/burrow"
	}
	if d, err := os.UserConfigDir(); err == nil {
		return filepath.Join(d, "burrow")
	}
	return "burrow-data"
}
