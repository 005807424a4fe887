package censorlab

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"strings"
	"sync"

	"github.com/burrow-vpn/burrow/internal/tlshello"
)

// BrowserJA4 maps the JA4 fingerprints of current browsers to their names:
// the allow-list a 2026 TSPU-like box keeps. Chromium 156 (what Burrow's
// client sends), Firefox and Safari, as in internal/camo/testdata/fingerprints.golden.
var BrowserJA4 = map[string]string{
	"t13d1517h2_8daaf6152771_cb7bf5808d99": "Chrome 156",
	// Chrome 156's hello for a WebSocket on a connection of its own: ALPN
	// http/1.1 only, so no ALPS (modelled: the spec above with those two
	// changes, as the lab's benign control sends it).
	"t13d1516h1_8daaf6152771_5b37b36a67c0": "Chrome 156 (WebSocket)",
	"t13d1715h2_5b57614c22b0_a54fffd0eb61": "Firefox",
	"t13d2013h2_a09f3c656075_7f0f34a4126d": "Safari",
}

// WhitelistEntry lets one server name through towards the listed networks.
type WhitelistEntry struct {
	SNI      string // exact name, or ".example.com" for the domain and its subdomains
	Networks []netip.Prefix
}

// RuleWhitelist is the rule name of the ClientHelloBox's whitelist mode in
// events and the table, apart from its block-list and fingerprint rules
// ("clienthello").
const RuleWhitelist = "sni-whitelist"

// ClientHelloBox reads the TLS ClientHello at the start of every TCP flow,
// reassembled from however many segments and records carry it (so
// splitting the hello does not help), and blocks it on its SNI or its
// fingerprint.
type ClientHelloBox struct {
	// BlockSNI are names refused outright (exact, or ".domain" suffix).
	BlockSNI []string
	// Whitelist, when non-nil, switches to whitelist mode: only a hello
	// whose SNI is listed, towards a network listed for it, passes; every
	// other TCP flow (TLS or not) and every UDP flow is reset.
	Whitelist []WhitelistEntry
	// AllowJA4, when non-nil, is the fingerprint allow-list: a hello whose
	// JA4 is not a key is reset (Go's crypto/tls default is not a browser).
	// Use BrowserJA4.
	AllowJA4 map[string]string

	mu      sync.Mutex
	decided map[uint64]bool // guarded by mu
}

func (*ClientHelloBox) Name() string { return "clienthello" }

func (b *ClientHelloBox) Open(f *Flow) Verdict {
	if b.Whitelist != nil && f.Network == "udp" {
		return Verdict{Action: Reset, Rule: RuleWhitelist, Reason: "whitelist mode: UDP carries no listed SNI"}
	}
	return Verdict{}
}

func (b *ClientHelloBox) Close(f *Flow) {
	b.mu.Lock()
	delete(b.decided, f.ID)
	b.mu.Unlock()
}

func (b *ClientHelloBox) Data(f *Flow, dir Dir, p []byte) Verdict {
	if dir != Up || f.Network != "tcp" {
		return Verdict{}
	}
	b.mu.Lock()
	if b.decided == nil {
		b.decided = map[uint64]bool{}
	}
	done := b.decided[f.ID]
	b.mu.Unlock()
	if done {
		return Verdict{}
	}
	hello, complete, err := PeekHello(f.Seen(Up))
	if !complete {
		return Verdict{}
	}
	b.mu.Lock()
	b.decided[f.ID] = true
	b.mu.Unlock()
	if err != nil {
		if b.Whitelist != nil {
			return Verdict{Action: Reset, Rule: RuleWhitelist, Reason: "whitelist mode: not TLS"}
		}
		return Verdict{}
	}
	return b.Judge(hello, f.Server.Addr())
}

// Judge applies the box's rules to a hello sent towards server.
func (b *ClientHelloBox) Judge(hello *tlshello.ClientHello, server netip.Addr) Verdict {
	sni := hello.ServerName
	for _, n := range b.BlockSNI {
		if nameMatch(n, sni) {
			return Verdict{Action: Reset, Reason: fmt.Sprintf("SNI %q on the block-list", sni)}
		}
	}
	if b.Whitelist != nil && !b.whitelisted(sni, server) {
		return Verdict{Action: Reset, Rule: RuleWhitelist, Reason: fmt.Sprintf("whitelist mode: SNI %q towards %s is not listed", sni, server)}
	}
	if b.AllowJA4 != nil {
		ja4 := hello.JA4()
		if _, ok := b.AllowJA4[ja4]; !ok {
			_, ja3 := hello.JA3()
			return Verdict{Action: Reset, Reason: fmt.Sprintf("fingerprint JA4 %s (JA3 %s) is not a known browser's", ja4, ja3)}
		}
	}
	return Verdict{}
}

func (b *ClientHelloBox) whitelisted(sni string, server netip.Addr) bool {
	for _, e := range b.Whitelist {
		if !nameMatch(e.SNI, sni) {
			continue
		}
		for _, n := range e.Networks {
			if n.Contains(server) {
				return true
			}
		}
	}
	return false
}

func nameMatch(pattern, name string) bool {
	name = strings.ToLower(strings.TrimSuffix(name, "."))
	pattern = strings.ToLower(pattern)
	if strings.HasPrefix(pattern, ".") {
		return name == pattern[1:] || strings.HasSuffix(name, pattern)
	}
	return name == pattern
}

// PeekHello parses the ClientHello at the start of stream, the bytes a
// client sent so far. complete is false while more bytes could still make a
// hello; then hello and err are nil. A stream that is not a TLS ClientHello
// is complete with an error.
func PeekHello(stream []byte) (hello *tlshello.ClientHello, complete bool, err error) {
	// Cheap test first: while the first record is incomplete there is
	// nothing to parse (ReadRecords would allocate the whole record per call).
	if len(stream) >= 5 && stream[0] == 0x16 && len(stream) < MaxInspect {
		if n := int(stream[3])<<8 | int(stream[4]); n <= 16384 && len(stream) < 5+n {
			return nil, false, nil
		}
	}
	hello, _, err = tlshello.ReadRecords(bytes.NewReader(stream))
	if err != nil && (errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF)) && !errors.Is(err, tlshello.ErrNotTLS) {
		if len(stream) < MaxInspect {
			return nil, false, nil
		}
	}
	return hello, true, err
}
