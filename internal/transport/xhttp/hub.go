package xhttp

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"math"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// Preface is the HTTP/2 client connection preface; a connection whose
// first bytes are these speaks XHTTP.
const Preface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

// HubConfig configures a Hub. The zero value of each field but Handle works.
type HubConfig struct {
	// Handle is called in its own goroutine for every new session, with
	// the session as a net.Conn (it implements CloseWrite). It owns the
	// conn and must close it. Required.
	Handle func(ctx context.Context, c net.Conn)
	// ResumeTimeout is how long a session lives with no download request
	// attached (also before the first one). Default 30s, as Xray.
	ResumeTimeout time.Duration
	// MaxStreams is the SETTINGS_MAX_CONCURRENT_STREAMS the server
	// advertises on each connection. Default DefaultMaxStreams.
	MaxStreams uint32
	// Logger receives debug messages; nil discards.
	Logger *slog.Logger
}

// DefaultMaxStreams is the hub's default stream limit per connection.
// Every open session holds a stream (its download), so Go's HTTP/2
// default of 250 let three connections, a Burrow client's usual pool,
// carry only 750 sessions. Xray clients open few streams per connection
// and are not affected; browser-facing servers allow 100 to 1000; and
// only a client that passed REALITY authentication ever sees the value.
const DefaultMaxStreams = 1000

// Hub is the server side: it serves XHTTP on any number of connections
// and keeps the sessions, which outlive the connections that carried
// them.
type Hub struct {
	cfg HubConfig
	ctx context.Context
	// srv speaks HTTP/2 with prior knowledge on the connections given to
	// ServeConn, each through its own connListener.
	srv *http.Server

	mu       sync.Mutex
	sessions map[string]*session // guarded by mu
	closed   bool                // guarded by mu: Close began; no new session (wg.Add) after it
	wg       sync.WaitGroup      // Handle goroutines
}

// NewHub returns a hub whose sessions end when ctx ends.
func NewHub(ctx context.Context, cfg HubConfig) *Hub {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.MaxStreams == 0 {
		cfg.MaxStreams = DefaultMaxStreams
	}
	h := &Hub{cfg: cfg, ctx: ctx, sessions: make(map[string]*session)}
	var protocols http.Protocols
	protocols.SetUnencryptedHTTP2(true) // HTTP/2 with prior knowledge, nothing else
	h.srv = &http.Server{
		Handler:     http.HandlerFunc(h.serveHTTP),
		Protocols:   &protocols,
		IdleTimeout: 5 * time.Minute,
		HTTP2: &http.HTTP2Config{
			MaxConcurrentStreams: int(min(cfg.MaxStreams, math.MaxInt32)),
			MaxReadFrameSize:     1 << 20,
		},
		BaseContext: func(l net.Listener) context.Context { return l.(*connListener).ctx },
		ConnContext: func(ctx context.Context, c net.Conn) context.Context {
			return context.WithValue(ctx, connStateKey{}, c.(*countingConn).st)
		},
		ConnState: func(c net.Conn, s http.ConnState) {
			if s == http.StateClosed {
				close(c.(*countingConn).served)
			}
		},
		ErrorLog: slog.NewLogLogger(cfg.Logger.Handler(), slog.LevelDebug),
	}
	return h
}

func (h *Hub) resumeTimeout() time.Duration {
	if h.cfg.ResumeTimeout > 0 {
		return h.cfg.ResumeTimeout
	}
	return 30 * time.Second
}

// Close ends every session and waits for the Handle calls to return.
func (h *Hub) Close() {
	h.mu.Lock()
	h.closed = true
	all := make([]*session, 0, len(h.sessions))
	for _, s := range h.sessions {
		all = append(all, s)
	}
	h.mu.Unlock()
	for _, s := range all {
		s.close()
	}
	h.wg.Wait()
}

// errHubClosed: a request for a new session after Close.
var errHubClosed = errors.New("xhttp: hub closed")

// Sessions returns the number of live sessions.
func (h *Hub) Sessions() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.sessions)
}

