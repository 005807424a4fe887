// Package accept runs the accept loops of the client's local proxy frontends
// (internal/proxy/socks5, internal/proxy/httpproxy): one goroutine per
// accepted connection, a backoff on temporary accept errors, and a Close that
// ends every loop and waits until every connection's goroutine has returned.
//
// It imports nothing else of Burrow's.
package accept

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"time"
)

// ErrClosed is returned by Serve after Close.
var ErrClosed = errors.New("accept: group closed")

// Backoff bounds for temporary accept errors (such as running out of file
// descriptors): the first retry waits minBackoff, each next one twice as
// long, up to maxBackoff.
const (
	minBackoff = 5 * time.Millisecond
	maxBackoff = time.Second
)

// Group serves any number of listeners until Close. Its zero value is ready
// to use; a Group must not be copied after first use.
type Group struct {
	serving sync.WaitGroup // Serve calls in progress; Add only under mu while !closed

	mu        sync.Mutex
	closed    bool                      // guarded by mu
	listeners map[net.Listener]struct{} // guarded by mu
}

// Serve accepts connections on l and calls handle for each in its own
// goroutine, with a context that is cancelled when Serve returns; handle owns
// the connection and must close it, and return, once that context is done.
// Serve returns when l fails or is closed, or after Close (then with
// ErrClosed). Before returning it closes l, cancels the context and waits
// until every handle call has returned. Temporary accept errors are retried
// after a backoff and reported to log at debug level.
func (g *Group) Serve(l net.Listener, log *slog.Logger, handle func(ctx context.Context, c net.Conn)) error {
	if !g.track(l) {
		l.Close()
		return ErrClosed
	}
	defer g.serving.Done()
	defer g.untrack(l)

	ctx, cancel := context.WithCancel(context.Background())
	var conns sync.WaitGroup
	defer conns.Wait()
	defer cancel()
	defer l.Close()

	var backoff time.Duration
	for {
		c, err := l.Accept()
		if err != nil {
			if g.isClosed() {
				return ErrClosed
			}
			var te interface{ Temporary() bool }
			if errors.As(err, &te) && te.Temporary() && !errors.Is(err, net.ErrClosed) {
				backoff = min(max(2*backoff, minBackoff), maxBackoff)
				log.Debug("accept failed, retrying", "err", err, "retry_in", backoff)
				time.Sleep(backoff)
				continue
			}
			return fmt.Errorf("accept: %w", err)
		}
		backoff = 0
		conns.Go(func() { handle(ctx, c) })
	}
}

// Close closes every listener passed to Serve, which makes those Serve calls
// return (after their connections' handle calls), and waits until they have
// returned. Serve calls after Close return ErrClosed at once.
func (g *Group) Close() error {
	g.mu.Lock()
	g.closed = true
	var errs []error
	for l := range g.listeners {
		errs = append(errs, l.Close())
	}
	g.mu.Unlock()
	g.serving.Wait()
	return errors.Join(errs...)
}

func (g *Group) track(l net.Listener) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed {
		return false
	}
	if g.listeners == nil {
		g.listeners = make(map[net.Listener]struct{})
	}
	g.listeners[l] = struct{}{}
	g.serving.Add(1)
	return true
}

func (g *Group) untrack(l net.Listener) {
	g.mu.Lock()
	delete(g.listeners, l)
	g.mu.Unlock()
}

func (g *Group) isClosed() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.closed
}
