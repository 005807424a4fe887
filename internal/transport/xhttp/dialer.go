package xhttp

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// DialFunc opens one secured connection to the server (TCP + REALITY in
// Burrow). rx, if not nil, reports the bytes received on the underlying
// TCP connection so far, TLS handshake and record overhead included; with
// nil the dialer counts bytes read from conn.
type DialFunc func(ctx context.Context) (conn net.Conn, rx func() int64, err error)

// DialerConfig configures a Dialer.
type DialerConfig struct {
	// Dial opens a connection to the server. Required.
	Dial DialFunc
	// Host is the :authority of requests (the link's host=, else the SNI).
	Host string
	// Path is the request path prefix (the link's path=). Default "/".
	Path string
	// Mode is the upload mode: "packet-up" (default; "auto" means it) or
	// "stream-up". With Budget set, uploads are always packet-up.
	Mode string
	// Budget turns rotation on: no TCP connection carries more than Budget
	// bytes towards the client, handshake included; the download moves to
	// a fresh connection before that. It needs a Burrow server (an Xray
	// server ignores it; the client then logs a warning and streams
	// without rotating). 0, the default, is off. At least MinBudget.
	Budget int64
	// MaxConns caps the concurrent TCP connections to the server while
	// they carry the sessions: a session is an HTTP/2 stream, so however
	// many are open the dialer stays at MaxConns connections until every
	// one of them is at the server's stream limit; only then does it open
	// more, one at a time, and it closes them again when the load is gone.
	// Default 3.
	MaxConns int
	// Limits, if set, replace Budget and lower MaxConns with what the
	// client has learned about the path, read for each new connection, and
	// receive what the dialer observes: frozen connections, refused ones
	// (adapt.go). Uploads are then packet-up, as with Budget.
	Limits Limits
	// Pace limits how fast a rotating dialer opens connections (pace.go);
	// the zero value paces with the defaults.
	Pace Pace
	// Pacer, if set, is the pacer shared with everything else that dials
	// the same server (its own Pace is used); nil gives the dialer its own
	// from Pace. Ignored with Pace.Off.
	Pacer *Pacer
	// Logger receives warnings; nil discards.
	Logger *slog.Logger
}

// MinBudget is the smallest Budget accepted: a REALITY handshake alone
// can take several kilobytes of it.
const MinBudget = 4 << 10

// DefaultBudget is the budget rotation uses when turned on without a size:
// well under the 16 KiB after which some censors freeze a connection.
const DefaultBudget = 12 << 10

const (
	defaultMaxConns = 3
	streamsPerConn  = 16  // sessions on one connection before another is opened
	hsReserve       = 512 // post-handshake records the client may not have counted yet
	minRoom         = budgetTail + 512
	minData         = 256 // data a budgeted connection must at least have room for
)

// Stats are a dialer's counters.
type Stats struct {
	Dialed  int64 // TCP connections opened
	Live    int64 // open now
	MaxLive int64 // most open at once
}

// Dialer is the client side: it opens sessions over a small pool of
// HTTP/2 connections and rotates them when a budget is set.
type Dialer struct {
	cfg  DialerConfig
	h2   *http.Transport // starts HTTP/2 on the connections dial opens
	log  *slog.Logger
	ctx  context.Context
	stop context.CancelFunc
	wg   sync.WaitGroup // session goroutines and background dials

	mu      sync.Mutex
	conns   []*pconn      // guarded by mu
	dialing int           // guarded by mu; of them, pacing are still waiting for the pacer
	pacing  int           // guarded by mu
	closing int           // guarded by mu: closed connections whose FINs are still on the path
	heard   atomic.Int64  // when any connection of the pool last received bytes (Unix ns)
	changed chan struct{} // guarded by mu; closed on every pool change
	closed  bool          // guarded by mu
	stallAt time.Time     // guarded by mu: when a connection was last judged frozen
	// A background dial that failed waits before the next (spreadBackoff).
	retryAt   time.Time     // guarded by mu: no background dial before
	retryWait time.Duration // guarded by mu: the wait after the next failure

	dialed, maxLive atomic.Int64
	warned          atomic.Bool
	warnedSmall     atomic.Bool  // logged that a budget was too small for a handshake
	pacer           *Pacer       // nil: Pace.Off
	lastHS          atomic.Int64 // the handshake of the last connection dialed
	warnedPace      atomic.Bool  // logged that a budget was too small to pace
	pacedOnce       atomic.Bool  // logged that pacing began

}

