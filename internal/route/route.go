// Package route decides, for each connection the client carries, whether it
// goes through the tunnel (proxy), around it (direct), or nowhere (block).
// It is pure: rules are parsed from an io.Reader and matched in memory; it
// opens no files and no sockets, and imports nothing else of Burrow's.
//
// # Rule files
//
// A rule file is UTF-8 text, one rule a line. Blank lines and everything from
// '#' to the end of a line are ignored. A rule is three fields separated by
// spaces or tabs:
//
//	KIND  VALUE  ACTION
//
//	domain         example.com      block    the name itself only
//	domain-suffix  ru               direct   ru and every name under it (a.ru, b.a.ru)
//	keyword        sberbank         direct   any name containing the word
//	cidr           77.88.0.0/18     direct   an IPv4 or IPv6 prefix; a bare address is /32 or /128
//	port           25               block    a destination port, or a range 6881-6889
//
// ACTION is proxy, direct or block. Two lines of their own kind:
//
//	default  direct          what happens when no rule matches (proxy if absent)
//	preset   ru-direct       the rules of a shipped preset, at this point
//
// Rules are tried in file order and the first that matches wins, so put
// exceptions first. Domain values are matched case-insensitively; names in a
// national script (рф) are converted to their ASCII form (xn--p1ai), and a
// leading "*." or "." on a domain-suffix is ignored. Domain rules match only
// when the name of the destination is known: SOCKS5 and HTTP requests carry
// it; in TUN mode the client learns it from the DNS answers it relayed (see
// NameMap).
//
// # Presets
//
// ru-direct     Russian national domains (.ru .рф .su), common Russian
// state, bank and marketplace domains, and a representative set of Russian
// networks go direct; everything else through the tunnel. Sites that refuse
// foreign addresses keep working, and domestic traffic does not load the server.
//
// ru-whitelist  for networks that only let whitelisted Russian services
// through (mobile "white lists" during shutdowns): the services on such
// lists go direct, everything else through the tunnel (whose server must
// itself be reachable under a name and address the network lets through).
package route

import (
	"bufio"
	"embed"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"sort"
	"strconv"
	"strings"

	"golang.org/x/net/idna"
)

// Action is what happens to a connection.
type Action uint8

const (
	Proxy  Action = iota // through the tunnel
	Direct               // around the tunnel, from this machine
	Block                // refused
)

func (a Action) String() string {
	switch a {
	case Proxy:
		return "proxy"
	case Direct:
		return "direct"
	case Block:
		return "block"
	}
	return "action(" + strconv.Itoa(int(a)) + ")"
}

// Kind is what a rule looks at.
type Kind uint8

const (
	Domain       Kind = iota + 1 // exact name
	DomainSuffix                 // name or a subdomain of it
	Keyword                      // substring of the name
	CIDR                         // address prefix
	Port                         // destination port range
)

var kindNames = map[string]Kind{
	"domain": Domain, "domain-suffix": DomainSuffix, "keyword": Keyword, "cidr": CIDR, "port": Port,
}

func (k Kind) String() string {
	for s, v := range kindNames {
		if v == k {
			return s
		}
	}
	return "kind(" + strconv.Itoa(int(k)) + ")"
}

// Rule is one parsed rule line.
type Rule struct {
	Kind   Kind
	Value  string       // Domain, DomainSuffix, Keyword: lower-case ASCII name
	Prefix netip.Prefix // CIDR
	PortLo uint16       // Port: inclusive range
	PortHi uint16
	Action Action
}

// Dest is a connection's destination as the router sees it. Host is the
// name ("" when only the address is known); IP is the address (zero when
// only the name is known).
type Dest struct {
	Host string
	IP   netip.Addr
	Port uint16
}

// Rules is an ordered rule list. The zero value sends everything through the
// tunnel. A Rules is read-only after Parse and safe for concurrent use.
type Rules struct {
	List    []Rule
	Default Action
}

