package client

import (
	"context"
	"errors"
	"net"
	"sync"
	"time"

	"github.com/burrow-vpn/burrow/internal/vless"
)

// Refusals.
//
// A Burrow server that refuses a request after the REALITY handshake (the
// user is unknown, revoked, expired or over quota) says why in its VLESS
// response header (vless.RefusedError; docs/protocol.md). The tunnel keeps
// the last refusal: the state is StateRefused, LastError (the status line)
// and the log say the reason, and each new proxied connection first asks the
// server whether it lets the link in again (a status request on a
// connection of its own, shared by the dials waiting at the same moment).
// While the answer is no, the dial fails at once with the refusal, which the
// SOCKS5 frontend answers with "connection not allowed" and the HTTP
// frontend with a 403 naming the reason, instead of a success followed by
// an empty stream. Any accepted request ends the refused state, so an
// operator's `burrow user set/reset-traffic/enable` takes effect with the
// next connection. Xray servers never refuse this way; with them the state
// never arises.

// refusals is the tunnel's refused state.
type refusals struct {
	mu       sync.Mutex
	cur      *vless.RefusedError // guarded by mu; nil while the server accepts the link
	checking *accessCheck        // guarded by mu; the status request under way, if any
}

// accessCheck is one status request; the dials waiting for it share its outcome.
type accessCheck struct {
	done chan struct{} // closed when err is set
	err  error         // nil: accepted, or no answer (the dial goes ahead)
}

// clientConn wraps tconn in a VLESS client conn whose response header feeds
// the refused state.
func (t *Tunnel) clientConn(tconn net.Conn, req *vless.Request) net.Conn {
	return vless.ClientConnWatch(tconn, req, t.observeResponse)
}

// observeResponse records a response header: nil (accepted) or a refusal.
func (t *Tunnel) observeResponse(err error) {
	var re *vless.RefusedError
	errors.As(err, &re)
	r := &t.refused
	r.mu.Lock()
	prev := r.cur
	r.cur = re
	r.mu.Unlock()
	switch {
	case re != nil && (prev == nil || prev.Reason != re.Reason):
		t.logger().Warn("the server refuses this link: "+re.Reason.String(), "server", t.server)
	case re == nil && prev != nil:
		t.logger().Info("the server accepts this link again", "server", t.server)
	}
}

// refusal returns the refusal in force, or nil.
func (t *Tunnel) refusal() *vless.RefusedError {
	t.refused.mu.Lock()
	defer t.refused.mu.Unlock()
	return t.refused.cur
}

// recheckAccess is called by a dial while the link is refused: it returns
// the refusal if the server still refuses, nil if it accepts again (or gives
// no clear answer, so the dial goes ahead and finds out).
func (t *Tunnel) recheckAccess(ctx context.Context) error {
	r := &t.refused
	r.mu.Lock()
	ac := r.checking
	mine := ac == nil
	if mine {
		ac = &accessCheck{done: make(chan struct{})}
		r.checking = ac
	}
	r.mu.Unlock()
	if mine {
		ac.err = t.askStatus(ctx)
		r.mu.Lock()
		r.checking = nil
		r.mu.Unlock()
		close(ac.done)
	}
	select {
	case <-ac.done:
		return ac.err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// askStatus sends a status request on a new connection and reads the answer.
func (t *Tunnel) askStatus(ctx context.Context) error {
	tconn, err := t.handshake(ctx)
	if err != nil {
		return err
	}
	defer tconn.Close()
	deadline := time.Now().Add(10 * time.Second)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	tconn.SetDeadline(deadline)
	c := t.clientConn(tconn, &vless.Request{UUID: t.link.UUID, Command: vless.CommandTCP, Dest: vless.StatusDest})
	if _, err := c.Write(nil); err != nil {
		return nil
	}
	_, err = c.Read(make([]byte, 1))
	var re *vless.RefusedError
	if errors.As(err, &re) {
		return re
	}
	return nil
}
