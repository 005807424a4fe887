package subscribe

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/burrow-vpn/burrow/internal/access"
	"github.com/burrow-vpn/burrow/internal/links"
)

// MaxBody bounds the subscription bodies the parsers read.
const MaxBody = 1 << 20

// EncodeBase64 returns the links, one per line, in standard base64.
func EncodeBase64(ls []*links.VLESS) []byte {
	var b strings.Builder
	for _, l := range ls {
		b.WriteString(l.String())
		b.WriteByte('\n')
	}
	return []byte(base64.StdEncoding.EncodeToString([]byte(b.String())))
}

// ParseBase64 reads a base64 subscription (standard or URL alphabet, with
// or without padding and line breaks) and returns its vless:// links. Lines
// with other schemes are skipped; a malformed vless:// line is an error.
func ParseBase64(body []byte) ([]*links.VLESS, error) {
	if len(body) > MaxBody {
		return nil, fmt.Errorf("subscribe: base64: %d bytes is too long", len(body))
	}
	compact := strings.Map(func(r rune) rune {
		if r == '\n' || r == '\r' || r == ' ' || r == '\t' {
			return -1
		}
		return r
	}, string(body))
	compact = strings.TrimRight(compact, "=")
	var raw []byte
	var err error
	if strings.ContainsAny(compact, "-_") {
		raw, err = base64.RawURLEncoding.DecodeString(compact)
	} else {
		raw, err = base64.RawStdEncoding.DecodeString(compact)
	}
	if err != nil {
		return nil, fmt.Errorf("subscribe: base64: %w", err)
	}
	var out []*links.VLESS
	for i, line := range strings.Split(string(raw), "\n") {
		line = strings.TrimSpace(line)
		if !strings.HasPrefix(strings.ToLower(line), "vless://") {
			continue
		}
		l, err := links.ParseVLESS(line)
		if err != nil {
			return nil, fmt.Errorf("subscribe: base64: line %d: %w", i+1, err)
		}
		out = append(out, l)
	}
	if len(out) == 0 {
		return nil, errors.New("subscribe: base64: no vless:// links")
	}
	return out, nil
}

// sing-box configuration, the parts we write and read.
type singBox struct {
	Log       *sbLog       `json:"log,omitempty"`
	Inbounds  []sbInbound  `json:"inbounds,omitempty"`
	Outbounds []sbOutbound `json:"outbounds"`
	Route     *sbRoute     `json:"route,omitempty"`
}

type sbLog struct {
	Level string `json:"level"`
}

type sbInbound struct {
	Type        string   `json:"type"`
	Tag         string   `json:"tag"`
	Address     []string `json:"address,omitempty"`
	AutoRoute   bool     `json:"auto_route,omitempty"`
	StrictRoute bool     `json:"strict_route,omitempty"`
}

type sbOutbound struct {
	Type       string   `json:"type"`
	Tag        string   `json:"tag"`
	Server     string   `json:"server,omitempty"`
	ServerPort uint16   `json:"server_port,omitempty"`
	UUID       string   `json:"uuid,omitempty"`
	Flow       string   `json:"flow,omitempty"`
	TLS        *sbTLS   `json:"tls,omitempty"`
	Outbounds  []string `json:"outbounds,omitempty"`
	Default    string   `json:"default,omitempty"`
}

type sbTLS struct {
	Enabled    bool       `json:"enabled"`
	ServerName string     `json:"server_name"`
	UTLS       *sbUTLS    `json:"utls,omitempty"`
	Reality    *sbReality `json:"reality,omitempty"`
}

type sbUTLS struct {
	Enabled     bool   `json:"enabled"`
	Fingerprint string `json:"fingerprint"`
}

type sbReality struct {
	Enabled   bool   `json:"enabled"`
	PublicKey string `json:"public_key"`
	ShortID   string `json:"short_id"`
}

type sbRoute struct {
	Final               string `json:"final"`
	AutoDetectInterface bool   `json:"auto_detect_interface"`
}

