package xhttp

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"sync"
	"time"
)

const (
	dbufMax      = 256 << 10 // downloaded bytes waiting for Read
	ubufMax      = 1 << 20   // written bytes waiting for upload
	maxPostChunk = 256 << 10
	maxFailures  = 6                // consecutive failed requests before a session gives up
	maxStalls    = 30               // consecutive downloads cut before any byte arrived
	retryFor     = 20 * time.Second // how long a session keeps asking for its download again
)

// clientConn is one session as the client's user sees it.
type clientConn struct {
	d             *Dialer
	sid           string
	ctx           context.Context // the download's; Close cancels it
	cancel        context.CancelFunc
	local, remote net.Addr
	ranged        bool // the server speaks Burrow's resumable downloads; set before goroutines start

	mu       sync.Mutex
	changed  chan struct{} // guarded by mu
	dbuf     byteQueue     // guarded by mu
	off      int64         // download bytes received; guarded by mu
	dErr     error         // download ended: io.EOF or why; guarded by mu
	ubuf     []byte        // guarded by mu
	uClose   string        // close kind to send after ubuf; guarded by mu
	uDone    bool          // the upload ended; guarded by mu
	uRunning bool          // an uploadLoop runs (packet-up); guarded by mu
	uSeq     uint64        // SEQ of the next packet-up POST; owned by the running uploadLoop
	uErr     error         // guarded by mu
	closed   bool          // guarded by mu
	rdl, wdl time.Time     // guarded by mu

	streamW *io.PipeWriter // stream-up upload; nil in packet-up

	// The current download request: its context, and funcs that
	// unregister it from its connection (and end it). Both funcs hold the
	// connection, so they are cleared once used: a session that kept one
	// would keep a connection closed long ago, buffers and all.
	moved      context.Context // guarded by mu
	unpark     func()          // unregisters and ends the request; guarded by mu
	unparkOnly func()          // unregisters it only; guarded by mu
}

// unparkNow unregisters the current download request from its connection.
func (c *clientConn) unparkNow() {
	c.mu.Lock()
	f := c.unpark
	c.unpark, c.unparkOnly = nil, nil
	c.mu.Unlock()
	if f != nil {
		f()
	}
}

// ErrReset is returned by a session's Read when the server ended it as
// reset (its handler closed after SetLinger(0)), after every byte sent
// before.
var ErrReset = errors.New("xhttp: the server reset the session")

// Dial opens a session: it sends the download request and returns once
// the server has answered it.
func (d *Dialer) Dial(ctx context.Context) (net.Conn, error) {
	c := &clientConn{d: d, sid: newSessionID(), changed: make(chan struct{})}
	c.ctx, c.cancel = context.WithCancel(d.ctx)
	resp, pc, err := c.get(ctx, 0, false)
	if err != nil {
		c.cancel()
		return nil, err
	}
	c.local, c.remote = pc.conn.LocalAddr(), pc.conn.RemoteAddr()
	switch resp.StatusCode {
	case http.StatusPartialContent:
		c.ranged = true
	case http.StatusOK:
		// An Xray server: its download cannot move to another connection.
		c.mu.Lock()
		c.unparkOnly()
		c.unparkOnly = nil
		c.mu.Unlock()
		if d.budgetNow() > 0 && !d.warned.Swap(true) {
			d.log.Warn("xhttp: the server does not resume downloads (not Burrow?); streaming without rotation")
		}
	default:
		resp.Body.Close()
		d.release(pc, getCost, false)
		c.cancel()
		return nil, fmt.Errorf("xhttp: server answered the download request with %s", resp.Status)
	}
	if d.cfg.Mode == ModeStreamUp {
		if err := c.startStreamUp(ctx); err != nil {
			resp.Body.Close()
			d.release(pc, getCost, false)
			c.cancel()
			return nil, err
		}
	}
	d.wg.Add(1)
	go c.downloadLoop(resp, pc)
	return c, nil
}

func (c *clientConn) broadcastLocked() {
	close(c.changed)
	c.changed = make(chan struct{})
}

func (c *clientConn) waitLocked(ctx context.Context, dl time.Time) error {
	ch := c.changed
	c.mu.Unlock()
	defer c.mu.Lock()
	var tc <-chan time.Time
	if !dl.IsZero() {
		d := time.Until(dl)
		if d <= 0 {
			return os.ErrDeadlineExceeded
		}
		t := time.NewTimer(d)
		defer t.Stop()
		tc = t.C
	}
	select {
	case <-ch:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-tc:
		return os.ErrDeadlineExceeded
	}
}

