// Package coverscan finds cover sites next to a server: real HTTPS sites
// in the server's own network that a REALITY server can show probers.
//
// A censor that pairs each ClientHello's SNI with the network of the
// address it goes to (TSPU 2026; the lab's sni-ip rule) flags a server
// whose SNI is a big site that lives elsewhere. A neighbour (another
// customer of the same provider, in the same block of addresses) has a name
// that resolves where the server is. Scan connects to each address of a
// block, reads the names on the certificate it serves, and checks each
// candidate as a cover must be: TLS 1.3 with X25519, HTTP/2, a certificate
// that verifies for the name, and a name that resolves into the server's
// network. It also measures the handshake a browser gets (every connection
// to the server pays it before data; smaller leaves more under a freeze).
package coverscan

import (
	"cmp"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"math"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/burrow-vpn/burrow/internal/camo"
)

// MaxAddrs bounds one scan: a /20 of IPv4. A neighbour is close by, and a
// scan of more looks like what it is.
const MaxAddrs = 4096

// Config is one scan.
type Config struct {
	// Block is the addresses scanned (IPv4, at most MaxAddrs of them).
	Block netip.Prefix
	// Network is the server's network: every address a cover's name
	// resolves to must lie in it, or a censor that places names by its
	// own look-ups sees the name served from elsewhere. Default: Block.
	Network netip.Prefix
	// Port is the HTTPS port. Default 443.
	Port uint16
	// Skip are addresses not to scan (the server's own).
	Skip []netip.Addr
	// Parallel is how many addresses are tried at once. Default 32.
	Parallel int
	// Timeout bounds each connection and look-up. Default 3 s.
	Timeout time.Duration
	// Dial dials; nil means a net.Dialer.
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)
	// Resolve looks names up; nil means the system's resolver.
	Resolve func(ctx context.Context, host string) ([]netip.Addr, error)
	// Roots verify the sites' certificates; nil means the system's.
	Roots *x509.CertPool
}

// Site is an HTTPS site found in the block.
type Site struct {
	Addr netip.AddrPort
	// Name is the server name to send it (the best of its certificate's
	// names), Names every name its certificate carries.
	Name  string
	Names []string
	// TLS13 is TLS 1.3 with X25519 for Name; H2 is HTTP/2 offered by ALPN.
	TLS13, H2 bool
	// Trusted: its certificate chain verifies for Name.
	Trusted bool
	// InNetwork: every address Name resolves to is in the server's
	// network; Resolved is what it resolves to.
	InNetwork bool
	Resolved  []netip.Addr
	// Handshake is the bytes it answers a browser's hello with (0 when
	// unknown).
	Handshake int64
	// Problem says why it cannot serve as a cover ("" when it can).
	Problem string
}

// Suitable reports whether the site can serve as a cover.
func (s Site) Suitable() bool { return s.Problem == "" }

// Scan tries every address of cfg.Block and returns the HTTPS sites found:
// the suitable ones first, smallest handshake first. Addresses that do not
// answer TLS without a server name (closed, or a server that answers only
// the names it hosts) are left out. Cancelled, it returns what it found so
// far with ctx's error.
func Scan(ctx context.Context, cfg Config) ([]Site, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	var addrs []netip.Addr
	for a := cfg.Block.Addr(); cfg.Block.Contains(a); a = a.Next() {
		if !slices.Contains(cfg.Skip, a) {
			addrs = append(addrs, a)
		}
	}
	var (
		mu    sync.Mutex
		sites []Site
		wg    sync.WaitGroup
	)
	work := make(chan netip.Addr)
	for range min(cfg.Parallel, len(addrs)) {
		wg.Go(func() {
			for a := range work {
				if s, ok := cfg.probe(ctx, netip.AddrPortFrom(a, cfg.Port)); ok {
					mu.Lock()
					sites = append(sites, s)
					mu.Unlock()
				}
			}
		})
	}
feed:
	for _, a := range addrs {
		select {
		case work <- a:
		case <-ctx.Done():
			break feed
		}
	}
	close(work)
	wg.Wait()
	slices.SortFunc(sites, func(a, b Site) int {
		if a.Suitable() != b.Suitable() {
			if a.Suitable() {
				return -1
			}
			return 1
		}
		return cmp.Or(cmp.Compare(handshakeKey(a), handshakeKey(b)), a.Addr.Compare(b.Addr))
	})
	return sites, ctx.Err()
}

