package vless

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/net/nettest"
)

// TestConnConformance runs the x/net conformance suite over a client/server pair without a
// flow (framing of the first write and read included).
func TestConnConformance(t *testing.T) {
	pair := func(t *testing.T, c1, c2 net.Conn, flow string) (net.Conn, net.Conn, func(), error) {
		req := &Request{UUID: testUUID, Flow: flow, Command: CommandTCP, Dest: Addr{Host: "example.com", Port: 80}}
		cc := ClientConn(c1, req)
		// Flush the request header (not waited for: with Vision it would also carry the empty
		// padded block, which net.Pipe holds until the server's first Read).
		go cc.Write(nil)
		got, err := ReadRequest(c2)
		if err != nil {
			return nil, nil, nil, err
		}
		sc := ServerConn(c2, got)
		return cc, sc, func() { cc.Close(); sc.Close() }, nil
	}
	t.Run("no flow", func(t *testing.T) {
		nettest.TestConn(t, func() (net.Conn, net.Conn, func(), error) {
			a, b := net.Pipe()
			return pair(t, a, b, "")
		})
	})
	// Vision is not run through the whole suite. Vision needs an outer TLS conn, and a TLS
	// conn is broken for good by a Write that timed out (crypto/tls makes every write error
	// permanent: part of a record may have gone out). PastTimeout, FutureTimeout and
	// ConcurrentMethods time out writes and then expect the same conn to echo again, so they
	// wait for their one-minute watchdog over plain crypto/tls just as over Vision.
	// TestVisionConnContract checks the rest of that contract for Vision.
}

// visionBound bounds every wait in TestVisionConnContract: generous for a loaded CI
// machine, short enough that a hang fails fast.
const visionBound = 15 * time.Second

// visionPair returns a Vision client conn over outer TLS of the given kind, and a channel
// that yields the server conn once the server has read the request. The request header is
// not flushed: it goes out with the first Write, or 500 ms after a Read that came first.
func visionPair(t *testing.T, kind string) (*Conn, <-chan *Conn) {
	t.Helper()
	co, so := outerPair(t, kind, serverTLSConfig(t))
	cc := ClientConn(co, &Request{UUID: testUUID, Flow: FlowVision, Command: CommandTCP, Dest: Addr{Host: "example.com", Port: 80}}).(*Conn)
	srv := make(chan *Conn, 1)
	go func() {
		so.SetReadDeadline(time.Now().Add(visionBound))
		req, err := ReadRequest(so)
		if err != nil {
			so.Close()
			close(srv)
			return
		}
		so.SetReadDeadline(time.Time{})
		srv <- ServerConn(so, req).(*Conn)
	}()
	t.Cleanup(func() {
		// Bounded, so that a Close that blocks fails the test instead of hanging it;
		// closing the outer conn then unblocks whatever holds it.
		select {
		case <-visionCall(cc.Close):
		case <-time.After(visionBound):
			t.Errorf("Close still blocked after %v", visionBound)
		}
		co.Close()
	})
	return cc, srv
}

// visionEcho echoes on the server conn from srv until it ends.
func visionEcho(srv <-chan *Conn) {
	go func() {
		if sc := <-srv; sc != nil {
			io.Copy(sc, sc)
			sc.Close()
		}
	}()
}

