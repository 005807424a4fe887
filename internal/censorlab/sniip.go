package censorlab

import (
	"fmt"
	"sync"
)

// SNINetworks is SNI↔IP-network consistency, the cheapest REALITY tell: the
// censor knows which networks the names it sees live in (from its own DNS
// look-ups, as TSPU 2026 pairs each ClientHello with the server's subnet),
// and resets a ClientHello that names a known site towards an address
// outside that site's networks. Names it does not know pass: it cannot tell
// where they belong. `burrow check` warns about the same mismatch.
type SNINetworks struct {
	// Known are the names the censor can place, with their networks.
	Known []WhitelistEntry

	mu      sync.Mutex
	decided map[uint64]bool // guarded by mu
}

// RuleSNIIP is SNINetworks' rule name.
const RuleSNIIP = "sni-ip"

func (*SNINetworks) Name() string       { return RuleSNIIP }
func (*SNINetworks) Open(*Flow) Verdict { return Verdict{} }

func (m *SNINetworks) Close(f *Flow) {
	m.mu.Lock()
	delete(m.decided, f.ID)
	m.mu.Unlock()
}

func (m *SNINetworks) Data(f *Flow, dir Dir, _ []byte) Verdict {
	if dir != Up || f.Network != "tcp" {
		return Verdict{}
	}
	m.mu.Lock()
	if m.decided == nil {
		m.decided = map[uint64]bool{}
	}
	done := m.decided[f.ID]
	m.mu.Unlock()
	if done {
		return Verdict{}
	}
	hello, complete, err := PeekHello(f.Seen(Up))
	if !complete {
		return Verdict{}
	}
	m.mu.Lock()
	m.decided[f.ID] = true
	m.mu.Unlock()
	if err != nil {
		return Verdict{}
	}
	for _, e := range m.Known {
		if !nameMatch(e.SNI, hello.ServerName) {
			continue
		}
		if inAny(e.Networks, f.Server.Addr()) {
			return Verdict{}
		}
		return Verdict{Action: Reset, Reason: fmt.Sprintf("SNI %q towards %s, outside its networks %v", hello.ServerName, f.Server.Addr(), e.Networks)}
	}
	return Verdict{}
}