// pconn is one pooled connection.
type pconn struct {
	cc      *http.ClientConn
	conn    net.Conn
	rx      func() int64
	hs      int64           // received when the handshake finished
	budget  int64           // bytes this connection may carry towards the client; 0: no limit
	rtt     time.Duration   // of the PING that opened it
	gone    <-chan struct{} // closed when the connection has ended both ways (see finConn)
	wire    *pingConn       // follows the server's frames (pingConn.partial)
	limit   int             // the server's SETTINGS_MAX_CONCURRENT_STREAMS
	streams int             // guarded by Dialer.mu
	owed    int64           // guarded by Dialer.mu: downstream bytes the open requests may still cost
	waiting int             // guarded by Dialer.mu: requests sent whose answer has not come
	spent   bool            // guarded by Dialer.mu: take no new requests
	frozen  bool            // guarded by Dialer.mu: closed as frozen
	// parked are the cancel funcs of download requests open on this
	// connection; they are moved to a fresh connection when it is spent,
	// so a download waiting for data does not hold a spent connection
	// open. Guarded by Dialer.mu.
	parked map[*int]context.CancelFunc
}

// takingRequests reports whether pc's HTTP/2 connection still takes
// requests: it is open and the server sent no GOAWAY. net/http's ClientConn
// tells that by Available() > 0, which is also 0 at the stream limit, where
// a connection is full, not finished.
func (pc *pconn) takingRequests() bool {
	return pc.cc.Err() == nil && (pc.cc.Available() > 0 || pc.cc.InFlight() >= pc.limit)
}

// retireLocked marks pc spent and moves its downloads elsewhere.
func (pc *pconn) retireLocked() {
	pc.spent = true
	for k, cancel := range pc.parked {
		cancel()
		delete(pc.parked, k)
	}
}

// park registers the cancel func of a download on pc; the returned func
// unregisters it.
func (d *Dialer) park(pc *pconn, cancel context.CancelFunc) func() {
	k := new(int)
	d.mu.Lock()
	defer d.mu.Unlock()
	if pc.spent {
		cancel()
		return func() {}
	}
	if pc.parked == nil {
		pc.parked = make(map[*int]context.CancelFunc)
	}
	pc.parked[k] = cancel
	return func() {
		d.mu.Lock()
		delete(pc.parked, k)
		d.mu.Unlock()
	}
}

