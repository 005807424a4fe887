package client

import (
	"sync"

	"github.com/burrow-vpn/burrow/internal/transport/xhttp"
)

// One pacer per server (internal/transport/xhttp/pace.go): a censor's
// connection-rate rule counts every connection to the server, from every
// tunnel and both transports, so they all draw on the same one. The XHTTP
// dialer waits on it while it rotates; a tcp link's own connections are
// only noted in it (they are one per proxied connection, as before).
var pacers = struct {
	sync.Mutex
	m map[pacerKey]*xhttp.Pacer
}{m: map[pacerKey]*xhttp.Pacer{}}

type pacerKey struct {
	server string // host:port of the link
	pace   xhttp.Pace
}

// pacerFor returns the shared pacer of server with pace, or nil when pacing
// is off.
func pacerFor(server string, pace xhttp.Pace) *xhttp.Pacer {
	if pace.Off {
		return nil
	}
	k := pacerKey{server, pace}
	pacers.Lock()
	defer pacers.Unlock()
	if p := pacers.m[k]; p != nil {
		return p
	}
	if len(pacers.m) >= 64 { // forget servers nothing opened to lately
		for key, p := range pacers.m {
			if p.Idle() {
				delete(pacers.m, key)
			}
		}
	}
	p := xhttp.NewPacer(pace)
	pacers.m[k] = p
	return p
}
