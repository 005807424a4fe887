package client

import (
	"context"
	"net"
	"sync"
	"time"
)

// The warm spare.
//
// A REALITY handshake costs a new proxied connection a few round trips and
// milliseconds of CPU before its first byte. While the tunnel is in use it
// keeps ONE connection handshaken ahead: the next proxied connection takes it
// and sends its VLESS request at once, and a new spare is opened behind it.
// A spare nobody takes is closed after spareIdle and not replaced until the
// next dial, so an idle client holds no extra connection, and an active one
// holds one more connection than it is using — what a browser with one
// pre-connected socket looks like. spareIdle stays below the server's 30 s
// wait for the VLESS request (Burrow's and Xray-core's). Only plain (tcp)
// links use a spare; XHTTP multiplexes its own connections.
var spareIdle = 20 * time.Second

// spareDelay is how long after a spare was taken the next one is opened.
const spareDelay = 5 * time.Millisecond

// spare holds the tunnel's warm spare connection.
type spare struct {
	mu      sync.Mutex
	conn    net.Conn           // guarded by mu; a handshaken conn nobody uses yet, or nil
	raw     net.Conn           // guarded by mu; conn's TCP conn
	w       *connWatch         // guarded by mu; conn's byte watch, registered when it is taken
	expire  *time.Timer        // guarded by mu; drops conn after spareIdle
	cancel  context.CancelFunc // guarded by mu; ends the handshake under way, if any
	filled  chan struct{}      // guarded by mu; closed when the handshake under way ends; nil if none
	err     error              // guarded by mu; the last spare handshake's error
	claimed bool               // guarded by mu; a new connection waits for the handshake under way
	delay   *time.Timer        // guarded by mu; starts fillSpare after spareDelay
	closed  bool               // guarded by mu; no more spares
	filling sync.WaitGroup     // the goroutine opening a spare
}

// tlsConn returns a handshaken REALITY conn for a new proxied connection:
// the warm spare if there is a live one; else the spare being opened (or one
// opened now) if no other connection waits for it; else a new one. It then
// arranges for the next spare. So a lone connection never waits for more
// than one handshake, and a burst of them handshakes in parallel as without
// spares.
func (t *Tunnel) tlsConn(ctx context.Context) (net.Conn, error) {
	if !t.opts.Spare {
		return t.handshake(ctx)
	}
	if c := t.takeSpare(); c != nil {
		t.fillSpareLater()
		return c, nil
	}
	if filled := t.claimSpare(); filled != nil {
		select {
		case <-filled:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		if c := t.takeSpare(); c != nil {
			t.fillSpareLater()
			return c, nil
		}
		if err := t.spareErr(); err != nil {
			return nil, err
		}
	}
	c, err := t.handshake(ctx)
	if err != nil {
		return nil, err
	}
	t.fillSpareLater()
	return c, nil
}

// claimSpare starts opening a spare if none is being opened and returns a
// channel closed when that handshake ends; nil if another connection
// already waits for it, or spares are off.
func (t *Tunnel) claimSpare() <-chan struct{} {
	s := &t.spare
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.claimed {
		return nil
	}
	filled := t.fillSpareLocked()
	if s.filled != nil { // reset when the handshake ends
		s.claimed = true
	}
	return filled
}

// spareErr returns the error of the last failed spare handshake.
func (t *Tunnel) spareErr() error {
	t.spare.mu.Lock()
	defer t.spare.mu.Unlock()
	return t.spare.err
}

// takeSpare returns the spare, or nil if there is none or it died (the
// server restarted or closed it).
func (t *Tunnel) takeSpare() net.Conn {
	s := &t.spare
	s.mu.Lock()
	c, raw, w := s.conn, s.raw, s.w
	s.conn, s.raw, s.w = nil, nil, nil
	if s.expire != nil {
		s.expire.Stop()
		s.expire = nil
	}
	s.mu.Unlock()
	if c == nil {
		return nil
	}
	if !alive(raw) {
		c.Close()
		return nil
	}
	t.register(w)
	return c
}

// fillSpareLater opens a new spare after spareDelay, so that its handshake
// does not compete for the CPU with the connection that took the last one
// while that connection makes its first round trip.
func (t *Tunnel) fillSpareLater() {
	s := &t.spare
	s.mu.Lock()
	defer s.mu.Unlock()
	if !t.opts.Spare || s.closed || s.delay != nil || s.conn != nil || s.filled != nil {
		return
	}
	var d *time.Timer
	d = time.AfterFunc(spareDelay, func() {
		s.mu.Lock()
		if s.delay != d { // stopped, or replaced by fillSpare
			s.mu.Unlock()
			return
		}
		s.delay = nil
		s.mu.Unlock()
		t.fillSpare()
	})
	s.delay = d
}

// fillSpare starts opening a new spare unless one is ready or being opened.
func (t *Tunnel) fillSpare() {
	t.spare.mu.Lock()
	defer t.spare.mu.Unlock()
	t.fillSpareLocked()
}

// fillSpareLocked is fillSpare with t.spare.mu held (cancelling a pending
// fillSpareLater). It returns a channel closed when no handshake is under way
// any more, or nil if spares are off or closed.
func (t *Tunnel) fillSpareLocked() <-chan struct{} {
	s := &t.spare
	if !t.opts.Spare || s.closed {
		return nil
	}
	if s.delay != nil {
		s.delay.Stop()
		s.delay = nil
	}
	if s.conn != nil || s.filled != nil {
		if s.filled != nil {
			return s.filled
		}
		done := make(chan struct{})
		close(done)
		return done
	}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	filled := make(chan struct{})
	s.cancel, s.filled, s.err = cancel, filled, nil
	s.filling.Add(1)
	go func() {
		defer s.filling.Done()
		defer cancel()
		w := newWatch()
		c, raw, err := t.dialTLS(ctx, w)
		s.mu.Lock()
		defer s.mu.Unlock()
		defer close(filled)
		s.cancel, s.filled, s.err, s.claimed = nil, nil, err, false
		if err != nil {
			return
		}
		if s.closed {
			c.Close()
			return
		}
		s.conn, s.raw, s.w = c, raw, w
		s.expire = time.AfterFunc(spareIdle, func() { t.dropSpare(c) })
	}()
	return filled
}

// dropSpare closes c if it is still the unused spare.
func (t *Tunnel) dropSpare(c net.Conn) {
	s := &t.spare
	s.mu.Lock()
	if s.conn != c {
		s.mu.Unlock()
		return
	}
	s.conn, s.raw, s.w, s.expire = nil, nil, nil, nil
	s.mu.Unlock()
	c.Close()
}

// closeSpare closes the spare, stops opening new ones and waits for the
// goroutine opening one.
func (t *Tunnel) closeSpare() {
	s := &t.spare
	s.mu.Lock()
	s.closed = true
	if s.delay != nil {
		s.delay.Stop()
		s.delay = nil
	}
	if s.cancel != nil {
		s.cancel()
	}
	c := s.conn
	s.conn, s.raw, s.w = nil, nil, nil
	if s.expire != nil {
		s.expire.Stop()
		s.expire = nil
	}
	s.mu.Unlock()
	if c != nil {
		c.Close()
	}
	s.filling.Wait()
}