// tags returns a unique tag per link (its name, numbered when repeated).
func tags(ls []*links.VLESS) []string {
	seen := map[string]int{}
	out := make([]string, len(ls))
	for i, l := range ls {
		t := l.Name
		if t == "" {
			t = "burrow"
		}
		seen[t]++
		if n := seen[t]; n > 1 {
			t = fmt.Sprintf("%s %d", t, n)
		}
		out[i] = t
	}
	return out
}

// SingBoxCarries reports whether the sing-box format can carry l. Upstream
// sing-box has no XHTTP transport (its V2Ray transports are http, ws, quic,
// grpc and httpupgrade; XHTTP exists only in forks such as
// sing-box-extended), so only REALITY over TCP links go into a sing-box
// configuration.
func SingBoxCarries(l *links.VLESS) bool {
	return l.Type == "" || l.Type == links.TypeTCP || l.Type == links.TypeRaw
}

// EncodeSingBox returns a complete sing-box configuration using the links
// sing-box can carry (see SingBoxCarries); the others are left out, and it
// is an error when none is left.
func EncodeSingBox(all []*links.VLESS) ([]byte, error) {
	var ls []*links.VLESS
	for _, l := range all {
		if SingBoxCarries(l) {
			ls = append(ls, l)
		}
	}
	if len(ls) == 0 {
		return nil, errors.New("subscribe: sing-box: no link over tcp (sing-box has no xhttp transport)")
	}
	tg := tags(ls)
	cfg := singBox{
		Log: &sbLog{Level: "warn"},
		Inbounds: []sbInbound{{Type: "tun", Tag: "tun-in", Address: []string{"172.19.0.1/30", "fdfe:dcba:9876::1/126"},
			AutoRoute: true, StrictRoute: true}},
		Route: &sbRoute{Final: "proxy", AutoDetectInterface: true},
	}
	cfg.Outbounds = append(cfg.Outbounds, sbOutbound{Type: "selector", Tag: "proxy", Outbounds: tg, Default: tg[0]})
	for i, l := range ls {
		fp := l.Fingerprint
		if fp == "" {
			fp = "chrome"
		}
		cfg.Outbounds = append(cfg.Outbounds, sbOutbound{
			Type: "vless", Tag: tg[i], Server: l.Host, ServerPort: l.Port, UUID: access.FormatUUID(l.UUID), Flow: l.Flow,
			TLS: &sbTLS{Enabled: true, ServerName: l.SNI, UTLS: &sbUTLS{Enabled: true, Fingerprint: fp},
				Reality: &sbReality{Enabled: true, PublicKey: base64.RawURLEncoding.EncodeToString(l.PublicKey),
					ShortID: hex.EncodeToString(l.ShortID)}},
		})
	}
	cfg.Outbounds = append(cfg.Outbounds, sbOutbound{Type: "direct", Tag: "direct"})
	return json.MarshalIndent(cfg, "", "  ")
}

// ParseSingBox reads a sing-box configuration and returns its VLESS REALITY
// outbounds as links. Other outbounds are skipped; fields we do not use are
// ignored (configs from elsewhere carry many).
func ParseSingBox(body []byte) ([]*links.VLESS, error) {
	if len(body) > MaxBody {
		return nil, fmt.Errorf("subscribe: sing-box: %d bytes is too long", len(body))
	}
	var cfg singBox
	if err := json.NewDecoder(bytes.NewReader(body)).Decode(&cfg); err != nil {
		return nil, fmt.Errorf("subscribe: sing-box: %w", err)
	}
	var out []*links.VLESS
	for i, o := range cfg.Outbounds {
		if o.Type != "vless" {
			continue
		}
		if o.TLS == nil || !o.TLS.Enabled || o.TLS.Reality == nil || !o.TLS.Reality.Enabled {
			return nil, fmt.Errorf("subscribe: sing-box: outbound %d (%.40q): not TLS with REALITY", i, o.Tag)
		}
		fp := ""
		if o.TLS.UTLS != nil && o.TLS.UTLS.Enabled {
			fp = o.TLS.UTLS.Fingerprint
		}
		f := fields{name: o.Tag, uuid: o.UUID, server: o.Server, port: o.ServerPort, sni: o.TLS.ServerName, fp: fp,
			pbk: o.TLS.Reality.PublicKey, sid: o.TLS.Reality.ShortID, flow: o.Flow}
		l, err := f.link()
		if err != nil {
			return nil, fmt.Errorf("subscribe: sing-box: outbound %d (%.40q): %w", i, o.Tag, err)
		}
		out = append(out, l)
	}
	if len(out) == 0 {
		return nil, errors.New("subscribe: sing-box: no vless outbounds")
	}
	return out, nil
}