// Match returns the action of the first rule matching d, or the default.
func (rs *Rules) Match(d Dest) Action {
	if rs == nil {
		return Proxy
	}
	host := normalizeName(d.Host)
	ip := d.IP.Unmap()
	for _, r := range rs.List {
		if r.matches(host, ip, d.Port) {
			return r.Action
		}
	}
	return rs.Default
}

func (r *Rule) matches(host string, ip netip.Addr, port uint16) bool {
	switch r.Kind {
	case Domain:
		return host != "" && host == r.Value
	case DomainSuffix:
		return host != "" && (host == r.Value || strings.HasSuffix(host, "."+r.Value))
	case Keyword:
		return host != "" && strings.Contains(host, r.Value)
	case CIDR:
		return ip.IsValid() && r.Prefix.Contains(ip)
	case Port:
		return port >= r.PortLo && port <= r.PortHi
	}
	return false
}

// HasDomainRules reports whether any rule needs the destination's name.
func (rs *Rules) HasDomainRules() bool {
	if rs == nil {
		return false
	}
	for _, r := range rs.List {
		if r.Kind == Domain || r.Kind == DomainSuffix || r.Kind == Keyword {
			return true
		}
	}
	return false
}

// maxLines bounds a rule file (and preset nesting) so hostile input cannot
// make the parser allocate without limit.
const (
	maxLines     = 1 << 20
	maxLineBytes = 4096
	maxDepth     = 4
)

// Parse reads a rule file. Errors name the line.
func Parse(r io.Reader) (*Rules, error) {
	rs := &Rules{Default: Proxy}
	if err := rs.parse(r, "", 0); err != nil {
		return nil, err
	}
	return rs, nil
}

func (rs *Rules) parse(r io.Reader, name string, depth int) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 256), maxLineBytes)
	where := "rules"
	if name != "" {
		where = "preset " + name
	}
	n := 0
	for sc.Scan() {
		n++
		if n > maxLines {
			return fmt.Errorf("%s: more than %d lines", where, maxLines)
		}
		line := sc.Text()
		if i := strings.IndexByte(line, '#'); i >= 0 {
			line = line[:i]
		}
		f := strings.Fields(line)
		if len(f) == 0 {
			continue
		}
		if err := rs.parseLine(f, depth); err != nil {
			return fmt.Errorf("%s: line %d: %w", where, n, err)
		}
	}
	if err := sc.Err(); err != nil {
		if errors.Is(err, bufio.ErrTooLong) {
			return fmt.Errorf("%s: line %d: longer than %d bytes", where, n+1, maxLineBytes)
		}
		return fmt.Errorf("%s: %w", where, err)
	}
	return nil
}

func (rs *Rules) parseLine(f []string, depth int) error {
	switch f[0] {
	case "default":
		if len(f) != 2 {
			return errors.New(`want "default ACTION"`)
		}
		a, err := parseAction(f[1])
		if err != nil {
			return err
		}
		rs.Default = a
		return nil
	case "preset":
		if len(f) != 2 {
			return errors.New(`want "preset NAME"`)
		}
		if depth >= maxDepth {
			return errors.New("presets nested too deeply")
		}
		b, err := presetBytes(f[1])
		if err != nil {
			return err
		}
		// A preset's own default does not override the including file's.
		sub := &Rules{}
		if err := sub.parse(strings.NewReader(string(b)), f[1], depth+1); err != nil {
			return err
		}
		rs.List = append(rs.List, sub.List...)
		return nil
	}
	kind, ok := kindNames[f[0]]
	if !ok {
		return fmt.Errorf("unknown rule kind %q (want domain, domain-suffix, keyword, cidr, port, default or preset)", f[0])
	}
	if len(f) != 3 {
		return fmt.Errorf("want %q VALUE ACTION", f[0])
	}
	a, err := parseAction(f[2])
	if err != nil {
		return err
	}
	r := Rule{Kind: kind, Action: a}
	switch kind {
	case Domain, DomainSuffix:
		v := f[1]
		if kind == DomainSuffix {
			v = strings.TrimPrefix(strings.TrimPrefix(v, "*"), ".")
		}
		if r.Value, err = parseName(v); err != nil {
			return err
		}
	case Keyword:
		r.Value = strings.ToLower(f[1])
	case CIDR:
		if r.Prefix, err = parsePrefix(f[1]); err != nil {
			return err
		}
	case Port:
		if r.PortLo, r.PortHi, err = parsePorts(f[1]); err != nil {
			return err
		}
	}
	rs.List = append(rs.List, r)
	return nil
}

