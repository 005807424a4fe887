package censorlab

import (
	"bytes"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"testing"
	"testing/synctest"
	"time"
)

// TestSiteServesSlowDownload: a download that keeps moving is served
// however long it takes, and one that stops moving is dropped after the
// site's idle wait. The site used to end every connection a minute after
// it opened, which cut the sweep's slowest transfers (32 MiB through a
// freeze at 8 KiB) short and counted them as tries of the transport.
func TestSiteServesSlowDownload(t *testing.T) {
	s, err := StartSite("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	const n = 256 << 10
	now := time.Now() // the bubbles' clocks start in 2000, before the certificate
	down := func(t *testing.T) (tc *tls.Conn, done chan struct{}) {
		cli, srv := net.Pipe()
		done = make(chan struct{})
		go func() { defer close(done); s.serveConn(srv) }()
		cfg := s.ClientTLS()
		cfg.Time = func() time.Time { return now }
		tc = tls.Client(cli, cfg)
		if _, err := fmt.Fprintf(tc, "DOWN %d\n", n); err != nil {
			t.Fatalf("request: %v", err)
		}
		return tc, done
	}

	t.Run("slow", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			tc, done := down(t)
			idle := Budget(siteIdle)
			got := make([]byte, 0, n)
			buf := make([]byte, n/8)
			for len(got) < n {
				time.Sleep(idle / 2) // a slow reader: never idle for long, slow in total
				k, err := io.ReadFull(tc, buf[:min(len(buf), n-len(got))])
				got = append(got, buf[:k]...)
				if err != nil {
					t.Fatalf("read after %d of %d bytes: %v", len(got), n, err)
				}
			}
			want := make([]byte, n)
			io.ReadFull(newStream("down"), want)
			if !bytes.Equal(got, want) {
				t.Fatal("the download arrived corrupted")
			}
			tc.Close()
			<-done
		})
	})
	t.Run("stalled", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			tc, done := down(t)
			defer tc.Close()
			time.Sleep(3 * Budget(siteIdle)) // reads nothing: the write fails after one idle wait, the read of the close after another
			synctest.Wait()
			select {
			case <-done:
			default:
				t.Fatal("the site still serves a connection that moved nothing for three idle waits")
			}
		})
	})
}
