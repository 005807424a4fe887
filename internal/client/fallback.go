package client

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/burrow-vpn/burrow/internal/links"
	"github.com/burrow-vpn/burrow/internal/telemetry"
	"github.com/burrow-vpn/burrow/internal/transport/xhttp"
)

// The automatic fallback to the rotating transport.
//
// Some censors (Russia's TSPU since 2025) freeze a TCP connection to a
// "suspicious" server once some kilobytes (16 KiB in 2025, other amounts
// elsewhere) have flowed towards the client: no reset, the bytes just stop.
// A plain (tcp) tunnel connection cannot tell that from a quiet one, so the
// tunnel watches the bytes each connection receives: a connection that went
// silent for stallTimeout having received an amount inside the freeze
// window is reported to the tunnel's Learned (learn.go), and two such at
// about the same amount within stallWindow are a byte budget: new
// connections then use the rotating XHTTP transport, rotating below it (the
// server must be Burrow's; Xray servers do not serve XHTTP on a tcp
// inbound). A reset of the handshake itself (right after the ClientHello)
// switches at once. The connections already frozen cannot be saved;
// applications retry them.
const (
	stallWindow = 2 * time.Minute
	freezeLow   = 3 << 10  // below: the handshake alone
	freezeHigh  = 96 << 10 // above: a freeze no one has reported, more likely a quiet connection
)

// stallTimeout is a variable for tests.
var stallTimeout = 8 * time.Second

// connWatch follows one plain connection's received bytes.
type connWatch struct {
	rx   atomic.Int64
	last atomic.Int64 // unix nanoseconds of the last byte received or sent
}

func (w *connWatch) add(n int64) {
	w.rx.Add(n)
	w.last.Store(time.Now().UnixNano())
}

// watcher holds the watched connections of a tunnel.
type watcher struct {
	mu      sync.Mutex
	conns   map[*connWatch]struct{} // guarded by mu
	stalls  []time.Time             // guarded by mu
	running bool                    // guarded by mu
	stop    chan struct{}           // guarded by mu; closed to end the scan loop
	wg      sync.WaitGroup
}

// watch registers a new plain connection, starting the scan loop if needed.
func (t *Tunnel) watch() *connWatch {
	w := newWatch()
	t.register(w)
	return w
}

// newWatch returns a watch not yet registered (a warm spare's, registered
// when the spare is taken, so its idle wait is not taken for a freeze).
func newWatch() *connWatch {
	w := &connWatch{}
	w.last.Store(time.Now().UnixNano())
	return w
}

// register starts watching w, counting its idle time from now.
func (t *Tunnel) register(w *connWatch) {
	w.last.Store(time.Now().UnixNano())
	if t.link.Type == links.TypeXHTTP || t.opts.NoFallback {
		return
	}
	wt := &t.watcher
	wt.mu.Lock()
	defer wt.mu.Unlock()
	if wt.conns == nil {
		wt.conns = make(map[*connWatch]struct{})
	}
	wt.conns[w] = struct{}{}
	if !wt.running {
		wt.running = true
		wt.stop = make(chan struct{})
		wt.wg.Add(1)
		go t.scanLoop(wt.stop)
	}
}

// scanLoop checks the watched connections every second.
func (t *Tunnel) scanLoop(stop chan struct{}) {
	wt := &t.watcher
	defer wt.wg.Done()
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		select {
		case <-stop:
			return
		case now := <-tick.C:
			if t.scan(now) {
				return
			}
		}
	}
}

// scan looks for frozen connections; it returns true when the loop can end.
func (t *Tunnel) scan(now time.Time) bool {
	wt := &t.watcher
	wt.mu.Lock()
	defer wt.mu.Unlock()
	for w := range wt.conns {
		idle := now.Sub(time.Unix(0, w.last.Load()))
		if idle < stallTimeout {
			continue
		}
		delete(wt.conns, w) // judged once
		rx := w.rx.Load()
		if rx < freezeLow || rx > freezeHigh {
			continue
		}
		if len(wt.stalls) > 0 && now.Sub(wt.stalls[len(wt.stalls)-1]) >= stallWindow {
			wt.stalls = nil // too long ago to be the same freeze
		}
		wt.stalls = append(wt.stalls, now)
		learned := t.learned.Stalled(t.netKey(), rx, false)
		t.countFreeze(telemetry.TCP, rx, learned)
		if learned && !t.fallback.Load() {
			t.fallback.Store(true)
			t.count(telemetry.TCP, telemetry.Fallback, 0)
			t.logger().Warn("connections to the server freeze (a censor's byte limit); "+
				"new connections now use the rotating XHTTP transport, rotating below it", "after_bytes", rx)
			wt.stalls = nil
		}
	}
	if len(wt.conns) == 0 {
		wt.running = false
		return true
	}
	return false
}

// stopWatch ends the scan loop and waits for it.
func (t *Tunnel) stopWatch() {
	wt := &t.watcher
	wt.mu.Lock()
	if wt.running {
		close(wt.stop)
		wt.running = false
	}
	wt.mu.Unlock()
	wt.wg.Wait()
}

// handshakeReset switches a plain link to the rotating transport when the
// network resets its REALITY handshake (right after the ClientHello): a
// censor that recognises this transport's opening may let the other one
// through, and the server serves both.
func (t *Tunnel) handshakeReset(err error) {
	if !xhttp.IsReset(err) || t.link.Type == links.TypeXHTTP || t.opts.NoFallback {
		return
	}
	if !t.fallback.Swap(true) {
		t.count(telemetry.TCP, telemetry.Fallback, 0)
		t.active(true)
		t.logger().Warn("the network resets the handshake; new connections now use the XHTTP transport", "err", err)
	}
}