// ConnOptions describe one connection given to ServeConn.
type ConnOptions struct {
	// SawPreface: the caller already read the 24-byte Preface from c.
	SawPreface bool
	// TLS: c is a TLS conn, so each write costs record overhead on the
	// wire; used to keep a budgeted connection under its budget.
	TLS bool
}

// connState is per connection: bytes written (estimated on the wire) and
// the budget the client declared.
type connState struct {
	written atomic.Int64
	budget  atomic.Int64 // 0 = none
	streams atomic.Int64 // download responses open
	// inflight is DATA handed to HTTP/2 but maybe not yet written; each
	// write to the connection pays it off. Writes are asynchronous, so
	// written alone lags what is committed.
	inflight atomic.Int64
	tls      bool

	// The client's SETTINGS acknowledgement: the first response on a
	// connection waits for it (see greet).
	frames frameScanner  // touched only by the connection's reader
	acked  chan struct{} // closed when the client acknowledged our SETTINGS
	once   sync.Once
}

// frameScanner follows HTTP/2 frame headers in the client's byte stream.
type frameScanner struct {
	skip int64 // bytes of the preface or of a frame payload still to pass
	hdr  [9]byte
	nhdr int
}

// feed reports whether p completed a SETTINGS frame with the ACK flag.
func (f *frameScanner) feed(p []byte) (ack bool) {
	for len(p) > 0 {
		if f.skip > 0 {
			k := min(f.skip, int64(len(p)))
			f.skip -= k
			p = p[k:]
			continue
		}
		k := copy(f.hdr[f.nhdr:], p)
		f.nhdr += k
		p = p[k:]
		if f.nhdr < 9 {
			return ack
		}
		f.nhdr = 0
		f.skip = int64(f.hdr[0])<<16 | int64(f.hdr[1])<<8 | int64(f.hdr[2])
		if f.hdr[3] == 0x4 && f.hdr[4]&0x1 != 0 {
			ack = true
		}
	}
	return ack
}

// greetWait bounds how long a first response waits for the client's
// SETTINGS acknowledgement.
const greetWait = 500 * time.Millisecond

// greet holds the first response on a connection until the client has
// acknowledged the server's SETTINGS (about one round trip). Without it
// the connection opens with the client's request flight, a large server
// answer and then the client's 26-byte acknowledgement: the record-size
// shape of a TLS handshake carried inside TLS (ClientHello, server flight,
// Finished), which censors look for. With it the server's first answer is
// its small SETTINGS frame alone.
func (st *connState) greet(ctx context.Context) {
	t := time.NewTimer(greetWait)
	defer t.Stop()
	select {
	case <-st.acked:
	case <-t.C:
	case <-ctx.Done():
	}
}

type connStateKey struct{}

// countingConn counts what HTTP/2 writes to the connection.
type countingConn struct {
	net.Conn
	st *connState
	// replay is the preface the caller already read from Conn, given
	// again to the first reads (net/http checks it itself). Touched only
	// by the connection's reader.
	replay []byte
	served chan struct{} // closed when net/http is done with the connection
}

func (c *countingConn) Read(p []byte) (n int, err error) {
	if len(c.replay) > 0 {
		n = copy(p, c.replay)
		c.replay = c.replay[n:]
	} else {
		n, err = c.Conn.Read(p)
	}
	if n > 0 && c.st.frames.feed(p[:n]) {
		c.st.once.Do(func() { close(c.st.acked) })
	}
	return n, err
}

func (c *countingConn) Write(p []byte) (int, error) {
	n, err := c.Conn.Write(p)
	w := int64(n)
	if c.st.tls && n > 0 {
		w += int64(recordOverhead * ((n + recordPlain - 1) / recordPlain))
	}
	c.st.written.Add(w)
	for {
		f := c.st.inflight.Load()
		if f == 0 || c.st.inflight.CompareAndSwap(f, max(0, f-w)) {
			break
		}
	}
	return n, err
}

// ServeConn serves HTTP/2 on c until c is no longer readable. Requests'
// contexts derive from ctx.
func (h *Hub) ServeConn(ctx context.Context, c net.Conn, o ConnOptions) {
	st := &connState{tls: o.TLS, acked: make(chan struct{})}
	st.frames.skip = int64(len(Preface))
	cc := &countingConn{Conn: c, st: st, served: make(chan struct{})}
	if o.SawPreface {
		cc.replay = []byte(Preface)
	}
	h.srv.Serve(&connListener{ctx: ctx, c: cc, closed: make(chan struct{})})
}

