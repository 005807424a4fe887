package client

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/binary"
	"errors"
	"io"
	"log/slog"
	"net"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/burrow-vpn/burrow/internal/access"
	"github.com/burrow-vpn/burrow/internal/links"
	"github.com/burrow-vpn/burrow/internal/server"
	"github.com/burrow-vpn/burrow/internal/telemetry"
	"github.com/burrow-vpn/burrow/internal/vless"
)

// teleBed is a test bed whose server adds reports up into a real SQLite
// store in the test's directory.
type teleBed struct {
	*testBed
	agg  *telemetry.Aggregator
	st   *access.SQLiteStore
	path string
}

func startTeleBed(t *testing.T) *teleBed {
	t.Helper()
	path := filepath.Join(t.TempDir(), "burrow.db")
	st, err := access.OpenSQLite(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	agg := telemetry.NewAggregator(st, nil)
	return &teleBed{testBed: startBedWith(t, server.Options{Telemetry: agg}), agg: agg, st: st, path: path}
}

// total is the aggregator's count of metric (bucket 0) on transport.
func total(agg *telemetry.Aggregator, transport, metric string) int64 {
	var n int64
	for _, c := range agg.Totals().Counts {
		if c.Transport == transport && c.Metric == metric {
			n += c.Count
		}
	}
	return n
}

// TestTelemetryReportAggregated: a tunnel that carried a connection reports
// it when it closes; the server adds it up per day and the table holds the
// counts and nothing that names the user. The reserved destination is
// answered in-process: no egress refusal, no proxied connection.
func TestTelemetryReportAggregated(t *testing.T) {
	bed := startTeleBed(t)
	l := bed.link
	tun, err := NewTunnel(&l, TunnelOptions{})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := fetch(ctx, tun, bed.target, 1000); err != nil {
		t.Fatal(err)
	}
	tun.Close() // sends the report and waits for the server's answer

	stats := bed.srv.Stats()
	if got := stats.Authenticated.Load(); got != 2 {
		t.Errorf("handshakes = %d, want 2 (the fetch and the report)", got)
	}
	if got := stats.Refused.Load(); got != 0 {
		t.Errorf("egress refusals = %d, want 0: the report must never reach the egress", got)
	}
	if err := bed.agg.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	today := time.Now().UTC().Format(time.DateOnly)
	rows, err := bed.st.TelemetrySince(ctx, today)
	if err != nil {
		t.Fatal(err)
	}
	want := []access.TelemetryCount{
		{Day: today, Transport: "tcp", Metric: "conns_ok", Count: 1},
		{Day: today, Transport: "tcp", Metric: "reports", Count: 1},
	}
	if !slices.Equal(rows, want) {
		t.Errorf("telemetry rows = %+v, want %+v", rows, want)
	}

	// Read the table as a stranger would: its columns, and no value that is
	// the user's name or key.
	db, err := sql.Open("sqlite", bed.path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var cols []string
	qrows, err := db.QueryContext(ctx, `SELECT name FROM pragma_table_info('telemetry_daily') ORDER BY cid`)
	if err != nil {
		t.Fatal(err)
	}
	for qrows.Next() {
		var c string
		qrows.Scan(&c)
		cols = append(cols, c)
	}
	qrows.Close()
	if want := []string{"day", "transport", "metric", "bucket", "count"}; !slices.Equal(cols, want) {
		t.Errorf("telemetry_daily columns = %v, want %v", cols, want)
	}
	secrets := []string{access.FormatUUID(bed.link.UUID), "t", "127.0.0.1"}
	var day, transport, metric string
	var bucket, count int64
	qrows, err = db.QueryContext(ctx, `SELECT day, transport, metric, bucket, count FROM telemetry_daily`)
	if err != nil {
		t.Fatal(err)
	}
	defer qrows.Close()
	for qrows.Next() {
		if err := qrows.Scan(&day, &transport, &metric, &bucket, &count); err != nil {
			t.Fatal(err)
		}
		for _, v := range []string{day, transport, metric} {
			if slices.Contains(secrets, v) {
				t.Errorf("telemetry_daily holds %q, which names the user or an address", v)
			}
		}
	}
}

// TestNoTelemetry: a tunnel with telemetry off makes no connection besides
// its own and reports nothing.
func TestNoTelemetry(t *testing.T) {
	bed := startTeleBed(t)
	l := bed.link
	tun, err := NewTunnel(&l, TunnelOptions{NoTelemetry: true})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := fetch(ctx, tun, bed.target, 100<<10); err != nil {
		t.Fatal(err)
	}
	tun.Close()
	if got := bed.srv.Stats().Authenticated.Load(); got != 1 {
		t.Errorf("handshakes = %d, want 1 (the fetch alone)", got)
	}
	if tot := bed.agg.Totals(); len(tot.Counts) != 0 || tot.Rejected != 0 {
		t.Errorf("aggregator totals = %+v, want none", tot)
	}
}

// sendRaw sends body after a request to the reserved destination on a
// connection of its own and reports whether the server accepted it.
func sendRaw(ctx context.Context, t *testing.T, tun *Tunnel, body []byte) bool {
	t.Helper()
	conn, _, err := tun.dialTLS(ctx, newWatch())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(30 * time.Second))
	accepted := false
	c := vless.ClientConnWatch(conn, &vless.Request{UUID: tun.link.UUID, Command: vless.CommandTCP, Dest: telemetry.Dest},
		func(err error) { accepted = err == nil })
	c.Write(body) // the server may close before it has read everything: an oversized report
	_, err = io.Copy(io.Discard, c)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("the server neither answered nor closed: %v", err)
	}
	return accepted
}