func parseAction(s string) (Action, error) {
	switch s {
	case "proxy":
		return Proxy, nil
	case "direct":
		return Direct, nil
	case "block":
		return Block, nil
	}
	return 0, fmt.Errorf("unknown action %q (want proxy, direct or block)", s)
}

// parseName turns a rule's domain into the lower-case ASCII form names
// arrive in.
func parseName(s string) (string, error) {
	s = strings.TrimSuffix(s, ".")
	if s == "" || len(s) > 253 {
		return "", fmt.Errorf("bad domain %q", s)
	}
	a, err := idna.Lookup.ToASCII(s)
	if err != nil {
		return "", fmt.Errorf("bad domain %q: %w", s, err)
	}
	return a, nil
}

// normalizeName lower-cases a destination name and drops a trailing dot;
// names already in national script are converted to ASCII best-effort.
func normalizeName(s string) string {
	if s == "" {
		return ""
	}
	s = strings.ToLower(strings.TrimSuffix(s, "."))
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			if a, err := idna.Lookup.ToASCII(s); err == nil {
				return a
			}
			return s
		}
	}
	return s
}

func parsePrefix(s string) (netip.Prefix, error) {
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return netip.Prefix{}, fmt.Errorf("bad cidr %q", s)
		}
		return p.Masked(), nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("bad cidr %q", s)
	}
	a = a.Unmap()
	return netip.PrefixFrom(a, a.BitLen()), nil
}

func parsePorts(s string) (lo, hi uint16, err error) {
	a, b, ok := strings.Cut(s, "-")
	if !ok {
		b = a
	}
	l, err1 := strconv.ParseUint(a, 10, 16)
	h, err2 := strconv.ParseUint(b, 10, 16)
	if err1 != nil || err2 != nil || l == 0 || l > h {
		return 0, 0, fmt.Errorf("bad port %q (want 1-65535 or LOW-HIGH)", s)
	}
	return uint16(l), uint16(h), nil
}

//go:embed presets/*.rules
var presetFS embed.FS

// Presets returns the names of the shipped presets.
func Presets() []string {
	ents, _ := presetFS.ReadDir("presets")
	var names []string
	for _, e := range ents {
		names = append(names, strings.TrimSuffix(e.Name(), ".rules"))
	}
	sort.Strings(names)
	return names
}

func presetBytes(name string) ([]byte, error) {
	for _, p := range Presets() {
		if p == name {
			return presetFS.ReadFile("presets/" + name + ".rules")
		}
	}
	return nil, fmt.Errorf("unknown preset %q (have %s)", name, strings.Join(Presets(), ", "))
}

// Preset returns a shipped preset's rules (with its own default).
func Preset(name string) (*Rules, error) {
	b, err := presetBytes(name)
	if err != nil {
		return nil, err
	}
	rs := &Rules{Default: Proxy}
	if err := rs.parse(strings.NewReader(string(b)), name, 1); err != nil {
		return nil, err
	}
	return rs, nil
}

// MatchName returns the action of the first domain, domain-suffix or keyword
// rule matching name, and whether one did. The DNS relay uses it to refuse
// names that are blocked, without applying address or port rules to a query.
func (rs *Rules) MatchName(name string) (Action, bool) {
	if rs == nil {
		return Proxy, false
	}
	host := normalizeName(name)
	for _, r := range rs.List {
		if (r.Kind == Domain || r.Kind == DomainSuffix || r.Kind == Keyword) && r.matches(host, netip.Addr{}, 0) {
			return r.Action, true
		}
	}
	return Proxy, false
}
