package client

import (
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/burrow-vpn/burrow/internal/transport/xhttp"
)

// Learning the network's limits: the rules are xhttp.Learned's (learned.go
// in internal/transport/xhttp). The client keys what it learns by network:
// the local address its connections to the server leave from (its /24, or
// /64 for IPv6), with the server address. It is kept in memory only, never
// written anywhere, so nothing on the device records where the user
// connects; a restart relearns.

// defaultPoolConns is the XHTTP pool size when nothing says otherwise: the
// smallest a rotating pool works with (one carrying, one warming up).
const defaultPoolConns = 2

// How long a tcp link keeps to plain connections on a network where the
// rotating transport failed after the switch (an Xray server serves no
// XHTTP on a tcp inbound), so that its freezes do not switch it back at once.
const revertTTL = 30 * time.Minute

// resetWindow: two handshake resets within it switch a tcp link to XHTTP
// (one may be a server restarting or a one-off).
const resetWindow = 2 * time.Minute

// Learned holds what the client learned about the networks it used, and
// the network each server was last reached from. The zero value is ready;
// one Learned may be shared by several tunnels.
type Learned struct {
	xhttp.Learned
	mu    sync.Mutex
	last  map[string]string      // guarded by mu; server → the network key it was last reached from
	links map[string]*linkSwitch // guarded by mu; network key → what tcp links do there
}

// linkSwitch is what a tcp link does on one network.
type linkSwitch struct {
	stalls     []stall     // plain connections' stalls within stallWindow, oldest first (fallback.go)
	resets     []time.Time // handshake resets within resetWindow, oldest first
	xhttpUntil time.Time   // until then: the network resets handshakes, use XHTTP
	plainUntil time.Time   // until then: XHTTP failed here, stay on plain connections
}

// switchLocked returns key's entry, made if missing.
func (l *Learned) switchLocked(key string) *linkSwitch {
	if l.links == nil {
		l.links = make(map[string]*linkSwitch)
	}
	s := l.links[key]
	if s == nil {
		s = &linkSwitch{}
		l.links[key] = s
	}
	return s
}

// usesXHTTP reports whether a tcp link on the network key uses the
// rotating transport: not while a revert holds; else after two handshake
// resets (for LearnTTL), or while a freeze budget is known there.
func (l *Learned) usesXHTTP(key string) bool {
	now := time.Now()
	l.mu.Lock()
	s := l.links[key]
	if s != nil && now.After(s.xhttpUntil) && now.After(s.plainUntil) &&
		(len(s.resets) == 0 || now.Sub(s.resets[len(s.resets)-1]) > resetWindow) &&
		(len(s.stalls) == 0 || now.Sub(s.stalls[len(s.stalls)-1].at) > stallWindow) {
		delete(l.links, key)
		s = nil
	}
	var plain, reset bool
	if s != nil {
		plain, reset = now.Before(s.plainUntil), now.Before(s.xhttpUntil)
	}
	l.mu.Unlock()
	switch {
	case plain:
		return false
	case reset:
		return true
	}
	return l.Get(key).Budget > 0
}

// stalled records a plain connection's stall after rx bytes at now on the
// network key. A stall after about the same amount within stallWindow
// before pairs with it: it returns that one's bytes and true.
func (l *Learned) stalled(key string, now time.Time, rx int64) (prev int64, paired bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	s := l.switchLocked(key)
	for len(s.stalls) > 0 && now.Sub(s.stalls[0].at) > stallWindow {
		s.stalls = s.stalls[1:]
	}
	for i, p := range s.stalls {
		if nearBytes(p.rx, rx) {
			s.stalls = append(s.stalls[:i:i], s.stalls[i+1:]...)
			return p.rx, true
		}
	}
	s.stalls = append(s.stalls, stall{at: now, rx: rx})
	if len(s.stalls) > 4 {
		s.stalls = s.stalls[1:]
	}
	return 0, false
}

// reset records a handshake reset on the network key; it reports whether
// this switched tcp links there to XHTTP (the second within resetWindow).
func (l *Learned) reset(key string) bool {
	was := l.usesXHTTP(key)
	now := time.Now()
	l.mu.Lock()
	defer l.mu.Unlock()
	s := l.switchLocked(key)
	for len(s.resets) > 0 && now.Sub(s.resets[0]) > resetWindow {
		s.resets = s.resets[1:]
	}
	s.resets = append(s.resets, now)
	if len(s.resets) < 2 || now.Before(s.plainUntil) {
		return false
	}
	s.resets = nil
	s.xhttpUntil = now.Add(xhttp.LearnTTL)
	return !was
}

// revert makes tcp links on the network key use plain connections for
// revertTTL, whatever was learned there; it reports whether they used XHTTP.
func (l *Learned) revert(key string) bool {
	was := l.usesXHTTP(key)
	l.mu.Lock()
	defer l.mu.Unlock()
	s := l.switchLocked(key)
	s.xhttpUntil, s.plainUntil = time.Time{}, time.Now().Add(revertTTL)
	return was
}

// seen records that server was reached from the network key.
func (l *Learned) seen(server, key string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.last == nil {
		l.last = make(map[string]string)
	}
	l.last[server] = key
}

// lastKey is the network server was last reached from, for a tunnel that
// has not connected yet; ok is false if none.
func (l *Learned) lastKey(server string) (key string, ok bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	key, ok = l.last[server]
	return key, ok
}

// networkKey names the network a connection to server left from: the
// local address's /24 (/64 for IPv6) and the server. It is never written
// anywhere.
func networkKey(local net.Addr, server string) string {
	ap, err := netip.ParseAddrPort(local.String())
	if err != nil {
		return "?>" + server
	}
	bits := 24
	if !ap.Addr().Unmap().Is4() {
		bits = 64
	}
	p, _ := ap.Addr().Unmap().Prefix(bits)
	return p.String() + ">" + server
}
