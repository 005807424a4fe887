package censorlab

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"time"

	"github.com/burrow-vpn/burrow/internal/camo"
)

// AuditConfig says what Audit looks at.
type AuditConfig struct {
	// Server is the host:port of the deployed server.
	Server string
	// SNI is the server name its clients send.
	SNI string
	// Cover is the host:port of the real site the SNI belongs to. Default SNI:443.
	Cover string
	// Patience is how long each probe waits. Default 3s.
	Patience time.Duration
	// Tries is how many times each probe runs; a probe that differs in any
	// try is flagged, with how often it differed. Default 3.
	Tries int
	// Dial reaches server and cover. Default net.Dialer.
	Dial DialFunc
	// Resolve looks names up. Default net.DefaultResolver.
	Resolve func(ctx context.Context, host string) ([]netip.Addr, error)
}

// Severity of a finding.
const (
	SevFlag = "FLAG" // a censor would flag the server
	SevWarn = "warn" // a weakness a careful censor could use
	SevOK   = "ok"
)

// Finding is one conclusion of an audit, with advice.
type Finding struct {
	Severity string
	What     string
	Advice   string
}

// Report is the result of Audit.
type Report struct {
	Probes   []ProbeResult
	Findings []Finding
}

// Flagged reports whether any finding would make a censor flag the server.
func (r *Report) Flagged() bool {
	for _, f := range r.Findings {
		if f.Severity == SevFlag {
			return true
		}
	}
	return false
}

// Audit looks at a deployed server from outside the way the lab's prober
// does: it checks that the cover speaks TLS 1.3 with X25519 for the SNI (what
// REALITY needs), sends the prober's battery to the server and to the cover
// and compares the answers, and checks whether the SNI belongs to the
// server's network.
func Audit(ctx context.Context, cfg AuditConfig) (*Report, error) {
	if cfg.SNI == "" {
		return nil, fmt.Errorf("censorlab: audit: no SNI")
	}
	if _, _, err := net.SplitHostPort(cfg.Server); err != nil {
		return nil, fmt.Errorf("censorlab: audit: server %q: want HOST:PORT", cfg.Server)
	}
	if cfg.Cover == "" {
		cfg.Cover = net.JoinHostPort(cfg.SNI, "443")
	}
	if cfg.Patience == 0 {
		cfg.Patience = 3 * time.Second
	}
	if cfg.Tries == 0 {
		cfg.Tries = 3
	}
	if cfg.Resolve == nil {
		cfg.Resolve = func(ctx context.Context, host string) ([]netip.Addr, error) {
			return net.DefaultResolver.LookupNetIP(ctx, "ip", host)
		}
	}
	r := &Report{}
	add := func(sev, what, advice string) { r.Findings = append(r.Findings, Finding{sev, what, advice}) }

	if err := camo.CheckCover(ctx, cfg.Dial, cfg.Cover, cfg.SNI); err != nil {
		add(SevFlag, fmt.Sprintf("cover %s: %v", cfg.Cover, err),
			"a REALITY server needs a cover that speaks TLS 1.3 with X25519 for the SNI; pick a popular HTTPS site that does (check with: burrow check --cover HOST:443)")
	} else {
		add(SevOK, fmt.Sprintf("cover %s speaks TLS 1.3 with X25519 for %q", cfg.Cover, cfg.SNI), "")
		if hs, err := camo.CoverHandshake(ctx, cfg.Dial, cfg.Cover, cfg.SNI); err != nil {
			add(SevWarn, fmt.Sprintf("the cover's handshake with a browser's ClientHello failed, so its size is unknown: %v", err),
				"clients send a browser's hello (post-quantum key share, certificate compression); a cover that fails it fails them too: choose another cover site")
		} else {
			r.Findings = append(r.Findings, handshakeFinding(hs))
		}
	}

	r.Probes = Compare(ctx, cfg.Dial, cfg.Server, cfg.Cover, Probes(nil, cfg.SNI, "www.wikipedia.org"), cfg.Patience, cfg.Tries)
	differ := 0
	for _, p := range r.Probes {
		if p.Differs == "" {
			continue
		}
		differ++
		add(SevFlag, fmt.Sprintf("probe %s differed in %d of %d tries: the server answers %v, the cover %v (%s)",
			p.Probe, p.Differed, p.Tries, p.Server, p.Cover, p.Differs), probeAdvice(p))
	}
	if differ == 0 {
		add(SevOK, fmt.Sprintf("all %d probes got the same answers from the server as from the cover, %d tries each", len(r.Probes), cfg.Tries), "")
	}

	host, port, _ := net.SplitHostPort(cfg.Server)
	if port != "443" {
		add(SevWarn, fmt.Sprintf("the server listens on port %s", port), "HTTPS sites live on 443; a TLS server on another port stands out in flow records")
	}
	r.Findings = append(r.Findings, networkFinding(ctx, cfg, host))
	return r, nil
}

