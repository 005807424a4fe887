package client

import (
	"encoding/binary"
	"net"
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
// tunnel watches the bytes each connection receives. A connection is judged
// only while it is open (its watch ends when either side closes it or the
// server's end is read), only while it waits on the server (what it
// received ends inside a TLS record, which only a cut makes, or the client
// sent after the last byte it received: a request is outstanding), and only
// once: when nothing has crossed it either way for stallTimeout having
// received between xhttp.MinBudget (below: the handshake and little else,
// no budget could carry anything) and freezeHigh. A connection that
// finished its response and idles is not judged. One the application closes
// while cut inside a record, after half that without a byte, is judged as
// if it had stayed open (watchedConn.Close).
// Such a stall alone teaches nothing: only two, after about the same amount
// (within a quarter) and within stallWindow of each other, go to the
// tunnel's Learned (learn.go) as a freeze, and the budget they set switches
// the network's tcp links to the rotating XHTTP transport, rotating below it
// (the server must be Burrow's; Xray servers do not serve XHTTP on a tcp
// inbound: when the switched transport's handshake succeeds but XHTTP fails,
// the network goes back to plain connections for revertTTL). Two resets of
// the handshake itself (right after the ClientHello) within resetWindow
// switch too, for LearnTTL. The connections already frozen cannot be saved;
// applications retry them.
const (
	stallWindow = 2 * time.Minute
	freezeLow   = xhttp.MinBudget // below: the handshake alone
	freezeHigh  = 96 << 10        // above: a freeze no one has reported, more likely a quiet connection
)

// stallTimeout is a variable for tests.
var stallTimeout = 8 * time.Second

// connWatch follows one plain connection's received bytes.
type connWatch struct {
	rx     atomic.Int64
	last   atomic.Int64 // unix nanoseconds of the last byte received or sent
	lastRx atomic.Int64 // unix nanoseconds of the last byte received
	lastTx atomic.Int64 // unix nanoseconds of the last byte sent
	ended  atomic.Bool  // the connection was closed, or its server end read
	gaveUp atomic.Bool  // the client closed it cut inside a record, quiet for stallTimeout/2
	inRec  atomic.Bool  // the bytes received so far end inside a TLS record
}

func (w *connWatch) add(n int64) {
	w.rx.Add(n)
	now := time.Now().UnixNano()
	w.last.Store(now)
	w.lastRx.Store(now)
}

func (w *connWatch) sent() {
	now := time.Now().UnixNano()
	w.last.Store(now)
	w.lastTx.Store(now)
}

// waiting reports whether the connection waits on the server: the bytes
// received end inside a TLS record (a server writes whole records; a censor
// counting bytes cuts one), or the client sent after the last byte it
// received (a request is outstanding).
func (w *connWatch) waiting() bool {
	return w.inRec.Load() || w.lastTx.Load() > w.lastRx.Load()
}

// watchedConn ends its watch when it is closed or a read fails (the server
// closed or reset it): such a connection is not frozen. It follows the TLS
// record framing of what it reads (REALITY's records, then, once Vision
// goes direct, the inner TLS's).
type watchedConn struct {
	net.Conn
	w  *connWatch
	mu sync.Mutex
	rc recordCursor // guarded by mu
}

func (c *watchedConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if n > 0 {
		c.mu.Lock()
		c.w.inRec.Store(c.rc.feed(p[:n]))
		c.mu.Unlock()
	}
	if ne, ok := err.(net.Error); err != nil && !(ok && ne.Timeout()) {
		c.w.ended.Store(true)
	}
	return n, err
}

// Close ends the watch. An application that closes a connection cut inside
// a record after half the stall window without a byte has given up on a
// freeze: the scan judges it as if it had stayed open (applications often
// wait less than stallTimeout; a healthy server never pauses inside a
// record for seconds).
func (c *watchedConn) Close() error {
	w := c.w
	if !w.ended.Load() && w.inRec.Load() && time.Since(time.Unix(0, w.lastRx.Load())) >= stallTimeout/2 {
		w.gaveUp.Store(true)
	}
	w.ended.Store(true)
	return c.Conn.Close()
}

// recordCursor follows TLS record boundaries in a byte stream.
type recordCursor struct {
	hdr  [5]byte
	hn   int // header bytes read of the next record
	left int // body bytes of the current record still to come
}

// feed advances over p; it reports whether the stream now ends inside a
// record (its header or body).
func (r *recordCursor) feed(p []byte) bool {
	for len(p) > 0 {
		if r.left > 0 {
			k := min(r.left, len(p))
			r.left -= k
			p = p[k:]
			continue
		}
		k := copy(r.hdr[r.hn:], p)
		r.hn += k
		p = p[k:]
		if r.hn == len(r.hdr) {
			r.left, r.hn = int(binary.BigEndian.Uint16(r.hdr[3:])), 0
		}
	}
	return r.hn > 0 || r.left > 0
}

// stall is a connection judged frozen, not yet paired with another.
type stall struct {
	at time.Time
	rx int64
}

// watcher holds the watched connections of a tunnel.
type watcher struct {
	mu      sync.Mutex
	conns   map[*connWatch]struct{} // guarded by mu
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
		if w.ended.Load() {
			delete(wt.conns, w)
			if rx := w.rx.Load(); w.gaveUp.Load() && rx >= freezeLow && rx <= freezeHigh {
				t.stalledLocked(now, rx)
			}
			continue
		}
		if now.Sub(time.Unix(0, w.last.Load())) < stallTimeout {
			continue
		}
		delete(wt.conns, w) // judged once
		if rx := w.rx.Load(); rx >= freezeLow && rx <= freezeHigh && w.waiting() {
			t.stalledLocked(now, rx)
		}
	}
	if len(wt.conns) == 0 {
		wt.running = false
		return true
	}
	return false
}