// NewDialer checks cfg and returns a dialer. It does not dial.
func NewDialer(cfg DialerConfig) (*Dialer, error) {
	if cfg.Dial == nil {
		return nil, errors.New("xhttp: DialerConfig.Dial is required")
	}
	switch cfg.Mode {
	case "", ModeAuto:
		cfg.Mode = ModePacketUp
	case ModePacketUp, ModeStreamUp:
	default:
		return nil, fmt.Errorf("xhttp: mode %q is not supported by this client; use packet-up or stream-up", cfg.Mode)
	}
	if cfg.Budget != 0 && cfg.Budget < MinBudget {
		return nil, fmt.Errorf("xhttp: budget %d is below the minimum %d", cfg.Budget, MinBudget)
	}
	if cfg.Budget > 0 || cfg.Limits != nil {
		cfg.Mode = ModePacketUp
	}
	if cfg.MaxConns <= 0 {
		cfg.MaxConns = defaultMaxConns
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	cfg.Path = NormalizePath(cfg.Path)
	ctx, stop := context.WithCancel(context.Background())
	d := &Dialer{
		cfg:     cfg,
		log:     cfg.Logger,
		ctx:     ctx,
		stop:    stop,
		changed: make(chan struct{}),
	}
	if !cfg.Pace.Off {
		d.pacer = cfg.Pacer
		if d.pacer == nil {
			d.pacer = NewPacer(cfg.Pace)
		}
		d.cfg.Pace = d.pacer.p
	}
	var protocols http.Protocols
	protocols.SetUnencryptedHTTP2(true) // HTTP/2 with prior knowledge: dial secures the connection
	d.h2 = &http.Transport{
		Protocols:          &protocols,
		DialContext:        handOver,
		DisableCompression: true,
		HTTP2: &http.HTTP2Config{
			SendPingTimeout: 45 * time.Second,
			PingTimeout:     15 * time.Second,
			// A connection at the server's stream limit is full, not
			// broken: RoundTrip waits there for a stream (a ClientConn
			// always does). acquire never puts more than the limit on a
			// connection; HTTP/2 may still count a stream we ended until
			// the server confirms its reset, and RoundTrip waits for that.
			StrictMaxConcurrentRequests: true,
		},
	}
	return d, nil
}

// handoverKey is the context key under which dial hands a connection to
// Transport.NewClientConn, whose dial is handOver.
type handoverKey struct{}

// handoverAddr is the address given to NewClientConn; nothing dials it.
const handoverAddr = "xhttp.invalid:443"

// handOver is the Transport's dial: it returns the connection dial opened.
func handOver(ctx context.Context, _, _ string) (net.Conn, error) {
	c, ok := ctx.Value(handoverKey{}).(net.Conn)
	if !ok {
		return nil, errors.New("xhttp: no connection handed over")
	}
	return c, nil
}

// Stats returns the dialer's counters.
func (d *Dialer) Stats() Stats {
	d.mu.Lock()
	live := int64(len(d.conns))
	d.mu.Unlock()
	return Stats{Dialed: d.dialed.Load(), Live: live, MaxLive: d.maxLive.Load()}
}

// Connected reports whether a pooled connection is open and working now.
func (d *Dialer) Connected() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, pc := range d.conns {
		if pc.cc.Err() == nil {
			select {
			case <-pc.gone:
			default:
				return true
			}
		}
	}
	return false
}

// Close ends every session and connection and waits for their goroutines.
func (d *Dialer) Close() error {
	d.mu.Lock()
	d.closed = true
	conns := d.conns
	d.conns = nil
	d.broadcastLocked()
	d.mu.Unlock()
	d.stop()
	for _, pc := range conns {
		pc.cc.Close()
	}
	d.wg.Wait()
	return nil
}

func (d *Dialer) broadcastLocked() {
	close(d.changed)
	d.changed = make(chan struct{})
}

// leftNow is left for callers that do not hold mu.
func (d *Dialer) leftNow(pc *pconn) int64 {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.left(pc)
}

// left is the budget pc has left, by the client's count; mu must be held.
func (d *Dialer) left(pc *pconn) int64 {
	if pc.budget == 0 {
		return 1 << 62
	}
	return pc.budget - pc.rx() - pc.owed
}

// postCost estimates what a packet-up POST of n bytes costs downstream:
// its response headers, and the WINDOW_UPDATE frames that acknowledge the
// body, each in a TLS record.
func postCost(n int) int64 { return 200 + 50*int64(n/4096+1) }

// getCost is what a download request costs besides its data (which the
// server fits into the budget): response headers.
const getCost = 256

// usableLocked reports whether pc may take a new request that costs need,
// retiring it if it cannot take any. A connection at the server's stream
// limit is not usable for now, but not retired.
func (d *Dialer) usableLocked(pc *pconn, need int64) bool {
	if pc.spent {
		return false
	}
	if !pc.takingRequests() || pc.budget > 0 && pc.budget-pc.rx() < minRoom+getCost {
		pc.retireLocked()
		return false
	}
	return pc.streams < pc.limit && d.left(pc) >= minRoom+need
}

