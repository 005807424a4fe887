package client

import (
	"net"
	"net/netip"
	"sync"

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

// Learned holds what the client learned about the networks it used, and
// the network each server was last reached from. The zero value is ready;
// one Learned may be shared by several tunnels.
type Learned struct {
	xhttp.Learned
	mu   sync.Mutex
	last map[string]string // guarded by mu; server → the network key it was last reached from
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