// visionRoundtrip writes msg and reads it back from an echoing peer.
func visionRoundtrip(c net.Conn, msg []byte) error {
	c.SetDeadline(time.Now().Add(visionBound))
	defer c.SetDeadline(time.Time{})
	if _, err := c.Write(msg); err != nil {
		return err
	}
	got := make([]byte, len(msg))
	if _, err := io.ReadFull(c, got); err != nil {
		return err
	}
	if !bytes.Equal(got, msg) {
		return errors.New("echo differs")
	}
	return nil
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// visionCall runs f in a goroutine and returns a channel that yields its error.
func visionCall(f func() error) <-chan error {
	ch := make(chan error, 1)
	go func() { ch <- f() }()
	return ch
}

// visionWait waits for a visionCall, at most visionBound, and fails t if it is still blocked.
func visionWait(t *testing.T, what string, ch <-chan error) error {
	t.Helper()
	select {
	case err := <-ch:
		return err
	case <-time.After(visionBound):
		buf := make([]byte, 1<<20)
		t.Fatalf("%s still blocked after %v:\n%s", what, visionBound, buf[:runtime.Stack(buf, true)])
		return nil
	}
}

// writeUntilError writes to c until a write fails (the peer does not read, so it blocks).
func writeUntilError(c net.Conn) error {
	buf := make([]byte, 1024)
	for {
		if _, err := c.Write(buf); err != nil {
			return err
		}
	}
}

// blockedRead reads from c once; a named function, so that waitParked can find it.
func blockedRead(c net.Conn) error {
	_, err := c.Read(make([]byte, 1024))
	return err
}

// waitParked waits until, for each of fns (function names as in a stack trace,
// "vless.writeUntilError"), a goroutine running it is parked: blocked on I/O, a
// channel or a lock, not merely started. It fails t after visionBound.
func waitParked(t *testing.T, fns ...string) {
	t.Helper()
	deadline := time.Now().Add(visionBound)
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n == len(buf) {
			buf = make([]byte, 2*len(buf))
			continue
		}
		missing := ""
	fn:
		for _, f := range fns {
			for g := range strings.SplitSeq(string(buf[:n]), "\n\n") {
				header, _, _ := strings.Cut(g, "\n")
				if strings.Contains(g, f+"(") && !strings.Contains(header, "[running") && !strings.Contains(header, "[runnable") {
					continue fn
				}
			}
			missing = f
			break
		}
		if missing == "" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s not blocked after %v:\n%s", missing, visionBound, buf[:n])
		}
		time.Sleep(time.Millisecond) // polling interval
	}
}

