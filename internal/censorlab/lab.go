package censorlab

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/burrow-vpn/burrow/internal/coversite"
)

// The lab's address plan, all on loopback (Linux routes 127.0.0.0/8 to lo,
// so no root is needed). Networks stand for who owns the addresses.
var (
	// CoverNet is the cover site's own network (a big CDN).
	CoverNet = netip.MustParsePrefix("127.0.1.0/24")
	// ServerNet is a foreign data centre: every system's server lives
	// here, and the byte budget treats it as suspicious.
	ServerNet = netip.MustParsePrefix("127.0.2.0/24")
	// SiteIP is the blocked site users want to reach.
	SiteIP = netip.MustParseAddr("127.0.3.1")
	// CoverSNI is the cover site's name.
	CoverSNI = "cover.test"
	// NeighborSNI is the name of a real site hosted in the servers' own
	// data centre (a neighbour at the same provider, as `burrow server
	// find-cover` finds one): a cover whose name the censor places in the
	// server's network.
	NeighborSNI = "neighbor.test"
	// NeighborIP is where the neighbour lives: in ServerNet on loopback,
	// beside the cover and the site in the process's own network, where
	// the servers' outgoing connections go also in the netns mode (the
	// censor places its name in the servers' network of either plan).
	NeighborIP = netip.MustParseAddr("127.0.2.250")
)

// Path places the lab's parties. The zero Path is the loopback plan above;
// the netns mode (NetnsPath) puts client, censor and servers in their own
// network namespaces, so every byte crosses veth links as real packets.
type Path struct {
	// ServerNet holds the servers' addresses; the byte budget treats it as
	// suspicious. Default ServerNet.
	ServerNet netip.Prefix
	// ServerIP returns the address of the i-th system's server. Default: the
	// (i+1)-th address of ServerNet.
	ServerIP func(i int) netip.Addr
	// CoverNet is the cover's own network as the servers' namespace sees it:
	// the benign controls browse to addresses in it, and the censor knows the
	// cover's name belongs there (SNI↔IP consistency). Default CoverNet.
	CoverNet netip.Prefix
	// ControlIP returns the address of the i-th system's server when that
	// system is a benign control. Default: the (10+i)-th address of CoverNet.
	ControlIP func(i int) netip.Addr
	// InServer, InRouter and InClient run f so that the sockets it creates
	// belong to the server's, the censor's or the client's network. Default:
	// just run f.
	InServer, InRouter, InClient func(f func() error) error
	// RelayListen is where the censor's relays listen. Default "127.0.0.1:0".
	RelayListen string
	// RouterDial dials from the censor's network (relay upstreams and probes
	// to servers). Default net.Dialer.
	RouterDial DialFunc
}

func (p Path) withDefaults() Path {
	if !p.ServerNet.IsValid() {
		p.ServerNet = ServerNet
	}
	if p.ServerIP == nil {
		p.ServerIP = func(i int) netip.Addr {
			a := p.ServerNet.Addr()
			for range i + 1 {
				a = a.Next()
			}
			return a
		}
	}
	if !p.CoverNet.IsValid() {
		p.CoverNet = CoverNet
	}
	if p.ControlIP == nil {
		p.ControlIP = func(i int) netip.Addr {
			a := p.CoverNet.Addr()
			for range i + 10 {
				a = a.Next()
			}
			return a
		}
	}
	run := func(f func() error) error { return f() }
	if p.InServer == nil {
		p.InServer = run
	}
	if p.InRouter == nil {
		p.InRouter = run
	}
	if p.InClient == nil {
		p.InClient = run
	}
	return p
}

// Scenario is one censor profile: a fresh set of middleboxes per cell.
type Scenario struct {
	Name string
	Doc  string
	// Boxes builds the middleboxes for one cell.
	Boxes func(l *Lab) []Middlebox
}

// Lab is a running lab: the cover site, the workload's site and every
// system's server.
type Lab struct {
	Cover *coversite.Site
	// Neighbor is a real site in the servers' own network (NeighborSNI).
	Neighbor  *coversite.Site
	Site      *Site
	path      Path
	instances map[string]*Instance
	systems   []System
}

