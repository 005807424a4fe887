package xhttp

import (
	"context"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"golang.org/x/net/nettest"
)

// TestConnConformance runs x/net's net.Conn conformance suite on a session:
// the client's conn against the server's, over a rotating dialer.
func TestConnConformance(t *testing.T) {
	nettest.TestConn(t, func() (c1, c2 net.Conn, stop func(), err error) {
		ctx, cancel := context.WithCancel(context.Background())
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			cancel()
			return nil, nil, nil, err
		}
		got := make(chan net.Conn, 1)
		hub := NewHub(ctx, HubConfig{ResumeTimeout: 5 * time.Second, Handle: func(ctx context.Context, c net.Conn) {
			got <- c
			<-ctx.Done()
		}})
		var wg sync.WaitGroup
		wg.Go(func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				wg.Go(func() {
					defer c.Close()
					stopc := context.AfterFunc(ctx, func() { c.Close() })
					defer stopc()
					pre := make([]byte, len(Preface))
					if _, err := io.ReadFull(c, pre); err != nil {
						return
					}
					hub.ServeConn(ctx, c, ConnOptions{SawPreface: true})
				})
			}
		})
		var log connLog
		d, err := NewDialer(DialerConfig{Dial: log.dial(ln.Addr().String()), Host: "example.com", Budget: 16 << 10, Pace: noPace})
		if err != nil {
			cancel()
			return nil, nil, nil, err
		}
		c1, err = d.Dial(ctx)
		if err != nil {
			cancel()
			return nil, nil, nil, err
		}
		c2 = <-got
		stop = func() {
			c1.Close()
			c2.Close()
			d.Close()
			cancel()
			ln.Close()
			wg.Wait()
			hub.Close()
		}
		return c1, c2, stop, nil
	})
}