// LargeHandshake is the cover's server flight above which Audit warns: every
// connection to a REALITY server pays its cover's, and behind a censor that
// freezes connections after 16 KiB a connection of the xhttp transport then
// carries less than about 10 KB.
const LargeHandshake = 4500

// handshakeFinding judges the size of the cover's handshake, hs bytes.
func handshakeFinding(hs int64) Finding {
	// docs/adaptive.md: a learned budget sits 1/32 below the freeze, and
	// a connection keeps ~1.4 KB for its own records and frames.
	per16 := (16384 - 16384/32 - hs - 1400) / 100 * 100
	what := fmt.Sprintf("the cover's TLS handshake is %d bytes; behind a 16 KiB freeze each xhttp connection carries about %d bytes of data", hs, max(per16, 0))
	if hs <= LargeHandshake {
		return Finding{SevOK, what, ""}
	}
	return Finding{SevWarn, what,
		"every connection to the server pays the cover's handshake before it carries anything, so a large one (long certificate chain, RSA keys, many names) means more connections per MiB behind a byte limit, which a connection-rate rule can count, and below a limit of about the handshake + 2 KB no connection can rotate at all; a cover with a short ECDSA chain (2-3 KB) leaves more room"}
}

// probeAdvice says what a difference on one probe usually means.
func probeAdvice(p ProbeResult) string {
	switch {
	case strings.HasPrefix(p.Probe, "tls") && strings.Contains(p.Differs, "differ"):
		return "the server presents its own certificate or TLS settings instead of the cover's: a prober sees a TLS server that is not the site its SNI names. Run Burrow (REALITY) so unauthenticated clients are spliced to the cover, and check that --cover is the site the SNI belongs to"
	case strings.HasPrefix(p.Probe, "random") && strings.HasPrefix(p.Differs, "close kind"):
		return "the server ends junk connections differently from the cover (FIN, reset or silence): it must splice everything it does not authenticate to the cover and end each side as the cover did"
	case strings.HasPrefix(p.Differs, "timing"):
		return "the server answers later or sooner than the cover: it must not wait for more bytes than the cover does before handing a connection over"
	}
	return "the server does not behave like its cover on this probe; anything that answers for itself rather than splicing to the cover is a fingerprint"
}

// networkFinding checks whether the SNI resolves into the server's network.
func networkFinding(ctx context.Context, cfg AuditConfig, host string) Finding {
	rctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	server, err := netip.ParseAddr(host)
	if err != nil {
		addrs, rerr := cfg.Resolve(rctx, host)
		if rerr != nil || len(addrs) == 0 {
			return Finding{SevWarn, fmt.Sprintf("cannot resolve the server's name %q: %v", host, rerr), "check the address clients use"}
		}
		server = addrs[0]
	}
	if server.IsLoopback() || server.IsPrivate() || server.IsLinkLocalUnicast() {
		return Finding{SevOK, fmt.Sprintf("the server is on a private address (%s); not comparing its network with the SNI's", server), ""}
	}
	sni, err := cfg.Resolve(rctx, cfg.SNI)
	if err != nil || len(sni) == 0 {
		return Finding{SevWarn, fmt.Sprintf("cannot resolve %q (%v), so cannot tell whether it belongs to the server's network", cfg.SNI, err),
			"use an SNI of a real, resolvable site"}
	}
	bits := 16
	if server.Is6() && !server.Is4In6() {
		bits = 32
	}
	net16, _ := server.Unmap().Prefix(bits)
	for _, a := range sni {
		if net16.Contains(a.Unmap()) {
			return Finding{SevOK, fmt.Sprintf("%s resolves into the server's network %s", cfg.SNI, net16), ""}
		}
	}
	return Finding{SevWarn, fmt.Sprintf("%s resolves to %v, outside the server's network %s", cfg.SNI, sni, net16),
		"a censor that matches SNI against the destination network (TSPU 2026, mobile whitelists) sees a site served from the wrong place; prefer a cover hosted in the same provider/AS as the server"}
}