// BaselineIPs returns the server IPs of the baseline systems (the "known
// VPN endpoints" of the ip-blocklist scenario).
func (l *Lab) BaselineIPs() []netip.Addr {
	var ips []netip.Addr
	for _, s := range l.systems {
		if s.Baseline {
			ips = append(ips, l.instances[s.Name].Server.Addr())
		}
	}
	return ips
}

func (l *Lab) prober() *Prober {
	cover, neighbor := l.Cover.Addr, l.Neighbor.Addr
	return &Prober{
		Resolve: func(sni string) string {
			switch {
			case nameMatch(CoverSNI, sni):
				return cover
			case nameMatch(NeighborSNI, sni):
				return neighbor
			}
			return ""
		},
		Reference: cover, ReferenceSNI: CoverSNI,
		Dial: l.proberDial,
	}
}

// proberDial reaches servers (in ServerNet, and the controls and relays in
// the servers' part of CoverNet) from the censor's network and everything
// else (the cover) directly.
func (l *Lab) proberDial(ctx context.Context, network, addr string) (net.Conn, error) {
	if ap, err := netip.ParseAddrPort(addr); err == nil && l.path.RouterDial != nil &&
		(l.path.ServerNet.Contains(ap.Addr()) || l.path.CoverNet.Contains(ap.Addr())) {
		return l.path.RouterDial(ctx, network, addr)
	}
	var d net.Dialer
	return d.DialContext(ctx, network, addr)
}

// serverDial dials from the servers' network.
func (l *Lab) serverDial(ctx context.Context, network, addr string) (conn net.Conn, err error) {
	err = l.path.InServer(func() error {
		var d net.Dialer
		conn, err = d.DialContext(ctx, network, addr)
		return err
	})
	return conn, err
}

// clientDial dials from the client's network.
func (l *Lab) clientDial(ctx context.Context, network, addr string) (conn net.Conn, err error) {
	err = l.path.InClient(func() error {
		var d net.Dialer
		conn, err = d.DialContext(ctx, network, addr)
		return err
	})
	return conn, err
}

func (l *Lab) clientHello() *ClientHelloBox {
	return &ClientHelloBox{BlockSNI: []string{".torproject.org", ".psiphon.ca", "blocked.example"}, AllowJA4: BrowserJA4}
}

// coverNets are the networks the cover's name lives in: the lab's cover, and
// the controls' instances of it (another prefix in the netns mode).
func (l *Lab) coverNets() []netip.Prefix {
	if l.path.CoverNet == CoverNet {
		return []netip.Prefix{CoverNet}
	}
	return []netip.Prefix{CoverNet, l.path.CoverNet}
}

// serverNets are the networks of the servers (and so of the neighbour's
// name): the loopback plan's, and the netns mode's.
func (l *Lab) serverNets() []netip.Prefix {
	if l.path.ServerNet == ServerNet {
		return []netip.Prefix{ServerNet}
	}
	return []netip.Prefix{ServerNet, l.path.ServerNet}
}

// sniNetworks is the censor's knowledge of where the names it sees live
// (its own DNS look-ups): the cover's name in the cover's networks, the
// neighbour's in the servers' network.
func (l *Lab) sniNetworks() *SNINetworks {
	return &SNINetworks{Known: []WhitelistEntry{
		{SNI: CoverSNI, Networks: l.coverNets()},
		{SNI: NeighborSNI, Networks: l.serverNets()},
	}}
}

// whitelist is the mobile whitelist: only the cover's name, towards its own
// networks.
func (l *Lab) whitelist() *ClientHelloBox {
	return &ClientHelloBox{Whitelist: []WhitelistEntry{{SNI: CoverSNI, Networks: l.coverNets()}}}
}

// russia2026 is every box but the whitelist; mobile puts the whitelist
// first among the ClientHello rules.
func (l *Lab) russia2026(mobile bool) []Middlebox {
	boxes := []Middlebox{&IPBlocklist{}, &Signatures{}, &FullyEncrypted{}}
	if mobile {
		boxes = append(boxes, l.whitelist())
	}
	return append(boxes, l.clientHello(), l.sniNetworks(), &TLSInTLS{}, &ConnCount{Max: 4}, &ConnRate{},
		&ByteBudget{Networks: []netip.Prefix{l.path.ServerNet}}, l.prober())
}