// Clash/Mihomo configuration, the parts we write and read.
type clash struct {
	MixedPort   int          `yaml:"mixed-port,omitempty"`
	Mode        string       `yaml:"mode,omitempty"`
	Proxies     []clashProxy `yaml:"proxies"`
	ProxyGroups []clashGroup `yaml:"proxy-groups,omitempty"`
	Rules       []string     `yaml:"rules,omitempty"`
}

type clashProxy struct {
	Name              string        `yaml:"name"`
	Type              string        `yaml:"type"`
	Server            string        `yaml:"server"`
	Port              uint16        `yaml:"port"`
	UUID              string        `yaml:"uuid"`
	Network           string        `yaml:"network"`
	UDP               bool          `yaml:"udp"`
	TLS               bool          `yaml:"tls"`
	Flow              string        `yaml:"flow,omitempty"`
	ServerName        string        `yaml:"servername"`
	ClientFingerprint string        `yaml:"client-fingerprint,omitempty"`
	RealityOpts       *clashReality `yaml:"reality-opts,omitempty"`
	XHTTPOpts         *clashXHTTP   `yaml:"xhttp-opts,omitempty"`
}

// clashXHTTP is Mihomo's xhttp-opts (Mihomo v1.19.22 and later; older
// versions and other Clash cores reject network: xhttp). Xray's extra= JSON
// and Burrow's budget= have no Mihomo field and are not carried.
type clashXHTTP struct {
	Path string `yaml:"path,omitempty"`
	Host string `yaml:"host,omitempty"`
	Mode string `yaml:"mode,omitempty"` // packet-up, stream-up or stream-one; empty: Mihomo's auto
}

type clashReality struct {
	PublicKey string `yaml:"public-key"`
	ShortID   string `yaml:"short-id"`
}

type clashGroup struct {
	Name     string   `yaml:"name"`
	Type     string   `yaml:"type"`
	Proxies  []string `yaml:"proxies"`
	URL      string   `yaml:"url,omitempty"`      // health check of a fallback group
	Interval int      `yaml:"interval,omitempty"` // seconds between health checks
}

// Names of the proxy groups EncodeClash writes.
const (
	ClashSelectGroup   = "PROXY" // what the MATCH rule uses; the user may pick in it
	ClashFallbackGroup = "AUTO"  // the first proxy that answers, in link order
)

// EncodeClash returns a Clash/Mihomo configuration using the links: one
// proxy per link (an xhttp link as network: xhttp, which needs Mihomo
// v1.19.22 or later), and with more than one link a fallback group over
// them in link order (the first is used while its health check answers),
// which is the select group's default choice.
func EncodeClash(ls []*links.VLESS) ([]byte, error) {
	tg := tags(ls)
	cfg := clash{MixedPort: 7890, Mode: "rule", Rules: []string{"MATCH," + ClashSelectGroup},
		ProxyGroups: []clashGroup{{Name: ClashSelectGroup, Type: "select", Proxies: tg}}}
	if len(ls) > 1 {
		cfg.ProxyGroups[0].Proxies = append([]string{ClashFallbackGroup}, tg...)
		cfg.ProxyGroups = append(cfg.ProxyGroups, clashGroup{Name: ClashFallbackGroup, Type: "fallback", Proxies: tg,
			URL: "https://www.gstatic.com/generate_204", Interval: 300})
	}
	for i, l := range ls {
		network := l.Type
		if network == "" || network == links.TypeRaw {
			network = links.TypeTCP
		}
		p := clashProxy{
			Name: tg[i], Type: "vless", Server: l.Host, Port: l.Port, UUID: access.FormatUUID(l.UUID),
			Network: network, UDP: true, TLS: true, Flow: l.Flow, ServerName: l.SNI, ClientFingerprint: l.Fingerprint,
			RealityOpts: &clashReality{PublicKey: base64.RawURLEncoding.EncodeToString(l.PublicKey), ShortID: hex.EncodeToString(l.ShortID)},
		}
		if x := l.XHTTP; network == links.TypeXHTTP && x != nil {
			mode := x.Mode
			if mode == links.ModeAuto {
				mode = ""
			}
			p.XHTTPOpts = &clashXHTTP{Path: x.Path, Host: x.Host, Mode: mode}
		}
		cfg.Proxies = append(cfg.Proxies, p)
	}
	var b bytes.Buffer
	enc := yaml.NewEncoder(&b)
	enc.SetIndent(2)
	if err := enc.Encode(cfg); err != nil {
		return nil, fmt.Errorf("subscribe: clash: %w", err)
	}
	enc.Close()
	return b.Bytes(), nil
}

