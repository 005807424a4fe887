package route

import (
	"net/netip"
	"strings"
	"sync"
	"time"
)

// NameMap is the DNS policy of TUN mode: it remembers which name each
// address was an answer for, so that a connection to an address can be
// matched against domain rules. The client relays every DNS query through
// the tunnel, records the answers here, and looks the name up again when
// the application connects to one of the addresses ("sniffing" the names
// from DNS rather than handing out fake addresses, so applications see real
// addresses and keep working across client restarts).
//
// An entry lives for the answer's TTL, but at least MinTTL (applications
// cache longer than they should). The map holds at most Max entries; when
// full, the entry closest to expiry is dropped. A NameMap is safe for
// concurrent use; its zero value is not — use NewNameMap.
type NameMap struct {
	// MinTTL is the shortest time an entry is kept. NewNameMap sets 10 minutes.
	MinTTL time.Duration
	// Max is the number of addresses remembered. NewNameMap sets 65536.
	Max int

	mu      sync.Mutex
	entries map[netip.Addr]nameEntry // guarded by mu
}

type nameEntry struct {
	name    string
	expires time.Time
}

// NewNameMap returns an empty map with the defaults above.
func NewNameMap() *NameMap {
	return &NameMap{MinTTL: 10 * time.Minute, Max: 65536, entries: make(map[netip.Addr]nameEntry)}
}

// Record notes that name resolved to addr with the given TTL at time now.
func (m *NameMap) Record(name string, addr netip.Addr, ttl time.Duration, now time.Time) {
	name = strings.ToLower(strings.TrimSuffix(name, "."))
	if name == "" || !addr.IsValid() {
		return
	}
	if ttl < m.MinTTL {
		ttl = m.MinTTL
	}
	addr = addr.Unmap()
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.entries[addr]; !ok && len(m.entries) >= m.Max {
		m.evictLocked(now)
	}
	m.entries[addr] = nameEntry{name: name, expires: now.Add(ttl)}
}

// evictLocked drops expired entries, or if none, the one closest to expiry.
func (m *NameMap) evictLocked(now time.Time) {
	var oldest netip.Addr
	var oldestT time.Time
	dropped := false
	for a, e := range m.entries {
		if now.After(e.expires) {
			delete(m.entries, a)
			dropped = true
			continue
		}
		if !oldest.IsValid() || e.expires.Before(oldestT) {
			oldest, oldestT = a, e.expires
		}
	}
	if !dropped && oldest.IsValid() {
		delete(m.entries, oldest)
	}
}

// Lookup returns the name addr was last an answer for, if still fresh.
func (m *NameMap) Lookup(addr netip.Addr, now time.Time) (string, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	e, ok := m.entries[addr.Unmap()]
	if !ok || now.After(e.expires) {
		return "", false
	}
	return e.name, true
}

// Len returns the number of entries (fresh or not yet evicted).
func (m *NameMap) Len() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.entries)
}
