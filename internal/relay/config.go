package relay

import (
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/burrow-vpn/burrow/internal/atomicfile"
	"github.com/burrow-vpn/burrow/internal/relaylink"
	"github.com/burrow-vpn/burrow/internal/transport/xhttp"
)

// ConfigVersion is the version of relay.json this build reads and writes.
const ConfigVersion = 1

// ConfigFile is the relay's config inside its data dir.
const ConfigFile = "relay.json"

// DefaultMaxConns is the default pool size per exit.
const DefaultMaxConns = 4

// Config is the relay's configuration, stored as JSON in DIR/relay.json
// (mode 0600: the exit tokens are the relay's credentials). Field comments
// are the user documentation; Defaults fills zero values and Validate
// checks the result. It holds nothing about users: the relay has no user
// keys, and needs none.
type Config struct {
	// Version of this file's format. Must be 1.
	Version int `json:"version"`
	// Listen is the TCP address clients connect to. Default ":443".
	Listen string `json:"listen"`
	// PublicAddr is the host or IP clients reach the relay at (put into
	// links by `burrow user show --via` on the exit).
	PublicAddr string `json:"public_addr"`
	// Exits are the relay tokens printed by `burrow server relay-token` on
	// each exit. All must name the same exit key: the exits of one relay
	// are copies of one server (same key and users), and any of them can
	// serve any link through the relay. The relay re-reads this list on
	// SIGHUP and when the file changes.
	Exits []string `json:"exits"`
	// Join is the relay's fleet join token (`burrow control node-token
	// NAME --role relay`, given to `relay init --join`). With it, Exits is
	// empty: the relay learns its exits, and its credential at them, from
	// the control plane (docs/fleet.md).
	Join string `json:"join,omitempty"`
	// Cover and SNI are the relay's own cover site (HOST:PORT) and its
	// server name. Probers of the relay see this site; links through the
	// relay carry SNI. Both empty: the exits' own cover and server name.
	Cover string `json:"cover,omitempty"`
	SNI   string `json:"sni,omitempty"`
	// Budget fixes the most bytes one pooled connection to an exit carries
	// towards the relay before it is rotated. 0 (the default) learns it: no
	// rotation until the leg freezes twice at about the same amount, then
	// rotation just below it (xhttp.Learned). Negative turns rotation off.
	Budget int64 `json:"budget,omitempty"`
	// MaxConns is the pool size per exit. Default DefaultMaxConns (4).
	MaxConns int `json:"max_conns,omitempty"`

	// fleet marks a running fleet relay's config (WithExits): its exits
	// came from the control plane, may be none, and may have different
	// keys.
	fleet bool
}

// WithExits returns a fleet relay's config (Join set) as it runs with the
// exit tokens the control plane gave it: Join cleared, Exits set.
func (c *Config) WithExits(tokens []string) *Config {
	e := *c
	e.Join, e.Exits, e.fleet = "", tokens, true
	return &e
}

// Defaults fills unset fields.
func (c *Config) Defaults() {
	if c.Version == 0 {
		c.Version = ConfigVersion
	}
	if c.Listen == "" {
		c.Listen = ":443"
	}
	if c.MaxConns == 0 {
		c.MaxConns = DefaultMaxConns
	}
}

// budget is the pool's fixed byte budget per connection: 0 learns it,
// negative is no rotation.
func (c *Config) budget() int64 { return c.Budget }

// Tokens parses Exits.
func (c *Config) Tokens() ([]*relaylink.Token, error) {
	var out []*relaylink.Token
	for i, s := range c.Exits {
		t, err := relaylink.ParseToken(s)
		if err != nil {
			return nil, fmt.Errorf("exit %d: %w", i+1, err)
		}
		if len(out) > 0 && t.PublicKey != out[0].PublicKey && !c.fleet {
			return nil, fmt.Errorf("exit %d (%s) has another key than exit 1 (%s): the exits of one relay must be copies of one server; run another relay for another server", i+1, t.Redacted(), out[0].Redacted())
		}
		out = append(out, t)
	}
	return out, nil
}

// Validate reports the first thing wrong with c.
func (c *Config) Validate() error {
	if c.Version != ConfigVersion {
		return fmt.Errorf("relay config version %d is not supported by this burrow (it reads version %d)", c.Version, ConfigVersion)
	}
	if _, port, err := net.SplitHostPort(c.Listen); err != nil {
		return fmt.Errorf("listen %q: want HOST:PORT, e.g. :443", c.Listen)
	} else if p, err := strconv.Atoi(port); err != nil || p < 1 || p > 65535 {
		return fmt.Errorf("listen %q: port must be 1-65535", c.Listen)
	}
	if c.PublicAddr == "" || strings.ContainsAny(c.PublicAddr, " /\t\r\n@?#") {
		return fmt.Errorf("public_addr %q: want the host or IP clients connect to", c.PublicAddr)
	}
	switch {
	case c.Join != "" && len(c.Exits) > 0:
		return errors.New("join and exits: a relay of a fleet learns its exits from the control plane; remove \"exits\"")
	case c.Join != "" && (len(c.Join) > 4096 || !strings.HasPrefix(c.Join, "burrow-node://")):
		return errors.New("join: not a fleet join token (burrow-node://...)")
	case len(c.Exits) == 0 && c.Join == "" && !c.fleet:
		return errors.New("no exits: add at least one token from `burrow server relay-token NAME` on an exit")
	}
	if _, err := c.Tokens(); err != nil {
		return err
	}
	if (c.Cover == "") != (c.SNI == "") {
		return errors.New("cover and sni go together: give both (the relay's own cover site) or neither (the exits' cover)")
	}
	if c.Cover != "" {
		if _, _, err := net.SplitHostPort(c.Cover); err != nil {
			return fmt.Errorf("cover %q: want HOST:PORT of a real HTTPS site", c.Cover)
		}
		if len(c.SNI) > 253 || strings.ContainsAny(c.SNI, " /:\t\r\n") {
			return fmt.Errorf("sni %q is not a server name", c.SNI)
		}
	}
	if c.MaxConns < 1 || c.MaxConns > 16 {
		return fmt.Errorf("max_conns %d: want 1-16 pooled connections per exit", c.MaxConns)
	}
	if b := c.Budget; b > 0 && b < xhttp.MinBudget {
		return fmt.Errorf("budget %d: want at least %d bytes, or a negative value to turn rotation off", c.Budget, xhttp.MinBudget)
	}
	return nil
}

// LoadConfig reads and checks DIR/relay.json. Unknown fields are errors.
func LoadConfig(dir string) (*Config, error) {
	return atomicfile.LoadJSON(filepath.Join(dir, ConfigFile),
		fmt.Sprintf("create the relay with `burrow relay init --data %s ...`", dir),
		func(c *Config) error { c.Defaults(); return c.Validate() })
}

// WriteConfig writes c to DIR/relay.json (mode 0600) atomically.
func WriteConfig(dir string, c *Config) error {
	return atomicfile.WriteJSON(filepath.Join(dir, ConfigFile), c, 0o600)
}