// handshakeKey orders sites by handshake size, unknown sizes last.
func handshakeKey(s Site) int64 {
	if s.Handshake <= 0 {
		return math.MaxInt64
	}
	return s.Handshake
}

func (cfg Config) withDefaults() (Config, error) {
	if !cfg.Block.IsValid() || !cfg.Block.Addr().Is4() {
		return cfg, errors.New("coverscan: the block to scan must be an IPv4 prefix")
	}
	if bits := cfg.Block.Bits(); bits < 32-12 {
		return cfg, fmt.Errorf("coverscan: %s holds %d addresses; scan at most %d (a /20)", cfg.Block, 1<<(32-bits), MaxAddrs)
	}
	cfg.Block = cfg.Block.Masked()
	if !cfg.Network.IsValid() {
		cfg.Network = cfg.Block
	}
	if cfg.Port == 0 {
		cfg.Port = 443
	}
	if cfg.Parallel <= 0 {
		cfg.Parallel = 32
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 3 * time.Second
	}
	if cfg.Dial == nil {
		var d net.Dialer
		cfg.Dial = d.DialContext
	}
	if cfg.Resolve == nil {
		cfg.Resolve = func(ctx context.Context, host string) ([]netip.Addr, error) {
			return net.DefaultResolver.LookupNetIP(ctx, "ip", host)
		}
	}
	return cfg, nil
}

// probe tries one address: ok is false when nothing there speaks TLS.
func (cfg Config) probe(ctx context.Context, ap netip.AddrPort) (Site, bool) {
	// First as a scanner does, with no name: most servers answer with a
	// default certificate, whose names are the candidates.
	st, err := cfg.handshake(ctx, ap, "", false)
	if err != nil {
		return Site{}, false
	}
	s := Site{Addr: ap}
	leaf := st.PeerCertificates[0]
	s.Names = certNames(leaf)
	cands := candidates(s.Names)
	if len(cands) == 0 {
		s.Problem = "its certificate names no host a client could send (none, or only wildcards of a top-level domain)"
		return s, true
	}
	// Each name is tried as a cover until one passes every check; the
	// site is reported with the first name's problem otherwise.
	var first Site
	for i, name := range cands {
		c := cfg.check(ctx, s, name)
		if c.Suitable() {
			return c, true
		}
		if i == 0 {
			first = c
		}
		if ctx.Err() != nil {
			break
		}
	}
	return first, true
}

// check judges a site as a cover for name.
func (cfg Config) check(ctx context.Context, s Site, name string) Site {
	s.Name = name
	st, err := cfg.handshake(ctx, s.Addr, name, true)
	if err != nil {
		if timedOut(ctx, err) {
			s.Problem = fmt.Sprintf("no answer for %s within %v (a slow site, or try a longer --timeout)", name, cfg.Timeout)
		} else {
			s.Problem = fmt.Sprintf("no TLS 1.3 with X25519 for %s", name)
		}
		return s
	}
	s.TLS13 = true
	s.H2 = st.NegotiatedProtocol == "h2"
	opts := x509.VerifyOptions{DNSName: name, Roots: cfg.Roots, Intermediates: x509.NewCertPool()}
	for _, c := range st.PeerCertificates[1:] {
		opts.Intermediates.AddCert(c)
	}
	_, verr := st.PeerCertificates[0].Verify(opts)
	s.Trusted = verr == nil
	rctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
	addrs, rerr := cfg.Resolve(rctx, name)
	cancel()
	s.Resolved = addrs
	s.InNetwork = inNetwork(addrs, cfg.Network)
	switch {
	case !s.H2:
		s.Problem = "no HTTP/2 (browsers would speak it to a real site)"
	case !s.Trusted:
		s.Problem = fmt.Sprintf("its certificate does not verify for %s: %v", name, verr)
	case rerr != nil || len(addrs) == 0:
		s.Problem = fmt.Sprintf("%s does not resolve (%v): a censor cannot place it, and clients' DNS would fail", name, rerr)
	case !s.InNetwork:
		s.Problem = fmt.Sprintf("%s resolves to %v, not all in the server's network %s", name, addrs, cfg.Network)
	}
	if s.Problem == "" {
		// What a browser's hello gets: the size each connection pays.
		hctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
		s.Handshake, err = camo.CoverHandshake(hctx, cfg.Dial, s.Addr.String(), name)
		cancel()
		if err != nil {
			s.Problem = fmt.Sprintf("a browser's hello for %s failed: %v", name, err)
		}
	}
	return s
}