// connListener hands the hub's http.Server one connection; its Serve
// returns once net/http is done with that connection (the ConnState hook
// reports it closed), as a serve loop on the connection would.
type connListener struct {
	ctx       context.Context // the base of the connection's contexts
	c         *countingConn
	taken     bool // touched only by Serve's goroutine
	closed    chan struct{}
	closeOnce sync.Once
}

func (l *connListener) Accept() (net.Conn, error) {
	if !l.taken {
		l.taken = true
		return l.c, nil
	}
	select {
	case <-l.c.served:
	case <-l.closed:
	}
	return nil, net.ErrClosed
}

// Close ends a pending Accept; the connection is not touched.
func (l *connListener) Close() error {
	l.closeOnce.Do(func() { close(l.closed) })
	return nil
}

func (l *connListener) Addr() net.Addr { return l.c.LocalAddr() }

func (h *Hub) remove(s *session) {
	h.mu.Lock()
	if h.sessions[s.id] == s {
		delete(h.sessions, s.id)
	}
	h.mu.Unlock()
}

// session returns the session sid, creating and starting it if new.
func (h *Hub) session(sid string, r *http.Request) (*session, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if s, ok := h.sessions[sid]; ok {
		return s, nil
	}
	if h.ctx.Err() != nil {
		return nil, h.ctx.Err()
	}
	if h.closed {
		return nil, errHubClosed
	}
	s := h.newSessionLocked(sid, r)
	h.sessions[sid] = s
	s.mu.Lock()
	s.armIdleLocked()
	s.mu.Unlock()
	return s, nil
}

func (h *Hub) newSessionLocked(sid string, r *http.Request) *session {
	s := &session{hub: h, id: sid, changed: make(chan struct{})}
	s.local, _ = r.Context().Value(http.LocalAddrContextKey).(net.Addr)
	if a, err := net.ResolveTCPAddr("tcp", r.RemoteAddr); err == nil {
		s.remote = a
	} else {
		s.remote = &net.TCPAddr{IP: net.IPv4zero}
	}
	h.wg.Add(1)
	go func() {
		defer h.wg.Done()
		stop := context.AfterFunc(h.ctx, s.close)
		defer stop()
		h.cfg.Handle(h.ctx, &serverConn{s: s})
	}()
	return s
}