// TestTelemetryRejectsBadReports: garbage, oversized and invalid reports
// are closed without an answer and counted as rejected; the server goes on
// and accepts a good one after them, and only that one reaches the store.
func TestTelemetryRejectsBadReports(t *testing.T) {
	bed := startTeleBed(t)
	l := bed.link
	tun, err := NewTunnel(&l, TunnelOptions{NoTelemetry: true})
	if err != nil {
		t.Fatal(err)
	}
	defer tun.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	framed := func(b []byte) []byte { return append(binary.BigEndian.AppendUint16(nil, uint16(len(b))), b...) }
	for i, tc := range []struct {
		name string
		body []byte
	}{
		{"garbage", framed([]byte("GET / HTTP/1.1\r\n\r\n"))},
		{"oversized", append([]byte{0xff, 0xff}, bytes.Repeat([]byte{1}, 4096)...)},
		{"just over the limit", framed(make([]byte, telemetry.MaxReport+1))},
		{"unknown transport", framed([]byte{1, 1, 9, 1, 0, 0, 1})},
		{"bad bucket", framed([]byte{1, 1, 1, 5, 0, 0, 1})},
		{"count 0", framed([]byte{1, 1, 1, 1, 0, 0, 0})},
		{"repeated", framed([]byte{1, 2, 1, 1, 0, 0, 1, 1, 1, 0, 0, 1})},
		{"length beyond the entries", framed([]byte{1, 1, 1, 1, 0, 0, 1, 0})},
	} {
		if sendRaw(ctx, t, tun, tc.body) {
			t.Errorf("%s: report accepted, want it closed without an answer", tc.name)
		}
		if got := bed.agg.Totals().Rejected; got != int64(i+1) {
			t.Errorf("%s: rejected = %d, want %d", tc.name, got, i+1)
		}
	}
	var good bytes.Buffer
	telemetry.Write(&good, &telemetry.Report{Entries: []telemetry.Entry{{Transport: telemetry.XHTTP, Metric: telemetry.Freeze, Bucket: 3, Count: 2}}})
	if !sendRaw(ctx, t, tun, good.Bytes()) {
		t.Fatal("a good report after the bad ones was not accepted")
	}
	if err := bed.agg.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	rows, err := bed.st.TelemetrySince(ctx, "2000-01-01")
	if err != nil {
		t.Fatal(err)
	}
	today := time.Now().UTC().Format(time.DateOnly)
	want := []access.TelemetryCount{
		{Day: today, Transport: "xhttp", Metric: "freeze", Bucket: 8, Count: 2},
		{Day: today, Transport: "xhttp", Metric: "reports", Count: 1},
	}
	if !slices.Equal(rows, want) {
		t.Errorf("telemetry rows = %+v, want %+v", rows, want)
	}
	if got := bed.srv.Stats().Refused.Load(); got != 0 {
		t.Errorf("egress refusals = %d, want 0", got)
	}
}

