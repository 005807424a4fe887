package subscribe

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"testing"
	"time"

	"github.com/burrow-vpn/burrow/internal/access"
	"github.com/burrow-vpn/burrow/internal/links"
)

// TestOrderByTelemetry: given the node's telemetry aggregates (in a real
// store), the subscription lists first the link of the transport that
// works best: xhttp when tcp shows resets or freezes in the last 3 days,
// tcp (the templates' order) otherwise.
func TestOrderByTelemetry(t *testing.T) {
	day := func(ago int) string { return time.Now().UTC().AddDate(0, 0, -ago).Format(time.DateOnly) }
	row := func(ago int, transport, metric string, n int64) access.TelemetryCount {
		return access.TelemetryCount{Day: day(ago), Transport: transport, Metric: metric, Count: n}
	}
	for _, tc := range []struct {
		name  string
		rows  []access.TelemetryCount
		first string
	}{
		{"no telemetry", nil, links.TypeTCP},
		{"tcp works", []access.TelemetryCount{row(0, "tcp", "reports", 9), row(0, "tcp", "conns_ok", 80)}, links.TypeTCP},
		{"tcp resets today", []access.TelemetryCount{row(0, "tcp", "conns_ok", 20), row(0, "tcp", "reset", 4)}, links.TypeXHTTP},
		{"tcp froze two days ago", []access.TelemetryCount{row(2, "tcp", "freeze", 3), row(2, "tcp", "fallback", 1)}, links.TypeXHTTP},
		{"tcp resets four days ago", []access.TelemetryCount{row(4, "tcp", "reset", 10)}, links.TypeTCP},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st, err := access.OpenSQLite(filepath.Join(t.TempDir(), "burrow.db"))
			if err != nil {
				t.Fatal(err)
			}
			defer st.Close()
			ctx := context.Background()
			u, err := st.CreateUser(ctx, access.NewUser{Name: "alice"})
			if err != nil {
				t.Fatal(err)
			}
			if err := st.AddTelemetry(ctx, tc.rows); err != nil {
				t.Fatal(err)
			}
			h, err := NewHandler(Config{Users: st, Servers: []links.VLESS{template(t), xhttpTemplate(t)}, Telemetry: st})
			if err != nil {
				t.Fatal(err)
			}
			srv := httptest.NewServer(h)
			defer srv.Close()
			resp, err := http.Get(srv.URL + "/" + u.SubToken + "?format=base64")
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			ls, err := ParseBase64(body)
			if err != nil || len(ls) != 2 {
				t.Fatalf("links = %v, %v; want 2", ls, err)
			}
			if ls[0].Type != tc.first || ls[1].Type == tc.first {
				t.Errorf("link types in order %s, %s; want %s first", ls[0].Type, ls[1].Type, tc.first)
			}
		})
	}
}