func (h *Hub) serveHTTP(w http.ResponseWriter, r *http.Request) {
	st, _ := r.Context().Value(connStateKey{}).(*connState)
	if st == nil {
		st = &connState{acked: make(chan struct{})}
		close(st.acked)
	}
	st.greet(r.Context())
	burrow := r.Header.Get("X-Budget") != "" || r.Header.Get("Range") != ""
	if v := r.Header.Get("X-Budget"); v != "" {
		if b, err := strconv.ParseInt(v, 10, 64); err == nil && b > 0 {
			st.budget.CompareAndSwap(0, b)
		}
	}
	hdr := w.Header()
	if o := r.Header.Get("Origin"); o != "" {
		hdr.Set("Access-Control-Allow-Origin", o)
	} else {
		hdr.Set("Access-Control-Allow-Origin", "*")
	}
	if burrow {
		hdr.Set("X-Padding", padding(randBetween(minPadding, 64)))
	} else {
		hdr.Set("X-Padding", padding(randBetween(100, 1000)))
	}
	if r.Method == http.MethodOptions {
		w.WriteHeader(http.StatusOK)
		return
	}
	if !paddingOK(r) {
		w.WriteHeader(http.StatusBadRequest)
		return
	}
	sid, seq, hasSeq, err := parsePath(r.URL.Path)
	if err != nil {
		w.WriteHeader(http.StatusBadRequest)
		return
	}
	switch {
	case sid == "" && r.Method == http.MethodPost:
		h.serveStreamOne(w, r)
	case sid == "":
		w.WriteHeader(http.StatusNotFound)
	case r.Method == http.MethodGet && !hasSeq:
		s, err := h.session(sid, r)
		if err != nil {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		h.serveDownload(w, r, s, st)
	case hasSeq:
		h.servePacket(w, r, sid, seq)
	default:
		h.serveStreamUp(w, r, sid)
	}
}

func downloadHeaders(w http.ResponseWriter) {
	w.Header().Set("X-Accel-Buffering", "no")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Content-Type", "text/event-stream")
}

// serveDownload streams the session's download from the requested offset
// (Burrow) or from where it is (Xray).
func (h *Hub) serveDownload(w http.ResponseWriter, r *http.Request, s *session, st *connState) {
	start, end, ranged, err := parseRange(r.Header.Get("Range"))
	if err != nil {
		w.WriteHeader(http.StatusBadRequest)
		return
	}
	if ranged {
		if err := s.ack(start); err != nil {
			h.cfg.Logger.Debug("xhttp: resume refused", "err", err)
			w.WriteHeader(http.StatusConflict)
			return
		}
		if total, done := s.finished(); done && start >= total && s.wasReset() {
			w.Header().Set("Content-Range", "bytes */"+strconv.FormatInt(total, 10))
			w.Header().Set("X-Close", "reset")
			w.WriteHeader(http.StatusGone)
			return
		}
		if total, done := s.finished(); done && start >= total {
			// The session stays until the handler and the client are done
			// (or ResumeTimeout): an answer lost on a dying connection is
			// asked for again.
			w.Header().Set("Content-Range", "bytes */"+strconv.FormatInt(total, 10))
			w.WriteHeader(http.StatusRequestedRangeNotSatisfiable)
			return
		}
		end = min(end, start+RetainMax-1)
	}
	gen := s.attach(ranged)
	defer s.detach(gen)
	downloadHeaders(w)
	if ranged {
		w.Header().Set("Content-Range", "bytes "+strconv.FormatInt(start, 10)+"-"+strconv.FormatInt(end, 10)+"/*")
		w.WriteHeader(http.StatusPartialContent)
	} else {
		s.mu.Lock()
		start, end = s.base, 1<<62
		s.mu.Unlock()
		w.WriteHeader(http.StatusOK)
	}
	rc := http.NewResponseController(w)
	if rc.Flush() != nil {
		return
	}
	st.streams.Add(1)
	defer st.streams.Add(-1)
	off := start
	for off <= end {
		// Writes of varying size; small ones while a budget is counted,
		// and while the connection is young (youngWriteMax).
		size := randBetween(16<<10, 64<<10)
		if st.budget.Load() > 0 {
			size = randBetween(4<<10, 16<<10)
		}
		if st.written.Load() < youngConn {
			size = min(size, randBetween(youngWriteMin, youngWriteMax))
		}
		max := int(min(end-off+1, int64(size)))
		if room, ok := st.room(); ok {
			if room <= 0 {
				return // the client continues on a fresh connection
			}
			max = min(max, room)
		}
		buf, k, eof, err := s.next(r.Context(), gen, off, max)
		if err != nil || eof {
			return
		}
		// Other streams may have written while this one waited.
		if room, ok := st.room(); ok {
			if room <= 0 {
				chunkPool.Put(buf)
				return
			}
			k = min(k, room)
			st.inflight.Add(dataCost(int64(k), st.tls))
		}
		n, err := w.Write(buf[:k])
		releaseChunk(buf, err)
		off += int64(n)
		if err != nil || rc.Flush() != nil {
			return
		}
		if !ranged {
			s.ack(off)
		}
	}
}

// room returns how many DATA bytes one more write may carry on a
// budgeted connection; ok is false without a budget.
func (st *connState) room() (n int, ok bool) {
	b := st.budget.Load()
	if b == 0 {
		return 0, false
	}
	// Each open download still ends with an END_STREAM frame.
	return fitData(b-st.written.Load()-st.inflight.Load()-budgetTail-40*st.streams.Load(), st.tls), true
}

// dataCost is what n DATA bytes cost on the wire.
func dataCost(n int64, tls bool) int64 {
	c := n + 9*((n+16383)/16384)
	if tls {
		c += recordOverhead * ((c + recordPlain - 1) / recordPlain)
	}
	return c
}

// fitData returns the most DATA bytes that fit in room bytes on the wire.
func fitData(room int64, tls bool) int {
	n := room
	for n > 0 && dataCost(n, tls) > room {
		n -= dataCost(n, tls) - room
	}
	return int(max(n, 0))
}

// servePacket takes one packet-up POST.
func (h *Hub) servePacket(w http.ResponseWriter, r *http.Request, sid string, seq uint64) {
	body, err := io.ReadAll(io.LimitReader(r.Body, MaxPostBytes+1))
	if err != nil {
		w.WriteHeader(http.StatusBadRequest)
		return
	}
	if len(body) > MaxPostBytes {
		w.WriteHeader(http.StatusRequestEntityTooLarge)
		return
	}
	p := packet{data: body}
	switch c := r.Header.Get("X-Close"); c {
	case "":
	case closeWrite, closeAll:
		p.close = c
	default:
		w.WriteHeader(http.StatusBadRequest)
		return
	}
	s, err := h.session(sid, r)
	if err != nil {
		w.WriteHeader(http.StatusServiceUnavailable)
		return
	}
	if err := s.push(r.Context(), seq, p); err != nil {
		if errors.Is(err, net.ErrClosed) {
			w.WriteHeader(http.StatusGone)
		} else {
			w.WriteHeader(http.StatusInternalServerError)
		}
		return
	}
	if len(body) == 0 {
		w.Header().Set("Cache-Control", "no-store")
	}
	w.WriteHeader(http.StatusOK)
}

// serveStreamUp takes a stream-up POST: its body is the whole upload.
func (h *Hub) serveStreamUp(w http.ResponseWriter, r *http.Request, sid string) {
	s, err := h.session(sid, r)
	if err != nil {
		w.WriteHeader(http.StatusServiceUnavailable)
		return
	}
	s.mu.Lock()
	dup := s.streamUp
	s.streamUp = true
	s.mu.Unlock()
	if dup {
		w.WriteHeader(http.StatusConflict)
		return
	}
	w.Header().Set("X-Accel-Buffering", "no")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusOK)
	http.NewResponseController(w).Flush()
	// Closing the session ends the body's Read below; no goroutine waits
	// for it (see session.onClose).
	s.setOnClose(func() { r.Body.Close() })
	defer s.setOnClose(nil)
	h.copyUpload(r, s)
}