// get sends the download request for bytes from off, retrying on other
// connections when one fails. dialCtx bounds dialing.
func (c *clientConn) get(dialCtx context.Context, off int64, persist bool) (*http.Response, *pconn, error) {
	var last error
	start := time.Now()
	for attempt := 0; attempt < maxFailures || persist && time.Since(start) < retryFor; attempt++ {
		pc, err := c.d.acquire(dialCtx, getCost)
		if err != nil {
			if !persist || c.ctx.Err() != nil || dialCtx.Err() != nil {
				return nil, nil, err
			}
			last = err
			backoff(c.ctx, attempt)
			continue
		}
		rctx, cancel := context.WithCancel(c.ctx)
		unpark := c.d.park(pc, cancel)
		c.mu.Lock()
		c.moved = rctx
		c.unpark = func() { unpark(); cancel() }
		c.unparkOnly = unpark
		c.mu.Unlock()
		req := c.d.request(rctx, http.MethodGet, c.d.cfg.Path+c.sid, pc, nil)
		n := int64(maxRange)
		if pc.budget > 0 {
			n = min(n, pc.budget)
		}
		req.Header.Set("Range", "bytes="+strconv.FormatInt(off, 10)+"-"+strconv.FormatInt(off+n-1, 10))
		resp, err := c.d.roundTrip(pc, req)
		if err == nil {
			return resp, pc, nil
		}
		c.unparkNow()
		if c.ctx.Err() != nil {
			c.d.release(pc, getCost, false)
			return nil, nil, net.ErrClosed
		}
		if rctx.Err() != nil { // moved off a spent connection
			c.d.release(pc, getCost, true)
			attempt--
			continue
		}
		c.d.release(pc, getCost, true)
		c.d.kill(pc)
		last = err
		backoff(c.ctx, attempt)
	}
	return nil, nil, fmt.Errorf("xhttp: download request: %w", last)
}

func backoff(ctx context.Context, attempt int) {
	if attempt == 0 {
		return
	}
	t := time.NewTimer(min(time.Duration(attempt*attempt)*50*time.Millisecond, time.Second))
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}

// downloadLoop reads download responses into dbuf, asking again from
// where it stopped (Burrow server) until the stream ends.
func (c *clientConn) downloadLoop(resp *http.Response, pc *pconn) {
	defer c.d.wg.Done()
	fails := 0
	for {
		var err error
		switch {
		case resp.StatusCode == http.StatusRequestedRangeNotSatisfiable && c.ranged:
			resp.Body.Close()
			c.d.release(pc, getCost, false)
			c.endDownload(io.EOF)
			return
		case resp.StatusCode == http.StatusGone && c.ranged && resp.Header.Get("X-Close") == "reset":
			resp.Body.Close()
			c.d.release(pc, getCost, false)
			c.endDownload(ErrReset)
			return
		case resp.StatusCode == http.StatusPartialContent && c.ranged,
			resp.StatusCode == http.StatusOK && !c.ranged:
		default:
			resp.Body.Close()
			c.d.release(pc, getCost, false)
			c.endDownload(fmt.Errorf("xhttp: download: server answered %s", resp.Status))
			return
		}
		asked := int64(maxRange)
		if pc.budget > 0 {
			asked = min(asked, pc.budget)
		}
		got, err := c.readBody(resp.Body)
		resp.Body.Close()
		c.mu.Lock()
		moved := c.moved != nil && c.moved.Err() != nil
		closed := c.closed
		c.mu.Unlock()
		c.unparkNow()
		if err != nil && (closed || c.ctx.Err() != nil) {
			// The session ended, not the connection: it goes on carrying
			// the other sessions' streams.
			c.d.release(pc, getCost, false)
			c.endDownload(net.ErrClosed)
			return
		}
		if !c.ranged {
			c.d.release(pc, getCost, false)
			if err == nil {
				err = io.EOF
			}
			c.endDownload(err)
			return
		}
		if err != nil && moved && c.ctx.Err() == nil {
			c.d.release(pc, getCost, true) // the connection was spent; go on elsewhere
		} else if err != nil {
			c.d.release(pc, getCost, true)
			c.d.kill(pc)
			if got == 0 {
				fails++
			} else {
				fails = 0
			}
			if fails >= maxStalls {
				c.endDownload(fmt.Errorf("xhttp: download: %w", err))
				return
			}
			backoff(c.ctx, fails)
		} else {
			short := got < asked
			spent := pc.budget > 0 && short && (got == 0 || c.d.leftNow(pc) < pc.budget/4)
			c.d.release(pc, getCost, spent)
		}
		c.mu.Lock()
		off := c.off
		c.mu.Unlock()
		resp, pc, err = c.get(c.ctx, off, true)
		if err != nil {
			c.endDownload(err)
			return
		}
	}
}