// TestVisionConnContract checks, for Vision over each outer TLS kind, the parts of the
// nettest.TestConn contract that a TLS-based conn can meet: deadlines in the past, present
// and future end blocked and new Reads and Writes with timeout errors, a read timeout is not
// sticky, Close ends blocked calls, and all methods may be called concurrently (under -race)
// without blocking one another — including the client's 500 ms header flush timer.
func TestVisionConnContract(t *testing.T) {
	for _, kind := range outerKinds {
		t.Run(kind, func(t *testing.T) {
			t.Run("PastTimeout", func(t *testing.T) {
				cc, srv := visionPair(t, kind)
				visionEcho(srv)
				if err := visionRoundtrip(cc, []byte("ping")); err != nil {
					t.Fatalf("roundtrip: %v", err)
				}
				cc.SetReadDeadline(time.Unix(1, 0))
				var n int
				err := visionWait(t, "Read past deadline", visionCall(func() (err error) {
					n, err = cc.Read(make([]byte, 1024))
					return err
				}))
				if n != 0 || !isTimeout(err) {
					t.Errorf("Read with a past deadline = %d, %v; want 0, a timeout", n, err)
				}
				// A read timeout is not sticky.
				cc.SetReadDeadline(time.Time{})
				if err := visionRoundtrip(cc, []byte("pong")); err != nil {
					t.Fatalf("roundtrip after a read timeout: %v", err)
				}
				cc.SetWriteDeadline(time.Unix(1, 0))
				err = visionWait(t, "Write past deadline", visionCall(func() (err error) {
					n, err = cc.Write(make([]byte, 1024))
					return err
				}))
				if n != 0 || !isTimeout(err) {
					t.Errorf("Write with a past deadline = %d, %v; want 0, a timeout", n, err)
				}
			})
			t.Run("FutureTimeout", func(t *testing.T) {
				cc, srv := visionPair(t, kind)
				defer func() {
					if sc := <-srv; sc != nil {
						sc.Close()
					}
				}()
				const d = 100 * time.Millisecond
				start := time.Now()
				cc.SetDeadline(start.Add(d))
				// Each call reports its error and when it returned.
				early := func(err error) error {
					if el := time.Since(start); el < d {
						return fmt.Errorf("%v after %v, before the deadline", err, el)
					}
					return err
				}
				r := visionCall(func() error { _, err := cc.Read(make([]byte, 1024)); return early(err) })
				w := visionCall(func() error { return early(writeUntilError(cc)) }) // the server never reads
				for name, ch := range map[string]<-chan error{"Read": r, "Write": w} {
					err := visionWait(t, name+" with a future deadline", ch)
					if !isTimeout(err) {
						t.Errorf("%s with a deadline %v ahead = %v, want a timeout at the deadline", name, d, err)
					}
				}
			})
			t.Run("PresentTimeout", func(t *testing.T) {
				cc, srv := visionPair(t, kind)
				defer func() {
					if sc := <-srv; sc != nil {
						sc.Close()
					}
				}()
				r := visionCall(func() error { return blockedRead(cc) })
				w := visionCall(func() error { return writeUntilError(cc) })
				waitParked(t, "vless.blockedRead", "vless.writeUntilError")
				for _, ch := range []<-chan error{r, w} {
					select {
					case err := <-ch:
						t.Fatalf("a call returned %v before any deadline was set", err)
					default:
					}
				}
				cc.SetReadDeadline(time.Unix(1, 0))
				cc.SetWriteDeadline(time.Unix(1, 0))
				for name, ch := range map[string]<-chan error{"Read": r, "Write": w} {
					if err := visionWait(t, "blocked "+name+" after setting a past deadline", ch); !isTimeout(err) {
						t.Errorf("blocked %s after setting a past deadline = %v, want a timeout", name, err)
					}
				}
			})
			t.Run("CloseTimeout", func(t *testing.T) {
				cc, srv := visionPair(t, kind)
				defer func() {
					if sc := <-srv; sc != nil {
						sc.Close()
					}
				}()
				r := visionCall(func() error { return blockedRead(cc) })
				w := visionCall(func() error { return writeUntilError(cc) })
				waitParked(t, "vless.blockedRead", "vless.writeUntilError")
				visionWait(t, "Close with Read and Write blocked", visionCall(cc.Close))
				for name, ch := range map[string]<-chan error{"Read": r, "Write": w} {
					if err := visionWait(t, "blocked "+name+" after Close", ch); err == nil {
						t.Errorf("blocked %s after Close = nil, want an error", name)
					}
				}
			})
			t.Run("ConcurrentMethods", func(t *testing.T) {
				// As nettest's: the results may be nonsensical, but nothing may race or block
				// for good. The header is not flushed yet, so the flush timer joins in.
				cc, srv := visionPair(t, kind)
				visionEcho(srv)
				var wg sync.WaitGroup
				for range 100 {
					wg.Go(func() { cc.Read(make([]byte, 1024)) })
					wg.Go(func() { cc.Write(make([]byte, 1024)) })
					wg.Go(func() { cc.SetDeadline(time.Now().Add(10 * time.Millisecond)) })
					wg.Go(func() { cc.SetReadDeadline(time.Unix(1, 0)) })
					wg.Go(func() { cc.SetWriteDeadline(time.Unix(1, 0)) })
					wg.Go(func() { cc.LocalAddr() })
					wg.Go(func() { cc.RemoteAddr() })
				}
				visionWait(t, "concurrent methods", visionCall(func() error { wg.Wait(); return nil }))
				// Past the flush delay the timer has usually had its turn too, for the
				// race detector to see it; where a busy machine runs it later, it runs
				// beside Close, which must hold as well: nothing below depends on which.
				time.Sleep(headerFlushDelay + 100*time.Millisecond)
				cc.SetDeadline(time.Time{})
				visionWait(t, "Close", visionCall(cc.Close))
				if err := visionWait(t, "Read after Close", visionCall(func() error {
					_, err := cc.Read(make([]byte, 1))
					return err
				})); !errors.Is(err, net.ErrClosed) {
					t.Errorf("Read after Close = %v, want net.ErrClosed (even with echoed data buffered)", err)
				}
			})
		})
	}
}
