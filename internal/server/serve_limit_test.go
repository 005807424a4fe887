package server

import (
	"bytes"
	"context"
	"crypto/tls"
	"log/slog"
	"net"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/burrow-vpn/burrow/internal/access"
	"github.com/burrow-vpn/burrow/internal/camo"
	"github.com/burrow-vpn/burrow/internal/coversite"
)

// acceptWatch is a listener that tells the test about every Accept call
// and whether the test had freed a connection by then.
type acceptWatch struct {
	net.Listener
	freed *atomic.Bool
	calls chan bool // on each Accept call: freed at that moment
}

func (l *acceptWatch) Accept() (net.Conn, error) {
	select {
	case l.calls <- l.freed.Load():
	default:
	}
	return l.Listener.Accept()
}

// TestServeConnectionLimit: with MaxConns connections held open by
// clients that send nothing, the server accepts no more (the next one waits
// in the accept queue, not reset) until one ends; the waiting prober then
// gets the cover's own certificate.
func TestServeConnectionLimit(t *testing.T) {
	cover, err := coversite.Start("127.0.0.1:0", "cover.test")
	if err != nil {
		t.Fatal(err)
	}
	defer cover.Close()
	priv, _, err := camo.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	st, err := access.OpenSQLite(filepath.Join(t.TempDir(), "users.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var freed atomic.Bool
	watch := &acceptWatch{Listener: ln, freed: &freed, calls: make(chan bool, 16)}
	const limit = 2
	cfg := &Config{Cover: cover.Addr, ServerNames: []string{"cover.test"}, PrivateKey: EncodeKey(priv), ShortIDs: []string{"01"}}
	log := slog.New(slog.DiscardHandler)
	srv, err := New(cfg, NewRegistry(st, log), log, Options{MaxConns: limit, ShutdownGrace: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ctx, watch) }()
	defer func() { cancel(); <-served }()

	idle := make([]net.Conn, limit)
	for i := range idle {
		<-watch.calls // the server is ready to accept conn i
		if idle[i], err = net.Dial("tcp", ln.Addr().String()); err != nil {
			t.Fatal(err)
		}
		defer idle[i].Close()
	}
	probe := make(chan error, 1)
	go func() {
		c, err := tls.DialWithDialer(&net.Dialer{Timeout: time.Minute}, "tcp", ln.Addr().String(),
			&tls.Config{ServerName: "cover.test", InsecureSkipVerify: true})
		if err == nil {
			if !bytes.Equal(c.ConnectionState().PeerCertificates[0].Raw, cover.Cert.Raw) {
				err = errNotCover
			}
			c.Close()
		}
		probe <- err
	}()
	// The prober must not be served while the slots are full. (A negative
	// can only be watched for a while; on a slow machine this passes
	// without proving much, it never fails wrongly.)
	select {
	case err := <-probe:
		t.Fatalf("prober served (err %v) with %d connections held; want it to wait: MaxConns = %d", err, limit, limit)
	case <-time.After(time.Second):
	}
	freed.Store(true)
	idle[0].Close()
	if wasFreed := <-watch.calls; !wasFreed {
		t.Errorf("Accept called with %d connections live, want none beyond MaxConns = %d", limit+1, limit)
	}
	if err := <-probe; err != nil {
		t.Errorf("prober waiting for a free slot: %v, want the cover's handshake", err)
	}
}

var errNotCover = &net.AddrError{Err: "certificate is not the cover's"}

func TestMaxConnsFor(t *testing.T) {
	tests := []struct {
		files uint64
		want  int
	}{
		{1024, 464},       // a default soft limit: 600 idle conns no longer exhaust it
		{20000, 9655},     // this kind of limit holds nearly 10,000
		{1 << 20, 507872}, // LimitNOFILE=1048576
		{40, 10},          // tiny: a quarter, never zero
	}
	for _, tt := range tests {
		if got := MaxConnsFor(tt.files); got != tt.want {
			t.Errorf("MaxConnsFor(%d) = %d, want %d", tt.files, got, tt.want)
		}
	}
}