// copyUpload moves a request body into the session's upload; the end of
// the body is the end of the upload.
func (h *Hub) copyUpload(r *http.Request, s *session) {
	var rb readBuf
	defer rb.release()
	for {
		buf := rb.get()
		n, err := r.Body.Read(buf)
		if n > 0 {
			if s.pushStream(r.Context(), buf[:n]) != nil {
				return
			}
		}
		rb.adapt(n)
		if err == io.EOF {
			s.endUpload()
			return
		}
		if err != nil {
			s.close()
			return
		}
	}
}

// serveStreamOne carries a whole session on one POST.
func (h *Hub) serveStreamOne(w http.ResponseWriter, r *http.Request) {
	h.mu.Lock()
	if h.ctx.Err() != nil {
		h.mu.Unlock()
		w.WriteHeader(http.StatusServiceUnavailable)
		return
	}
	s := h.newSessionLocked("", r)
	h.mu.Unlock()
	defer s.close()
	gen := s.attach(false)
	defer s.detach(gen)
	downloadHeaders(w)
	w.WriteHeader(http.StatusOK)
	rc := http.NewResponseController(w)
	if rc.Flush() != nil {
		return
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		h.copyUpload(r, s)
	}()
	defer func() { s.close(); r.Body.Close(); <-done }()
	var off int64
	for {
		buf, k, eof, err := s.next(r.Context(), gen, off, 32<<10)
		if err != nil || eof {
			return
		}
		n, err := w.Write(buf[:k])
		releaseChunk(buf, err)
		off += int64(n)
		if err != nil || rc.Flush() != nil {
			return
		}
		s.ack(off)
	}
}