// TestTelemetryReportsReset: a tcp link whose handshake is reset after the
// ClientHello twice switches to XHTTP (one reset alone does not); the
// server learns of both resets and of the switch, once, through the XHTTP
// transport; the log names neither end of the connection.
func TestTelemetryReportsReset(t *testing.T) {
	bed := startTeleBed(t)
	ln := resetFront(t, bed.server.String(), 2)
	l := bed.link
	l.Port = uint16(ln.Addr().(*net.TCPAddr).Port)
	var logs syncBuf
	tun, err := NewTunnel(&l, TunnelOptions{Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	for i := range 2 {
		if err := fetch(ctx, tun, bed.target, 1000); err == nil {
			t.Fatalf("fetch %d through a reset handshake succeeded, want the reset", i)
		}
		if got, want := tun.Transport(), []string{TransportTCP, TransportXHTTP}[i]; got != want {
			t.Errorf("Transport() after %d resets = %q, want %q", i+1, got, want)
		}
	}
	if err := fetch(ctx, tun, bed.target, 1000); err != nil {
		t.Fatalf("fetch over XHTTP: %v", err)
	}
	tun.Close()
	for m, want := range map[string]int64{"reset": 2, "fallback": 1, "reports": 1} {
		if got := total(bed.agg, "tcp", m); got != want {
			t.Errorf("tcp %s = %d, want %d", m, got, want)
		}
	}
	if out := logs.String(); !strings.Contains(out, "resets the handshake") || strings.Contains(out, "127.0.0.1") {
		t.Errorf("log = %q, want the switch announced without addresses", out)
	}
}

// relayTo copies c to and from a new connection to addr until both end.
// resetFront listens in front of the server at to: it answers the first
// n connections' ClientHello with a TCP reset and relays the rest.
func resetFront(t *testing.T, to string, n int) net.Listener {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() {
		ln.Close()
		wg.Wait()
	})
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			if n > 0 { // read the ClientHello, answer with a reset
				n--
				c.Read(make([]byte, 4096))
				c.(*net.TCPConn).SetLinger(0)
				c.Close()
				continue
			}
			wg.Go(func() { relayTo(c, to) })
		}
	})
	return ln
}

// relayTo relays c to a new connection to addr, both ways.
func relayTo(c net.Conn, addr string) {
	defer c.Close()
	s, err := net.Dial("tcp", addr)
	if err != nil {
		return
	}
	defer s.Close()
	go func() { io.Copy(s, c); s.(*net.TCPConn).CloseWrite() }()
	io.Copy(c, s)
}

// TestReportWaitsAfterLearning: learning a limit schedules a report a
// minute later, not at once: right after a freeze or a refusal the network
// is hostile, and a report's own connection opened then was the one a
// connection cap counted too many (the lab's sweep, burrow-tcp behind a
// 32 KiB freeze and a cap of 2). Nothing is dialed here: the link's
// address is never reached.
func TestReportWaitsAfterLearning(t *testing.T) {
	link := &links.VLESS{Host: "192.0.2.1", Port: 443, SNI: "cover.test", Type: links.TypeTCP, Flow: links.FlowVision}
	tun, err := NewTunnel(link, TunnelOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer tun.Close()
	before := time.Now()
	tun.active(true)
	tun.reports.mu.Lock()
	due := tun.reports.due
	tun.reports.mu.Unlock()
	if due.Before(before.Add(reportSettle)) {
		t.Errorf("a report is due %v after learning, want at least %v", due.Sub(before), reportSettle)
	}
}