// readBody copies a response body into dbuf, waiting for room. An idle
// download waits here, holding only a small buffer (see readBuf).
func (c *clientConn) readBody(body io.Reader) (int64, error) {
	var got int64
	rb := readBuf{download: true}
	defer rb.release()
	for {
		c.mu.Lock()
		for c.dbuf.Len() >= dbufMax && !c.closed {
			c.waitLocked(c.ctx, time.Time{})
			if c.ctx.Err() != nil {
				break
			}
		}
		closed := c.closed
		c.mu.Unlock()
		if closed {
			return got, net.ErrClosed
		}
		buf := rb.get()
		n, err := body.Read(buf)
		if n > 0 {
			c.mu.Lock()
			c.dbuf.Write(buf[:n])
			c.off += int64(n)
			c.broadcastLocked()
			c.mu.Unlock()
			got += int64(n)
		}
		rb.adapt(n)
		if err == io.EOF {
			return got, nil
		}
		if err != nil {
			return got, err
		}
	}
}

func (c *clientConn) endDownload(err error) {
	c.mu.Lock()
	if c.dErr == nil {
		c.dErr = err
	}
	c.broadcastLocked()
	c.mu.Unlock()
}

// kickUploadLocked starts an uploadLoop for what Write, CloseWrite or
// Close just left to do, unless one runs. A session has no upload
// goroutine while it has nothing to send: most sessions are idle most of
// the time, and each goroutine costs its stack.
func (c *clientConn) kickUploadLocked() {
	if c.streamW != nil || c.uRunning || c.uDone {
		return
	}
	if c.d.ctx.Err() != nil { // the dialer is closed and no longer waits for goroutines
		c.uDone = true
		if c.uErr == nil {
			c.uErr = net.ErrClosed
		}
		return
	}
	c.uRunning = true
	c.d.wg.Add(1)
	go c.uploadLoop()
}

// uploadLoop sends written bytes as packet-up POSTs, one at a time, and
// the close marker (Burrow servers) after the last. It returns when there
// is nothing left to send; the next Write starts another.
func (c *clientConn) uploadLoop() {
	defer c.d.wg.Done()
	for {
		c.mu.Lock()
		if len(c.ubuf) == 0 && c.uClose == "" && !(c.closed && !c.ranged) {
			c.uRunning = false
			c.mu.Unlock()
			return
		}
		if c.closed && !c.ranged || len(c.ubuf) == 0 && c.uClose != "" && !c.ranged {
			c.uDone = true
			c.uRunning = false
			c.broadcastLocked()
			c.mu.Unlock()
			return
		}
		n := min(len(c.ubuf), randBetween(maxPostChunk/2, maxPostChunk))
		if c.d.budgetNow() > 0 {
			n = min(len(c.ubuf), randBetween(16<<10, 48<<10))
		}
		chunk := append([]byte(nil), c.ubuf[:n]...)
		marker := ""
		if n == len(c.ubuf) {
			marker = c.uClose
		}
		seq := c.uSeq
		c.uSeq++
		c.mu.Unlock()
		err := c.post(seq, chunk, marker)
		c.mu.Lock()
		c.ubuf = c.ubuf[n:]
		if len(c.ubuf) == 0 {
			c.ubuf = nil
		}
		if err != nil && c.uErr == nil {
			c.uErr = err
		}
		done := err != nil || marker != ""
		if done {
			c.uDone = true
			c.uRunning = false
		}
		c.broadcastLocked()
		c.mu.Unlock()
		if err != nil && marker == "" {
			c.Close()
		}
		if done {
			return
		}
	}
}

// post sends one packet-up POST, retrying on another connection.
func (c *clientConn) post(seq uint64, body []byte, marker string) error {
	var last error
	for attempt := 0; attempt < maxFailures; attempt++ {
		ctx, cancel := context.WithTimeout(c.d.ctx, 30*time.Second)
		err := c.postOnce(ctx, seq, body, marker)
		cancel()
		if err == nil {
			return nil
		}
		var se statusError
		if errors.As(err, &se) || c.d.ctx.Err() != nil {
			return err
		}
		last = err
		backoff(c.d.ctx, attempt+1)
	}
	return fmt.Errorf("xhttp: upload: %w", last)
}

type statusError struct{ status string }

func (e statusError) Error() string { return "xhttp: upload: server answered " + e.status }

