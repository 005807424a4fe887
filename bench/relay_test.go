package bench

// relay_test.go compares, on loopback and in one run, a client connected to
// the exit directly with the same client through an entry relay (burrow
// relay) whose leg to the exit learns its budget (the default: nothing
// freezes here, so it does not rotate) or rotates at a fixed 12 KiB: throughput of downloads on 1 and 8 parallel streams (each its
// own REALITY + Vision connection, inner bytes as the sink sends them),
// and time to first byte of a 1000-byte fetch on a warm relay pool. Run:
//
//	go test -run XXX -bench 'Relay$' -benchtime 3x ./bench/

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/burrow-vpn/burrow/internal/access"
	"github.com/burrow-vpn/burrow/internal/client"
	"github.com/burrow-vpn/burrow/internal/links"
	"github.com/burrow-vpn/burrow/internal/relay"
	"github.com/burrow-vpn/burrow/internal/relaylink"
	"github.com/burrow-vpn/burrow/internal/server"
)

type oneRelay struct{ r access.Relay }

func (o *oneRelay) ListRelays(context.Context) ([]*access.Relay, error) {
	r := o.r
	return []*access.Relay{&r}, nil
}
func (*oneRelay) SetRelayAnnounce(context.Context, int64, string, string, string) error { return nil }

// startRelay runs a relay with the leg budget (0: learned; negative: no rotation) in
// front of the exit of l and returns its address.
func startRelay(b *testing.B, l links.VLESS, rl access.Relay, cover string, budget int64) string {
	b.Helper()
	tok := relaylink.Token{Name: "bench", Addr: net.JoinHostPort(l.Host, strconv.Itoa(int(l.Port))), ShortID: rl.ShortID, SNI: l.SNI, Cover: cover, Secret: rl.Secret}
	copy(tok.PublicKey[:], l.PublicKey)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	cfg := &relay.Config{Listen: ln.Addr().String(), PublicAddr: "127.0.0.1", Exits: []string{tok.String()}, Budget: budget}
	cfg.Defaults()
	r, err := relay.New(cfg, relay.Options{})
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); r.Serve(ctx, ln) }()
	b.Cleanup(func() { cancel(); <-done; r.Close() })
	return ln.Addr().String()
}

func mustAtoi(s string) int {
	n, _ := strconv.Atoi(s)
	return n
}

// fetch downloads n bytes from the sink through tun (for goroutines,
// which must not call b.Fatal).
func fetch(tun *client.Tunnel, sink string, n int64) error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	c, err := tun.DialContext(ctx, "tcp", sink)
	if err != nil {
		return err
	}
	defer c.Close()
	var nb [8]byte
	binary.BigEndian.PutUint64(nb[:], uint64(n))
	if _, err := c.Write(nb[:]); err != nil {
		return err
	}
	got, err := io.Copy(io.Discard, c)
	if err == nil && got != n {
		err = fmt.Errorf("downloaded %d of %d bytes", got, n)
	}
	return err
}

func BenchmarkRelay(b *testing.B) {
	rl := access.Relay{ID: 1, Name: "bench"}
	rand.Read(rl.ShortID[:])
	rand.Read(rl.Secret[:])
	relays := server.NewRelays(&oneRelay{rl}, nil)
	if err := relays.Refresh(context.Background()); err != nil {
		b.Fatal(err)
	}
	direct, sink, cover := bedWith(b, relays)
	via := map[string]string{
		"relay":              startRelay(b, direct, rl, cover, 0),
		"relay-rotate-12KiB": startRelay(b, direct, rl, cover, 12<<10),
	}
	const size = 16 << 20
	for _, path := range []string{"direct", "relay", "relay-rotate-12KiB"} {
		for _, streams := range []int{1, 8} {
			b.Run(path+"/streams="+strconv.Itoa(streams), func(b *testing.B) {
				l := direct
				if a, ok := via[path]; ok {
					host, port, _ := net.SplitHostPort(a)
					l.Host, l.Port = host, uint16(mustAtoi(port))
				}
				tun, err := client.NewTunnel(&l, client.TunnelOptions{NoFallback: true})
				if err != nil {
					b.Fatal(err)
				}
				defer tun.Close()
				get(b, tun, sink, 1) // warm up
				b.SetBytes(size * int64(streams))
				cpu0 := cpuTime(b)
				b.ResetTimer()
				for b.Loop() {
					var wg sync.WaitGroup
					errs := make(chan error, streams)
					for range streams {
						wg.Go(func() { errs <- fetch(tun, sink, size) })
					}
					wg.Wait()
					close(errs)
					for err := range errs {
						if err != nil {
							b.Fatal(err)
						}
					}
				}
				b.StopTimer()
				// Every party (client, relay, exit, sink) runs in this
				// process: its CPU time per byte carried is the whole path's
				// cost, and 2 cores over it the most the machine can carry.
				b.ReportMetric(float64(cpuTime(b)-cpu0)/float64(int64(b.N)*size*int64(streams)), "cpu-ns/B")
				const short = 20
				var st time.Duration
				for range short {
					st += get(b, tun, sink, 1000)
				}
				b.ReportMetric(float64(st.Microseconds())/short/1000, "ttfb-ms")
			})
		}
	}
}