// Scenarios returns every scenario: each middlebox alone, then the combined
// russia-2026 profile, and russia-2026-mobile with the whitelist too.
func Scenarios() []Scenario {
	return []Scenario{
		{"signatures", "WireGuard, OpenVPN, SOCKS, HTTP proxy signatures", func(*Lab) []Middlebox { return []Middlebox{&Signatures{}} }},
		{"fully-encrypted", "GFW 2023 popcount/printable exemptions on the first packet", func(*Lab) []Middlebox { return []Middlebox{&FullyEncrypted{}} }},
		{"clienthello", "SNI block-list and JA4 browser allow-list", func(l *Lab) []Middlebox { return []Middlebox{l.clientHello()} }},
		{"sni-whitelist", "only listed SNIs towards their own networks", func(l *Lab) []Middlebox { return []Middlebox{l.whitelist()} }},
		{"sni-ip", "a known site's name towards an address outside its networks", func(l *Lab) []Middlebox { return []Middlebox{l.sniNetworks()} }},
		{"prober", "active probing compared with the cover site, 3 tries each", func(l *Lab) []Middlebox { return []Middlebox{l.prober()} }},
		{"tls-in-tls", "an inner TLS handshake's record sizes anywhere in the connection", func(*Lab) []Middlebox { return []Middlebox{&TLSInTLS{}} }},
		{"byte-budget", "freeze after 16 KiB down to a data-centre network", func(l *Lab) []Middlebox {
			return []Middlebox{&ByteBudget{Networks: []netip.Prefix{l.path.ServerNet}}}
		}},
		{"conn-count", "more than 4 concurrent connections to one server", func(*Lab) []Middlebox { return []Middlebox{&ConnCount{Max: 4}} }},
		{"conn-rate", "more than 16 new connections or TLS handshakes to one server (64 to all) in 10 s", func(*Lab) []Middlebox { return []Middlebox{&ConnRate{}} }},
		{"ip-blocklist", "published VPN endpoints blocked by IP", func(l *Lab) []Middlebox { return []Middlebox{&IPBlocklist{Known: l.BaselineIPs()}} }},
		{"russia-2026", "all of the above but the whitelist, at once", func(l *Lab) []Middlebox { return l.russia2026(false) }},
		{"russia-2026-mobile", "all of the above and the whitelist, at once", func(l *Lab) []Middlebox { return l.russia2026(true) }},
	}
}

// Result is one cell of the table.
type Result struct {
	Scenario       string  `json:"scenario"`
	System         string  `json:"system"`
	Baseline       bool    `json:"baseline"`
	Detected       bool    `json:"detected"`
	Rule           string  `json:"rule"`
	Blocked        bool    `json:"blocked"`
	BytesExpected  int64   `json:"bytes_expected"`
	BytesDelivered int64   `json:"bytes_delivered"`
	Seconds        float64 `json:"seconds"`
	ExpectedFail   bool    `json:"expected_fail"`
	Why            string  `json:"why,omitempty"`
	// ExpectRules and Floor are what an expected fail allows: only these
	// rules may fire, and at least Floor bytes must arrive.
	ExpectRules []string `json:"expect_rules,omitempty"`
	Floor       int64    `json:"floor,omitempty"`
	// Control is set on benign controls (browsing with no tunnel): a rule
	// that detects one is not usable by a censor.
	Control bool `json:"control,omitempty"`
	// Conns is how many TCP connections (or UDP flows) the cell opened.
	Conns int `json:"conns"`
	// MustCatch is set on baseline cells the lab must detect.
	MustCatch bool `json:"must_catch,omitempty"`
	// Detail is the first detection's reason, or the workload's first error.
	Detail string `json:"detail,omitempty"`
	// DidNotRun is set when the workload fell short while the censor did
	// nothing (no event, no block): the system or the machine failed, not the
	// detector, so the cell says nothing about the censor. Such a cell is run
	// again up to cellTries times; if it never runs it is not OK.
	DidNotRun bool `json:"did_not_run,omitempty"`
	// Tries is how many times the cell ran.
	Tries int `json:"tries"`
	// OK reports whether the cell meets the CI rule: a Burrow cell not
	// marked expected-fail is neither detected nor short of a byte; an
	// expected-fail cell is caught by no other rule than its expected ones
	// and delivers at least its floor; a benign control is neither detected
	// nor short of a byte; a must-catch baseline cell is detected.
	OK bool `json:"ok"`
}

