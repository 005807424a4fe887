package relay

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"testing"
	"time"

	"github.com/burrow-vpn/burrow/internal/camo"
	"github.com/burrow-vpn/burrow/internal/relaylink"
	"github.com/burrow-vpn/burrow/internal/transport/xhttp"
)

func testExit() *exit {
	e := &exit{tok: &relaylink.Token{Addr: "exit.test:443"}, log: slog.New(slog.DiscardHandler)}
	e.up.Store(true)
	return e
}

// TestExitHealth: one probe timing out behind a busy pool does not send
// the relay's clients to the cover; two in a row do, unless the exit is
// visibly sending bytes; a refusal does at once; one success brings the
// exit back. (The relay once marked its exit down on the first stream
// that waited too long for a pooled connection, and under load every
// client then got the cover: "server answered as an ordinary website".)
func TestExitHealth(t *testing.T) {
	timeout := fmt.Errorf("probe: %w", context.DeadlineExceeded)
	refused := fmt.Errorf("exit does not accept this relay: %w", camo.ErrNotReality)

	e := testExit()
	e.setUp(timeout)
	if !e.up.Load() {
		t.Fatal("one failed probe marked the exit down")
	}
	e.setUp(timeout)
	if e.up.Load() {
		t.Fatal("two failed probes in a row left the exit up")
	}
	e.setUp(nil)
	if !e.up.Load() || e.misses.Load() != 0 {
		t.Fatalf("a good probe: up %v, misses %d; want up, 0", e.up.Load(), e.misses.Load())
	}

	e = testExit()
	e.sawBytes()
	for range 5 {
		e.setUp(timeout)
	}
	if !e.up.Load() {
		t.Fatal("failed probes marked an exit down while its streams were receiving bytes")
	}
	e.setUp(refused)
	if e.up.Load() {
		t.Fatal("a refusal left the exit up")
	}
	if got := e.failed.Load(); got != 6 {
		t.Errorf("failures counted %d, want 6", got)
	}
}

// TestExitOpenFailure: a client stream that cannot be opened in time (the
// pool is full, or the dial is slow) leaves the verdict to the probes; an
// exit that refuses the relay is down at once.
func TestExitOpenFailure(t *testing.T) {
	for _, tc := range []struct {
		name   string
		dial   func(ctx context.Context) (net.Conn, func() int64, error)
		wantUp bool
	}{
		{"slow", func(ctx context.Context) (net.Conn, func() int64, error) {
			<-ctx.Done()
			return nil, nil, ctx.Err()
		}, true},
		{"refused", func(ctx context.Context) (net.Conn, func() int64, error) {
			return nil, nil, fmt.Errorf("exit does not accept this relay: %w", camo.ErrNotReality)
		}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := testExit()
			var err error
			e.pool, err = xhttp.NewDialer(xhttp.DialerConfig{Dial: tc.dial, Host: "cover.test", Path: "/"})
			if err != nil {
				t.Fatal(err)
			}
			defer e.pool.Close()
			ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
			defer cancel()
			if c, err := e.open(ctx); err == nil {
				c.Close()
				t.Fatal("open succeeded with no exit")
			}
			if e.up.Load() != tc.wantUp {
				t.Errorf("after a failed open: up %v, want %v", e.up.Load(), tc.wantUp)
			}
			if e.failed.Load() == 0 {
				t.Error("the failure was not counted")
			}
		})
	}
}