// ParseClash reads a Clash/Mihomo configuration and returns its VLESS
// REALITY proxies over tcp or xhttp as links. Other proxies are skipped.
func ParseClash(body []byte) ([]*links.VLESS, error) {
	if len(body) > MaxBody {
		return nil, fmt.Errorf("subscribe: clash: %d bytes is too long", len(body))
	}
	var cfg clash
	if err := yaml.Unmarshal(body, &cfg); err != nil {
		return nil, fmt.Errorf("subscribe: clash: %w", err)
	}
	var out []*links.VLESS
	for i, p := range cfg.Proxies {
		if p.Type != "vless" {
			continue
		}
		if !p.TLS || p.RealityOpts == nil {
			return nil, fmt.Errorf("subscribe: clash: proxy %d (%.40q): not TLS with reality-opts", i, p.Name)
		}
		f := fields{name: p.Name, uuid: p.UUID, server: p.Server, port: p.Port, sni: p.ServerName, fp: p.ClientFingerprint,
			pbk: p.RealityOpts.PublicKey, sid: p.RealityOpts.ShortID, flow: p.Flow}
		switch p.Network {
		case "", links.TypeTCP:
		case links.TypeXHTTP:
			f.xhttp = &links.XHTTP{}
			if x := p.XHTTPOpts; x != nil {
				f.xhttp = &links.XHTTP{Path: x.Path, Host: x.Host, Mode: x.Mode}
			}
		default:
			return nil, fmt.Errorf("subscribe: clash: proxy %d (%.40q): network %.20q is neither tcp nor xhttp", i, p.Name, p.Network)
		}
		l, err := f.link()
		if err != nil {
			return nil, fmt.Errorf("subscribe: clash: proxy %d (%.40q): %w", i, p.Name, err)
		}
		out = append(out, l)
	}
	if len(out) == 0 {
		return nil, errors.New("subscribe: clash: no vless proxies")
	}
	return out, nil
}

// fields are a VLESS proxy's settings as a sing-box or Clash config holds them.
type fields struct {
	name, uuid, server string
	port               uint16
	sni, fp, pbk, sid  string
	flow               string
	xhttp              *links.XHTTP // nil: tcp
}

// link builds the link of f and validates it exactly as a vless:// link is
// validated, by parsing the link it makes.
func (f *fields) link() (*links.VLESS, error) {
	u, err := access.ParseUUID(f.uuid)
	if err != nil {
		return nil, err
	}
	key, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(f.pbk, "="))
	if err != nil || len(key) != 32 {
		return nil, errors.New("public key: want base64url of 32 bytes")
	}
	short, err := hex.DecodeString(f.sid)
	if err != nil || len(short) > 8 {
		return nil, errors.New("short id: want 0-16 hex characters")
	}
	l := &links.VLESS{UUID: u, Host: f.server, Port: f.port, SNI: f.sni, Fingerprint: f.fp, PublicKey: key, ShortID: short,
		Flow: f.flow, Type: links.TypeTCP, Name: f.name, Security: links.SecurityReality, Encryption: links.EncryptionNone}
	if f.xhttp != nil {
		l.Type, l.XHTTP = links.TypeXHTTP, f.xhttp
	}
	if len(short) == 0 {
		l.ShortID = nil
	}
	return links.ParseVLESS(l.String())
}