// Config selects what Run runs.
type Config struct {
	// Systems to run; each needs a unique name.
	Systems []System
	// Scenarios by name; empty means all.
	Scenarios []string
	// Workload per cell; zero value = the defaults (4 MiB down, 256 KiB up, 50 exchanges).
	Workload Workload
	// Parallel cells at once. Default 8.
	Parallel int
	// Log receives the servers' logs; nil discards.
	Log *slog.Logger
	// Path places the parties; the zero value is loopback.
	Path Path
	// CoverChain makes the cover serve a large site's certificate chain
	// (4-6 KB of handshake, coverchain.go) instead of one small
	// self-signed certificate (~1.8 KB).
	CoverChain bool
}

// Run starts the lab, runs every selected cell and calls each (if not nil)
// with every result as it completes. Results come back in table order.
func Run(ctx context.Context, cfg Config, each func(Result)) ([]Result, error) {
	scenarios, err := pickScenarios(cfg.Scenarios)
	if err != nil {
		return nil, err
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if cfg.Parallel == 0 {
		cfg.Parallel = 8
	}
	l, err := start(ctx, cfg)
	if err != nil {
		return nil, err
	}
	defer l.close()
	type cell struct {
		sc  Scenario
		sys System
	}
	var cells []cell
	for _, sc := range scenarios {
		for _, sys := range cfg.Systems {
			cells = append(cells, cell{sc, sys})
		}
	}
	return runParallel(ctx, cfg.Parallel, cells, func(c cell) Result {
		return l.runCell(ctx, c.sc, c.sys, cfg.Workload)
	}, each)
}

// runParallel runs do on every job with n workers and returns the results
// in the jobs' order, calling each (if not nil) with every result as it
// comes, one at a time. Jobs not started when ctx ends are left zero.
func runParallel[J, R any](ctx context.Context, n int, jobs []J, do func(J) R, each func(R)) ([]R, error) {
	results := make([]R, len(jobs))
	ch := make(chan int)
	var wg sync.WaitGroup
	var mu sync.Mutex
	for range max(n, 1) {
		wg.Go(func() {
			for i := range ch {
				r := do(jobs[i])
				results[i] = r
				if each != nil {
					mu.Lock()
					each(r)
					mu.Unlock()
				}
			}
		})
	}
	for i := range jobs {
		if ctx.Err() != nil {
			break
		}
		ch <- i
	}
	close(ch)
	wg.Wait()
	return results, ctx.Err()
}

func pickScenarios(names []string) ([]Scenario, error) {
	all := Scenarios()
	if len(names) == 0 {
		return all, nil
	}
	var out []Scenario
	for _, n := range names {
		i := slices.IndexFunc(all, func(s Scenario) bool { return s.Name == n })
		if i < 0 {
			var known []string
			for _, s := range all {
				known = append(known, s.Name)
			}
			return nil, fmt.Errorf("censorlab: no scenario %q (have %s)", n, strings.Join(known, ", "))
		}
		out = append(out, all[i])
	}
	return out, nil
}

func start(ctx context.Context, cfg Config) (*Lab, error) {
	l := &Lab{instances: map[string]*Instance{}, systems: cfg.Systems, path: cfg.Path.withDefaults()}
	coverCert := selfSigned
	if cfg.CoverChain {
		coverCert = cdnChain
	}
	cert, err := coverCert(CoverSNI)
	if err != nil {
		return nil, err
	}
	coverOpts := coversite.Options{Handler: browsingHandler(), Cert: &cert}
	cover, err := coversite.StartWith(netip.AddrPortFrom(CoverNet.Addr().Next(), 0).String(), coverOpts, CoverSNI)
	if err != nil {
		return nil, fmt.Errorf("censorlab: cover site (the lab needs 127.0.0.0/8 on lo): %w", err)
	}
	l.Cover = cover
	// The neighbour is another site of the servers' data centre, with a
	// certificate of its own name (and the same kind of chain).
	ncert, err := coverCert(NeighborSNI)
	if err != nil {
		l.close()
		return nil, err
	}
	nopts := coverOpts
	nopts.Cert = &ncert
	if l.Neighbor, err = coversite.StartWith(netip.AddrPortFrom(NeighborIP, 0).String(), nopts, NeighborSNI); err != nil {
		l.close()
		return nil, fmt.Errorf("censorlab: the servers' neighbour site: %w", err)
	}
	if l.Site, err = StartSite(netip.AddrPortFrom(SiteIP, 0).String()); err != nil {
		l.close()
		return nil, err
	}
	for i, sys := range cfg.Systems {
		if _, dup := l.instances[sys.Name]; dup {
			l.close()
			return nil, fmt.Errorf("censorlab: two systems named %q", sys.Name)
		}
		ip := l.path.ServerIP(i)
		if sys.Control {
			ip = l.path.ControlIP(i)
		}
		var inst *Instance
		err := l.path.InServer(func() (err error) {
			inst, err = sys.Start(ctx, Env{IP: ip, CoverIP: l.path.ControlIP(i), Cover: cover.Addr, CoverSNI: CoverSNI,
				Neighbor: l.Neighbor.Addr, NeighborSNI: NeighborSNI, Log: cfg.Log,
				ClientDial: l.clientDial, ServerDial: l.serverDial, CoverSite: func(ip netip.Addr) (netip.AddrPort, func() error, error) {
					s, err := coversite.StartWith(netip.AddrPortFrom(ip, 0).String(), coverOpts, CoverSNI)
					if err != nil {
						return netip.AddrPort{}, nil, err
					}
					return netip.MustParseAddrPort(s.Addr), s.Close, nil
				}})
			return err
		})
		if err != nil {
			l.close()
			return nil, fmt.Errorf("censorlab: start %s: %w", sys.Name, err)
		}
		l.instances[sys.Name] = inst
	}
	return l, nil
}

func (l *Lab) close() {
	for _, inst := range l.instances {
		inst.Close()
	}
	if l.Site != nil {
		l.Site.Close()
	}
	if l.Neighbor != nil {
		l.Neighbor.Close()
	}
	if l.Cover != nil {
		l.Cover.Close()
	}
}

// cellTries is how many times a cell that did not run is tried.
const cellTries = 3

// runCell runs a cell until it runs (the censor acted, or the whole workload
// arrived), at most cellTries times.
func (l *Lab) runCell(ctx context.Context, sc Scenario, sys System, w Workload) Result {
	var r Result
	for try := 1; try <= cellTries; try++ {
		r = l.runCellOnce(ctx, sc, sys, w)
		r.Tries = try
		if !r.DidNotRun || ctx.Err() != nil {
			break
		}
	}
	return r
}

func (l *Lab) runCellOnce(ctx context.Context, sc Scenario, sys System, w Workload) Result {
	inst := l.instances[sys.Name]
	r := Result{Scenario: sc.Name, System: sys.Name, Baseline: sys.Baseline, Control: sys.Control, BytesExpected: w.Expected(),
		MustCatch: sys.Baseline && slices.Contains(sys.CaughtBy, sc.Name)}
	var exp Expect
	exp, r.ExpectedFail = sys.ExpectedFail[sc.Name]
	r.Why, r.ExpectRules, r.Floor = exp.Why, exp.Rules, exp.Floor
	c := NewCensor(sc.Boxes(l)...)
	c.Listen, c.Dial = l.path.RelayListen, l.path.RouterDial
	defer c.Close()
	expose := c.ExposeTCP
	if sys.Network == "udp" {
		expose = c.ExposeUDP
	}
	start := time.Now()
	var via netip.AddrPort
	err := l.path.InRouter(func() (err error) {
		via, err = expose(ctx, inst.Server)
		return err
	})
	if err != nil {
		r.Detail = err.Error()
		r.DidNotRun = true
		return r
	}
	defer inst.endCell(via)
	var tally Tally
	if inst.Run != nil {
		tally = inst.Run(ctx, via)
	} else {
		tally = w.Run(ctx, l.Site, func(ctx context.Context) (conn net.Conn, err error) {
			err = l.path.InClient(func() error {
				conn, err = inst.Dial(ctx, via, l.Site.Addr)
				return err
			})
			return conn, err
		})
	}
	r.BytesExpected = tally.Expected
	r.Seconds = time.Since(start).Seconds()
	c.Settle()
	r.BytesDelivered = tally.Delivered
	r.Conns = int(c.nextID.Load())
	events := c.Events()
	var rules []string
	for _, e := range events {
		if !slices.Contains(rules, e.Rule) {
			rules = append(rules, e.Rule)
		}
	}
	r.Detected = len(events) > 0
	r.Rule = strings.Join(rules, "+")
	r.Blocked = tally.Delivered < tally.Expected || c.IPBlocked(inst.Server.Addr())
	switch {
	case len(events) > 0:
		r.Detail = events[0].Reason
		if len(tally.Errors) > 0 { // what fell short, beside the rule that fired first
			r.Detail += "; workload: " + strings.Join(tally.Errors, "; ")
		}
	case len(tally.Errors) > 0:
		r.Detail = tally.Errors[0]
	}
	r.DidNotRun = !r.Detected && tally.Delivered < tally.Expected && !c.IPBlocked(inst.Server.Addr())
	r.OK = r.meetsRule(rules)
	return r
}

// meetsRule applies the CI rule to a cell whose censor events named rules.
func (r *Result) meetsRule(rules []string) bool {
	switch {
	case r.DidNotRun:
		return false
	case r.Baseline:
		return !r.MustCatch || r.Detected
	case r.ExpectedFail:
		other := slices.ContainsFunc(rules, func(rule string) bool { return !slices.Contains(r.ExpectRules, rule) })
		return !other && r.BytesDelivered >= r.Floor
	default: // Burrow, and the benign controls
		return !r.Detected && !r.Blocked && r.BytesDelivered == r.BytesExpected
	}
}

// ErrCIRule is returned by Check when a cell breaks the CI rule.
var ErrCIRule = errors.New("censorlab: the lab's CI rule is broken")

// Check returns nil if every result meets the CI rule, or an error naming
// the cells that do not.
func Check(results []Result) error {
	var bad []string
	for _, r := range results {
		if r.OK {
			continue
		}
		if r.DidNotRun {
			bad = append(bad, fmt.Sprintf("%s/%s: did not run in %d tries: delivered %d of %d bytes with no censor event (%s)",
				r.Scenario, r.System, r.Tries, r.BytesDelivered, r.BytesExpected, r.Detail))
		} else if r.Baseline {
			bad = append(bad, fmt.Sprintf("%s/%s: baseline no longer caught", r.Scenario, r.System))
		} else if r.Control && r.Detected {
			bad = append(bad, fmt.Sprintf("%s/%s: rule %q flags a benign control, so a censor cannot use it (%s)",
				r.Scenario, r.System, r.Rule, r.Detail))
		} else if r.ExpectedFail {
			bad = append(bad, fmt.Sprintf("%s/%s: expected fail by %s with at least %d bytes, got rule=%q and %d of %d bytes (%s)",
				r.Scenario, r.System, strings.Join(r.ExpectRules, "+"), r.Floor, r.Rule, r.BytesDelivered, r.BytesExpected, r.Detail))
		} else {
			bad = append(bad, fmt.Sprintf("%s/%s: detected=%v rule=%q delivered %d of %d bytes (%s)",
				r.Scenario, r.System, r.Detected, r.Rule, r.BytesDelivered, r.BytesExpected, r.Detail))
		}
	}
	if len(bad) > 0 {
		return fmt.Errorf("%w:\n  %s", ErrCIRule, strings.Join(bad, "\n  "))
	}
	return nil
}