// gcLocked drops and closes connections that are spent and idle, or dead,
// and retires idle connections opened beyond MaxConns once the others
// have room for half of what one carries: the count follows the load down
// as it followed it up, without reopening one for every request at the
// edge.
func (d *Dialer) gcLocked() {
	extra := -d.maxConns()
	free := 0 // streams the unspent connections can still take
	for _, pc := range d.conns {
		d.usableLocked(pc, 0)
		if !pc.spent {
			extra++
			free += max(0, pc.limit-pc.streams)
		}
	}
	for i := len(d.conns) - 1; i >= 0 && extra > 0; i-- {
		pc := d.conns[i]
		if !pc.spent && pc.streams == 0 && free-pc.limit >= pc.limit/2 {
			pc.retireLocked()
			free -= pc.limit
			extra--
		}
	}
	kept := d.conns[:0]
	for _, pc := range d.conns {
		d.usableLocked(pc, 0)
		dead := pc.cc.Err() != nil
		if dead || pc.spent && pc.streams == 0 {
			d.closeLocked(pc)
			continue
		}
		kept = append(kept, pc)
	}
	clear(d.conns[len(kept):])
	d.conns = kept
}

// closeLocked closes pc and keeps its slot until the connection has ended
// both ways: an observer on the path sees the connection until FINs have
// passed in both directions, and a censor counting connections counts it
// until then.
func (d *Dialer) closeLocked(pc *pconn) {
	d.closing++
	carried := d.carriedLocked(pc)
	d.wg.Add(1)
	go func() {
		defer d.wg.Done()
		if o := d.observer(); carried && o != nil {
			o.Carried(pc.budget)
		}
		pc.cc.Close()
		select {
		case <-pc.gone:
			waitFIN(d.ctx, pc.rtt)
		case <-d.ctx.Done():
		}
		d.mu.Lock()
		d.closing--
		d.broadcastLocked()
		d.mu.Unlock()
	}()
}

// carriedLocked reports whether pc, being closed, rotated at its budget
// having carried (nearly: the server stops short) all of it, frozen never.
func (d *Dialer) carriedLocked(pc *pconn) bool {
	return pc.budget > 0 && !pc.frozen && pc.cc.Err() == nil && pc.rx() >= pc.budget-pc.budget/4
}

