package client

import (
	"context"
	"errors"
	"net"
	"sync"
	"time"

	"github.com/burrow-vpn/burrow/internal/mux"
	"github.com/burrow-vpn/burrow/internal/vless"
)

// Plain-text streams over open connections.
//
// A new proxied connection that would pay a REALITY handshake before its
// first byte instead becomes a mux.cool session of a connection already
// open, when the server is Burrow's (the link says tcpmux=1) and the stream
// is not TLS (lazy.go decides from the application's first bytes). The
// mux connections are ordinary Vision connections with command Mux: Vision
// pads their first packets, and their record sizes follow the streams'
// data, not handshakes. Each carries at most muxStreams live streams; one is
// closed after muxIdle without streams (before the server's 60 s check). A
// burst of new streams waits for the one connection being opened rather
// than opening one each, so the connection count stays low.
const (
	muxStreams = 32
	muxIdle    = 30 * time.Second
)

// errTunnelClosed is returned for streams asked for after the client stopped.
var errTunnelClosed = errors.New("client: tunnel closed")

// muxPool holds a tunnel's mux connections.
type muxPool struct {
	mu      sync.Mutex
	conns   []*mux.Client // guarded by mu; open connections, oldest first
	dialing *muxOpen      // guarded by mu; the connection being opened, nil if none
	reaper  *time.Timer   // guarded by mu; closes idle connections while there are any
	closed  bool          // guarded by mu
}

// muxOpen is one connection being opened; the streams waiting for it share
// its outcome.
type muxOpen struct {
	done chan struct{} // closed when it is open or failed
	err  error         // set before done is closed
}

// muxDial opens a TCP stream to address over a mux connection, sending
// first in its New frame.
func (t *Tunnel) muxDial(ctx context.Context, address string, first []byte) (net.Conn, error) {
	p := &t.mux
	for attempt := 0; ; attempt++ {
		mc, wait, err := p.pick()
		if err != nil {
			return nil, err
		}
		if mc != nil {
			st, err := mc.DialData(ctx, "tcp", address, first)
			if err == nil {
				return st, nil
			}
			// Full since pick looked, or ended just now: pick again.
			if ctx.Err() != nil || attempt >= 8 {
				return nil, err
			}
			continue
		}
		if wait != nil {
			select {
			case <-wait.done:
			case <-ctx.Done():
				return nil, ctx.Err()
			}
			if wait.err != nil {
				return nil, wait.err // the server is unreachable for all of us
			}
			continue
		}
		// This caller opens the next connection.
		mc, err = t.openMux(ctx)
		p.opened(mc, err)
		if err != nil {
			return nil, err
		}
	}
}

// pick returns a live connection with room for a stream; or, if none, the
// connection being opened; or neither after making the caller the one to
// open a new connection.
func (p *muxPool) pick() (*mux.Client, *muxOpen, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return nil, nil, errTunnelClosed
	}
	p.keepLocked(func(mc *mux.Client) bool {
		select {
		case <-mc.Done():
			return false
		default:
			return true
		}
	})
	for _, mc := range p.conns {
		if mc.Len() < muxStreams {
			return mc, nil, nil
		}
	}
	if p.dialing != nil {
		return nil, p.dialing, nil
	}
	p.dialing = &muxOpen{done: make(chan struct{})}
	return nil, nil, nil
}

// opened records the outcome of the open pick asked for.
func (p *muxPool) opened(mc *mux.Client, err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.dialing.err = err
	close(p.dialing.done)
	p.dialing = nil
	if err != nil {
		return
	}
	if p.closed {
		go mc.Close()
		return
	}
	p.conns = append(p.conns, mc)
	if p.reaper == nil {
		p.reaper = time.AfterFunc(muxIdle/3, p.reap)
	}
}

// reap closes connections idle for muxIdle, and runs again while any are open.
func (p *muxPool) reap() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.keepLocked(func(mc *mux.Client) bool { return mc.Idle() < muxIdle })
	if len(p.conns) == 0 || p.closed {
		p.reaper = nil
		return
	}
	p.reaper.Reset(muxIdle / 3)
}

// keepLocked keeps the connections keep approves of, in order, and closes the
// others (p.mu held).
func (p *muxPool) keepLocked(keep func(*mux.Client) bool) {
	live := p.conns[:0]
	for _, mc := range p.conns {
		if keep(mc) {
			live = append(live, mc)
		} else {
			go mc.Close()
		}
	}
	clear(p.conns[len(live):])
	p.conns = live
}

// close ends every mux connection (and the streams on them).
func (p *muxPool) close() {
	p.mu.Lock()
	p.closed = true
	conns := p.conns
	p.conns = nil
	if p.reaper != nil {
		p.reaper.Stop()
		p.reaper = nil
	}
	p.mu.Unlock()
	for _, mc := range conns {
		mc.Close()
	}
}

// openMux opens one mux connection: a REALITY connection (the warm spare if
// there is one) with a VLESS Mux request under Vision.
func (t *Tunnel) openMux(ctx context.Context) (*mux.Client, error) {
	tconn, err := t.tlsConn(ctx)
	if err != nil {
		return nil, err
	}
	req := &vless.Request{UUID: t.link.UUID, Command: vless.CommandMux, Flow: vless.FlowVision}
	return mux.NewClient(t.clientConn(tconn, req)), nil
}

// muxConns returns how many mux connections are open (for tests and status).
func (t *Tunnel) muxConns() int {
	t.mux.mu.Lock()
	defer t.mux.mu.Unlock()
	return len(t.mux.conns)
}