// stalledLocked records a plain connection that stalled after rx bytes
// (t.watcher.mu held). A stall on the same network after about the same
// amount within stallWindow before (by any tunnel sharing t.learned) makes
// the pair a freeze for t.learned.
func (t *Tunnel) stalledLocked(now time.Time, rx int64) {
	t.count(telemetry.TCP, telemetry.Freeze, telemetry.SizeBucket(rx))
	key := t.netKey()
	prev, paired := t.learned.stalled(key, now, rx)
	if !paired {
		return
	}
	learned := t.learned.Stalled(key, prev, false)
	learned = t.learned.Stalled(key, rx, false) || learned
	if !learned {
		return
	}
	t.countLearned(telemetry.TCP)
	if t.learned.usesXHTTP(key) {
		t.count(telemetry.TCP, telemetry.Fallback, 0)
		t.logger().Warn("connections to the server freeze (a censor's byte limit); "+
			"new connections now use the rotating XHTTP transport, rotating below it", "after_bytes", rx)
	}
}

// nearBytes reports whether two stalls, after a and b bytes, may be the
// same limit: within a quarter of each other (as xhttp.Learned judges).
func nearBytes(a, b int64) bool { return max(a, b)-min(a, b) <= max(a, b)/4 }

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

// handshakeReset notes a reset of a plain link's REALITY handshake (right
// after the ClientHello): the second within resetWindow on a network
// switches the tcp links there to the rotating transport for LearnTTL (a
// censor that recognises this transport's opening may let the other one
// through, and the server serves both). One alone may be a server
// restarting. Neither address goes to the log.
func (t *Tunnel) handshakeReset(err error) {
	if !xhttp.IsReset(err) || t.link.Type == links.TypeXHTTP || t.opts.NoFallback {
		return
	}
	if t.learned.reset(t.netKey()) {
		t.count(telemetry.TCP, telemetry.Fallback, 0)
		t.active(true)
		t.logger().Warn("the network resets the handshake (twice); new connections now use the XHTTP transport",
			"err", "connection reset after the ClientHello")
	}
}