// acquire returns a connection for one request that may cost need bytes
// downstream; release it after.
func (d *Dialer) acquire(ctx context.Context, need int64) (*pconn, error) {
	for {
		d.mu.Lock()
		if d.closed {
			d.mu.Unlock()
			return nil, net.ErrClosed
		}
		d.gcLocked()
		var best *pconn
		fresh := 0              // usable connections with more than half the budget left
		taking, atLimit := 0, 0 // connections not retired; of them, at the server's stream limit
		// Beyond MaxConns, fill the oldest connections first, so the
		// newest go idle and close when the load drops.
		maxConns, budget := d.maxConns(), d.budgetNow()
		pack := len(d.conns) > maxConns
		for _, pc := range d.conns {
			ok := d.usableLocked(pc, need)
			if !pc.spent {
				taking++
				if pc.streams >= pc.limit {
					atLimit++
				}
			}
			if !ok {
				continue
			}
			if d.left(pc) > pc.budget/2 {
				fresh++
			}
			if best == nil || !pack && pc.streams < best.streams {
				best = pc
			}
		}
		full := len(d.conns)+d.dialing+d.closing >= maxConns
		// Every connection is at the server's stream limit: more sessions
		// than MaxConns connections can carry. Waiting would hold new
		// sessions until old ones end, and queue the uploads of open ones
		// behind them; a connection more, opened one at a time, carries
		// them, so the connection count follows the real load (the tcp
		// transport opens one per session). Burrow's server allows
		// DefaultMaxStreams streams, so this takes thousands of sessions.
		overflow := best == nil && taking > 0 && atLimit == taking && d.dialing == 0
		if best != nil {
			// Past streamsPerConn sessions the next connection is dialed
			// beside this one (spread), which takes the session meanwhile:
			// no caller waits for a handshake while a connection can carry
			// its session now.
			spread := best.streams >= streamsPerConn && !full && d.dialing == 0
			best.streams++
			best.owed += need
			if (spread || budget > 0 && fresh+d.dialing < maxConns-1 && !full) && !time.Now().Before(d.retryAt) {
				d.dialAhead() // warm up the next connection before this one is spent
			}
			d.mu.Unlock()
			return best, nil
		}
		if !full || overflow {
			d.dialing++
			start := time.Now()
			d.mu.Unlock()
			pc, err := d.dial(ctx, &start)
			d.mu.Lock()
			d.dialing--
			if err != nil {
				d.refused(ctx, err, len(d.conns)+d.closing+d.dialing-d.pacing, d.heardLocked(start))
				d.broadcastLocked()
				d.mu.Unlock()
				return nil, err
			}
			if d.closed {
				d.mu.Unlock()
				pc.cc.Close()
				return nil, net.ErrClosed
			}
			d.addLocked(pc)
			pc.streams++
			pc.owed += need
			d.broadcastLocked()
			d.mu.Unlock()
			return pc, nil
		}
		ch := d.changed
		d.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// Background dials that fail wait from spreadBackoff, doubling, up to
// maxSpreadBackoff, before the next; one that succeeds resets the wait.
const (
	spreadBackoff    = time.Second
	maxSpreadBackoff = 30 * time.Second
)

// dialAhead dials a connection in the background for the pool; mu must be
// held.
func (d *Dialer) dialAhead() {
	d.dialing++
	start := time.Now()
	d.wg.Go(func() {
		pc, err := d.dial(d.ctx, &start)
		d.mu.Lock()
		defer d.mu.Unlock()
		d.dialing--
		if err == nil {
			d.retryAt, d.retryWait = time.Time{}, 0
			d.addLocked(pc)
		} else {
			d.refused(d.ctx, err, len(d.conns)+d.closing+d.dialing-d.pacing, d.heardLocked(start))
			d.retryWait = min(max(2*d.retryWait, spreadBackoff), maxSpreadBackoff)
			d.retryAt = time.Now().Add(d.retryWait)
			d.log.Debug("xhttp: background dial failed", "err", err, "retry_in", d.retryWait)
		}
		d.broadcastLocked()
	})
}

func (d *Dialer) addLocked(pc *pconn) {
	if d.closed {
		go pc.cc.Close()
		return
	}
	d.conns = append(d.conns, pc)
	if d.cfg.Limits != nil {
		d.wg.Go(func() { d.watchStall(pc) })
	}
	if n := int64(len(d.conns)); n > d.maxLive.Load() {
		d.maxLive.Store(n)
	}
}

// release ends one request on pc; spent is set when the request found the
// connection at its budget.
func (d *Dialer) release(pc *pconn, need int64, spent bool) {
	d.mu.Lock()
	pc.streams--
	pc.owed -= need
	if spent {
		pc.retireLocked()
	}
	d.gcLocked()
	d.broadcastLocked()
	d.mu.Unlock()
}

// kill retires a connection that failed.
func (d *Dialer) kill(pc *pconn) {
	pc.cc.Close()
	d.mu.Lock()
	pc.retireLocked()
	d.broadcastLocked()
	d.mu.Unlock()
}

// pingTimeout bounds the PING round trip that opens every connection.
const pingTimeout = 10 * time.Second

// dial opens one connection and starts HTTP/2 on it. It first waits for
// the pacer (pace.go), then sets *started to when the dial itself began: a
// refusal is judged by what the pool heard during the dial, not the wait.
func (d *Dialer) dial(ctx context.Context, started *time.Time) (*pconn, error) {
	if err := d.pace(ctx, d.budgetNow()); err != nil {
		return nil, err
	}
	*started = time.Now()
	conn, rx, err := d.cfg.Dial(ctx)
	if err != nil {
		return nil, err
	}
	d.dialed.Add(1)
	if rx == nil {
		cr := &countingReader{Conn: conn}
		conn, rx = cr, cr.n.Load
	}
	hs, budget := rx(), d.budgetNow()
	d.lastHS.Store(hs)
	if budget > 0 && budget-hs-hsReserve < minRoom+minData {
		// Failing would fail every dial while the budget holds; a
		// connection that does not rotate may freeze, and its transfers
		// then resume on another.
		if !d.warnedSmall.Swap(true) {
			d.log.Warn("xhttp: the budget leaves no room after the handshake; connections do not rotate",
				"budget", budget, "handshake", hs)
		}
		budget = 0
	}
	pinging := newPingConn(newFinConn(conn), rx)
	pinging.poolHeard = &d.heard
	cc, err := d.h2.NewClientConn(context.WithValue(ctx, handoverKey{}, net.Conn(pinging)), "http", handoverAddr)
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("xhttp: start HTTP/2: %w", err)
	}
	// One PING round trip before the first request: the connection then opens with small
	// flights both ways (preface, SETTINGS, PING and their answers) whatever the timing,
	// so the first request and its answer never sit where a TLS handshake inside TLS
	// would (client hello, server flight, client Finished: the first flights after the
	// outer handshake), the shape censors look for. The server's own wait for our SETTINGS
	// acknowledgement (hub.go, greet) covers only the first answer, and only while the
	// acknowledgement does not travel with the request. pingConn makes the round trip.
	pctx, cancel := context.WithTimeout(ctx, pingTimeout)
	pinged := time.Now()
	err = pinging.wait(pctx)
	rtt := time.Since(pinged)
	cancel()
	if err != nil {
		cc.Close()
		conn.Close()
		return nil, fmt.Errorf("xhttp: first ping: %w", err)
	}
	// The server's SETTINGS came before its PING answer, and nothing is in flight yet.
	limit := cc.Available()
	if limit == 0 {
		cc.Close()
		conn.Close()
		return nil, errors.New("xhttp: the server takes no requests on a new connection")
	}
	return &pconn{cc: cc, conn: conn, rx: rx, hs: hs, budget: budget, rtt: rtt, gone: pinging.Gone(), wire: pinging, limit: limit}, nil
}

type countingReader struct {
	net.Conn
	n atomic.Int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.n.Add(int64(n))
	return n, err
}

// CloseWrite half-closes the connection under the counter (see finConn).
func (c *countingReader) CloseWrite() error {
	if !halfClose(c.Conn) {
		return errors.New("xhttp: the connection cannot be half-closed")
	}
	return nil
}

// request builds a request with a browser's fetch() headers and padding.
func (d *Dialer) request(ctx context.Context, method, path string, pc *pconn, body io.Reader) *http.Request {
	u := "https://" + d.cfg.Host + path
	req, _ := http.NewRequestWithContext(ctx, method, u, body)
	h := req.Header
	fetchHeaders(h)
	h.Set("Referer", "https://"+d.cfg.Host+path+"?x_padding="+padding(randBetween(100, 1000)))
	if pc.budget > 0 {
		h.Set("X-Budget", strconv.FormatInt(pc.budget-pc.hs-hsReserve, 10))
	}
	return req
}

// chromeMajor is a Chrome version close to today's (a release about every
// four weeks since 144 in January 2026).
var chromeMajor = strconv.Itoa(144 + max(0, int(time.Since(time.Date(2026, 1, 13, 0, 0, 0, 0, time.UTC))/(28*24*time.Hour))))

// fetchHeaderValues is what Chrome sends with fetch() to its own origin.
// Every request shares these slices (each of capacity 1, so an append
// copies): a download request lives as long as its session, and HTTP/2
// keeps it, headers and all, until then.
var fetchHeaderValues = map[string][]string{
	"Sec-Ch-Ua":          {`"Not(A:Brand";v="8", "Chromium";v="` + chromeMajor + `", "Google Chrome";v="` + chromeMajor + `"`},
	"Sec-Ch-Ua-Mobile":   {"?0"},
	"Sec-Ch-Ua-Platform": {`"Windows"`},
	"User-Agent":         {"Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/" + chromeMajor + ".0.0.0 Safari/537.36"},
	"Accept":             {"*/*"},
	"Accept-Language":    {"en-US,en;q=0.9"},
	"Accept-Encoding":    {"gzip, deflate, br, zstd"},
	"Sec-Fetch-Site":     {"same-origin"},
	"Sec-Fetch-Mode":     {"cors"},
	"Sec-Fetch-Dest":     {"empty"},
	"Priority":           {"u=1, i"},
	"Cache-Control":      {"no-cache"},
	"Pragma":             {"no-cache"},
}

// fetchHeaders sets what Chrome sends with fetch() to its own origin.
func fetchHeaders(h http.Header) {
	for k, v := range fetchHeaderValues {
		h[k] = v
	}
}
