// Package bench holds benchmarks that run in one `go test` process; the
// side-by-side script (run.sh) and its load tool live next to it.
//
// rotation_test.go compares, on loopback and in one run, plain REALITY +
// Vision with the XHTTP transport rotating TCP connections at byte budgets
// of 8, 16 and 64 KiB (and XHTTP without rotation): throughput of a 16 MiB
// download, and time to first byte of a 1000-byte fetch on a running
// tunnel (ttfb-ms: XHTTP reuses a pooled connection, plain REALITY dials a
// new one for every fetch) and on a new tunnel (cold-ttfb-ms). Run:
//
//	go test -run XXX -bench Rotation -benchtime 5x ./bench/
package bench

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"io"
	"log/slog"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/burrow-vpn/burrow/internal/access"
	"github.com/burrow-vpn/burrow/internal/camo"
	"github.com/burrow-vpn/burrow/internal/client"
	"github.com/burrow-vpn/burrow/internal/coversite"
	"github.com/burrow-vpn/burrow/internal/links"
	"github.com/burrow-vpn/burrow/internal/server"
)

type oneUser struct{ u access.User }

func (o *oneUser) ListUsers(context.Context) ([]*access.User, error) {
	u := o.u
	return []*access.User{&u}, nil
}
func (*oneUser) AddTraffic(context.Context, map[int64]access.Traffic, string) error { return nil }
func (*oneUser) ResetTraffic(context.Context, int64, time.Time) error               { return nil }

// bed starts a cover site, a sink (reads an 8-byte n, sends n zero-cost
// bytes) and a Burrow server, and returns the server's tcp link and the sink.
func bed(b *testing.B) (links.VLESS, string) {
	l, sink, _ := bedWith(b, nil)
	return l, sink
}

// bedWith is bed for a server that lets relays in; it also returns the
// cover's address.
func bedWith(b *testing.B, relays *server.Relays) (links.VLESS, string, string) {
	b.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	cover, err := coversite.Start("127.0.0.1:0", "cover.test")
	if err != nil {
		b.Fatal(err)
	}
	sink, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Go(func() {
		buf := make([]byte, 64<<10)
		for {
			c, err := sink.Accept()
			if err != nil {
				return
			}
			wg.Go(func() {
				defer c.Close()
				var nb [8]byte
				if _, err := io.ReadFull(c, nb[:]); err != nil {
					return
				}
				for n := int64(binary.BigEndian.Uint64(nb[:])); n > 0; {
					k, err := c.Write(buf[:min(n, int64(len(buf)))])
					if err != nil {
						return
					}
					n -= int64(k)
				}
			})
		}
	})
	priv, pub, err := camo.GenerateKey()
	if err != nil {
		b.Fatal(err)
	}
	var uuid [16]byte
	rand.Read(uuid[:])
	log := slog.New(slog.DiscardHandler)
	reg := server.NewRegistry(&oneUser{access.User{ID: 1, Name: "b", UUID: uuid, Reset: "never", CreatedAt: time.Now()}}, log)
	if err := reg.Refresh(ctx); err != nil {
		b.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	addr := ln.Addr().(*net.TCPAddr).AddrPort()
	cfg := &server.Config{
		Listen: addr.String(), Cover: cover.Addr, ServerNames: []string{"cover.test"}, PublicAddr: "127.0.0.1",
		PrivateKey: server.EncodeKey(priv), PublicKey: server.EncodeKey(pub), ShortIDs: []string{"beef"},
		AllowPrivateEgress: true,
	}
	cfg.Defaults()
	if err := cfg.Validate(); err != nil {
		b.Fatal(err)
	}
	srv, err := server.New(cfg, reg, log, server.Options{Listener: ln, ShutdownGrace: 100 * time.Millisecond, Relays: relays})
	if err != nil {
		b.Fatal(err)
	}
	done := make(chan struct{})
	go func() { defer close(done); srv.Serve(ctx, ln) }()
	b.Cleanup(func() {
		cancel()
		<-done
		sink.Close()
		wg.Wait()
		cover.Close()
	})
	return links.VLESS{UUID: uuid, Host: "127.0.0.1", Port: addr.Port(), SNI: "cover.test", Fingerprint: "chrome",
		PublicKey: pub, ShortID: []byte{0xbe, 0xef}, Flow: links.FlowVision, Type: links.TypeTCP,
		Security: links.SecurityReality, Encryption: links.EncryptionNone}, sink.Addr().String(), cover.Addr
}

// get downloads n bytes from the sink through tun and returns the time to
// the first byte.
func get(b *testing.B, tun *client.Tunnel, sink string, n int64) time.Duration {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	start := time.Now()
	c, err := tun.DialContext(ctx, "tcp", sink)
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	var nb [8]byte
	binary.BigEndian.PutUint64(nb[:], uint64(n))
	if _, err := c.Write(nb[:]); err != nil {
		b.Fatal(err)
	}
	buf := make([]byte, 64<<10)
	k, err := io.ReadAtLeast(c, buf, 1)
	if err != nil {
		b.Fatal(err)
	}
	ttfb := time.Since(start)
	rest, err := io.CopyBuffer(io.Discard, c, buf)
	if err != nil || int64(k)+rest != n {
		b.Fatalf("downloaded %d of %d bytes: %v", int64(k)+rest, n, err)
	}
	return ttfb
}

func BenchmarkRotation(b *testing.B) {
	tcp, sink := bed(b)
	const size = 16 << 20
	for _, tc := range []struct {
		name   string
		budget int64 // -1: plain REALITY + Vision; 0: XHTTP without rotation
	}{
		{"reality-vision", -1},
		{"xhttp", 0},
		{"xhttp-rotate-64KiB", 64 << 10},
		{"xhttp-rotate-16KiB", 16 << 10},
		{"xhttp-rotate-8KiB", 8 << 10},
	} {
		b.Run(tc.name, func(b *testing.B) {
			l := tcp
			if tc.budget >= 0 {
				l.Type, l.Flow = links.TypeXHTTP, ""
				l.XHTTP = &links.XHTTP{Mode: links.ModePacketUp, Budget: tc.budget}
			}
			tun, err := client.NewTunnel(&l, client.TunnelOptions{NoFallback: true})
			if err != nil {
				b.Fatal(err)
			}
			defer tun.Close()
			get(b, tun, sink, 1) // warm up (cover record sizes, pools)
			var ttfb time.Duration
			b.SetBytes(size)
			b.ResetTimer()
			for b.Loop() {
				ttfb += get(b, tun, sink, size)
			}
			b.StopTimer()
			// Time to first byte of short fetches, as a page load sees them.
			const short = 20
			var st time.Duration
			for range short {
				st += get(b, tun, sink, 1000)
			}
			b.ReportMetric(float64(st.Microseconds())/short/1000, "ttfb-ms")
			// Cold: a new tunnel each time, so the first byte waits for a
			// fresh TCP + REALITY connection (and, for XHTTP, HTTP/2 set-up).
			var ct time.Duration
			for range short {
				cold, err := client.NewTunnel(&l, client.TunnelOptions{NoFallback: true})
				if err != nil {
					b.Fatal(err)
				}
				ct += get(b, cold, sink, 1000)
				cold.Close()
			}
			b.ReportMetric(float64(ct.Microseconds())/short/1000, "cold-ttfb-ms")
			if s := tun.XHTTPStats(); s.Dialed > 0 {
				b.ReportMetric(float64(s.Dialed), "tcp-conns")
			}
		})
	}
}