func (c *clientConn) postOnce(ctx context.Context, seq uint64, body []byte, marker string) error {
	need := postCost(len(body))
	pc, err := c.d.acquire(ctx, need)
	if err != nil {
		return err
	}
	req := c.d.request(ctx, http.MethodPost, c.d.cfg.Path+c.sid+"/"+strconv.FormatUint(seq, 10), pc, bytes.NewReader(body))
	req.ContentLength = int64(len(body))
	if marker != "" {
		req.Header.Set("X-Close", marker)
	}
	resp, err := c.d.roundTrip(pc, req)
	if err != nil {
		c.d.release(pc, need, true)
		c.d.kill(pc)
		return err
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	c.d.release(pc, need, false)
	if resp.StatusCode != http.StatusOK {
		return statusError{resp.Status}
	}
	return nil
}

// startStreamUp opens the stream-up POST whose body is the upload.
func (c *clientConn) startStreamUp(ctx context.Context) error {
	pc, err := c.d.acquire(ctx, 0)
	if err != nil {
		return err
	}
	pr, pw := io.Pipe()
	c.streamW = pw
	req := c.d.request(c.ctx, http.MethodPost, c.d.cfg.Path+c.sid, pc, pr)
	req.Header.Set("Content-Type", "application/grpc")
	c.d.wg.Add(1)
	go func() {
		defer c.d.wg.Done()
		resp, err := pc.cc.RoundTrip(req)
		if err == nil {
			drain(resp.Body)
			resp.Body.Close()
		}
		pr.CloseWithError(net.ErrClosed)
		c.d.release(pc, 0, err != nil)
	}()
	return nil
}

// drain reads r to its end. The response to a stream-up POST stays open
// and empty for the session's life; a small buffer is all it needs
// (io.Discard would hold a pooled 8 KiB one all that time).
func drain(r io.Reader) {
	b := make([]byte, 64)
	for {
		if _, err := r.Read(b); err != nil {
			return
		}
	}
}

func (c *clientConn) Read(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if expired(c.rdl) {
		return 0, os.ErrDeadlineExceeded
	}
	for {
		if c.dbuf.Len() > 0 {
			n := c.dbuf.Read(p)
			c.broadcastLocked()
			return n, nil
		}
		if c.dErr != nil {
			return 0, c.dErr
		}
		if c.closed {
			return 0, net.ErrClosed
		}
		if err := c.waitLocked(context.Background(), c.rdl); err != nil {
			return 0, err
		}
	}
}

func (c *clientConn) Write(p []byte) (int, error) {
	if c.streamW != nil {
		return c.streamW.Write(p)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if expired(c.wdl) {
		return 0, os.ErrDeadlineExceeded
	}
	n := 0
	for n < len(p) {
		switch {
		case c.closed:
			return n, net.ErrClosed
		case c.uErr != nil:
			return n, c.uErr
		case c.uClose != "" || c.uDone:
			return n, errors.New("xhttp: write after CloseWrite")
		}
		if room := ubufMax - len(c.ubuf); room > 0 {
			k := min(room, len(p)-n)
			c.ubuf = append(c.ubuf, p[n:n+k]...)
			n += k
			c.kickUploadLocked()
			c.broadcastLocked()
			continue
		}
		if err := c.waitLocked(context.Background(), c.wdl); err != nil {
			return n, err
		}
	}
	return n, nil
}

// CloseWrite ends the upload after what was written; the download goes on.
func (c *clientConn) CloseWrite() error {
	if c.streamW != nil {
		return c.streamW.Close()
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.uClose == "" {
		c.uClose = closeWrite
		c.kickUploadLocked()
		c.broadcastLocked()
	}
	return nil
}

// Close ends the session. Bytes already written are still uploaded (to a
// Burrow server, followed by the close marker) in the background.
func (c *clientConn) Close() error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil
	}
	c.closed = true
	if c.uClose != closeWrite || !c.uDone {
		c.uClose = closeAll
	}
	if c.uDone {
		c.uClose = ""
	}
	c.kickUploadLocked()
	c.broadcastLocked()
	c.mu.Unlock()
	if c.streamW != nil {
		c.streamW.CloseWithError(net.ErrClosed)
	}
	c.cancel()
	return nil
}

func (c *clientConn) LocalAddr() net.Addr  { return c.local }
func (c *clientConn) RemoteAddr() net.Addr { return c.remote }

func (c *clientConn) SetDeadline(t time.Time) error {
	c.SetReadDeadline(t)
	return c.SetWriteDeadline(t)
}

func (c *clientConn) SetReadDeadline(t time.Time) error {
	c.mu.Lock()
	c.rdl = t
	c.broadcastLocked()
	c.mu.Unlock()
	return nil
}

func (c *clientConn) SetWriteDeadline(t time.Time) error {
	c.mu.Lock()
	c.wdl = t
	c.broadcastLocked()
	c.mu.Unlock()
	return nil
}