// inNetwork reports whether addrs are all IPv4 addresses in network (a
// name with an address elsewhere, say on a CDN, may be placed there).
func inNetwork(addrs []netip.Addr, network netip.Prefix) bool {
	var v4 int
	for _, a := range addrs {
		a = a.Unmap()
		if !a.Is4() {
			continue // the scan is of IPv4 blocks; a name's IPv6 says nothing of them
		}
		if !network.Contains(a) {
			return false
		}
		v4++
	}
	return v4 > 0
}

// timedOut reports whether err comes from a deadline rather than an answer.
func timedOut(ctx context.Context, err error) bool {
	var ne net.Error
	return ctx.Err() == nil && (errors.Is(err, context.DeadlineExceeded) || errors.As(err, &ne) && ne.Timeout())
}

// handshake completes a TLS handshake with ap. strict offers only TLS 1.3
// with X25519 (what a REALITY server needs of its cover) and sends name;
// otherwise any version and group, and no name unless given.
func (cfg Config) handshake(ctx context.Context, ap netip.AddrPort, name string, strict bool) (tls.ConnectionState, error) {
	ctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
	defer cancel()
	raw, err := cfg.Dial(ctx, "tcp", ap.String())
	if err != nil {
		return tls.ConnectionState{}, err
	}
	defer raw.Close()
	tc := &tls.Config{
		ServerName:         name,
		InsecureSkipVerify: true, // verified by check, against the name chosen
		NextProtos:         []string{"h2", "http/1.1"},
	}
	if strict {
		tc.MinVersion, tc.CurvePreferences = tls.VersionTLS13, []tls.CurveID{tls.X25519}
	}
	c := tls.Client(raw, tc)
	if err := c.HandshakeContext(ctx); err != nil {
		return tls.ConnectionState{}, err
	}
	st := c.ConnectionState()
	if len(st.PeerCertificates) == 0 {
		return st, errors.New("no certificate")
	}
	if strict && (st.Version != tls.VersionTLS13 || st.CurveID != tls.X25519) {
		return st, errors.New("not TLS 1.3 with X25519")
	}
	return st, nil
}

// certNames returns the host names a certificate carries, without
// repeats: its DNS names, and its common name if it has none.
func certNames(c *x509.Certificate) []string {
	names := slices.Clone(c.DNSNames)
	if len(names) == 0 && c.Subject.CommonName != "" && !strings.ContainsAny(c.Subject.CommonName, " /") {
		names = append(names, c.Subject.CommonName)
	}
	var out []string
	for _, n := range names {
		n = strings.ToLower(strings.TrimSuffix(n, "."))
		if n != "" && !slices.Contains(out, n) {
			out = append(out, n)
		}
	}
	return out
}

// maxCandidates bounds the names tried per site.
const maxCandidates = 4

// candidates are the names worth trying as a cover, best first: exact
// names before the base of a wildcard (a wildcard is no name a site
// serves), shorter (a site's own name) before longer.
func candidates(names []string) []string {
	var exact, wild []string
	for _, n := range names {
		if base, ok := strings.CutPrefix(n, "*."); ok {
			if strings.Contains(base, ".") && !slices.Contains(names, base) {
				wild = append(wild, base)
			}
			continue
		}
		exact = append(exact, n)
	}
	byLen := func(a, b string) int { return cmp.Or(cmp.Compare(len(a), len(b)), strings.Compare(a, b)) }
	slices.SortStableFunc(exact, byLen)
	slices.SortStableFunc(wild, byLen)
	out := append(exact, wild...)
	if len(out) > maxCandidates {
		out = out[:maxCandidates]
	}
	return out
}
