// Package metrics serves a running server's counters in the Prometheus text
// exposition format (version 0.0.4), written by hand: no client library.
//
// GET /metrics answers, for example:
//
//	# HELP burrow_connections_active Proxied connections open now.
//	# TYPE burrow_connections_active gauge
//	burrow_connections_active 3
//	# HELP burrow_bytes_total Bytes relayed, by direction (up = client to destination).
//	# TYPE burrow_bytes_total counter
//	burrow_bytes_total{direction="up"} 1234
//	burrow_bytes_total{direction="down"} 98765
//	# HELP burrow_handshakes_total Incoming TLS connections by outcome.
//	# TYPE burrow_handshakes_total counter
//	burrow_handshakes_total{result="authenticated"} 10
//	burrow_handshakes_total{result="cover"} 4
//	# HELP burrow_requests_rejected_total Authenticated requests refused: unknown, revoked, expired or over-quota user.
//	# TYPE burrow_requests_rejected_total counter
//	burrow_requests_rejected_total 1
//	# HELP burrow_egress_refused_total Destinations refused by the egress policy.
//	# TYPE burrow_egress_refused_total counter
//	burrow_egress_refused_total 0
//	# HELP burrow_relay_links_active Entry relays' pooled connections to this server open now.
//	burrow_relay_links_active 2
//	burrow_relay_streams_total{result="accepted"} 120
//	burrow_relay_streams_total{result="refused"} 0
//
// the block telemetry clients reported since the server started
// (internal/telemetry; no user, no address):
//
//	burrow_telemetry_reports_total{transport="tcp"} 12
//	burrow_telemetry_rejected_total 0
//	burrow_telemetry_connections_total{transport="tcp",result="ok"} 340
//	burrow_telemetry_connections_total{transport="tcp",result="failed"} 9
//	burrow_telemetry_freezes_total{transport="tcp",budget_bucket="16K"} 4
//	burrow_telemetry_budgets_total{transport="tcp",budget_bucket="8K"} 2
//	burrow_telemetry_caps_total{transport="xhttp",cap="2"} 1
//	burrow_telemetry_resets_total{transport="tcp"} 3
//	burrow_telemetry_fallbacks_total{transport="tcp"} 2
//
// and, only when the operator opts in to per-user metrics, the current
// period's bytes and live connections of every user, labelled by name:
//
//	burrow_user_bytes{user="alice",direction="up"} 5000
//	burrow_user_connections_active{user="alice"} 1
//
// Nothing about destinations or client addresses is ever exported.
package metrics

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
)

// Snapshot is what one scrape reports.
type Snapshot struct {
	Active        int64
	Authenticated int64
	Fallback      int64
	Rejected      int64
	EgressRefused int64
	BytesUp       int64
	BytesDown     int64
	// Entry relays (burrow relay) of this exit.
	RelayLinks, RelayStreams, RelayRefused int64
	// Users is nil unless per-user metrics are on.
	Users []User
	// Telemetry is what clients reported since the server started
	// (internal/telemetry); nil leaves the burrow_telemetry_* series out.
	Telemetry *Telemetry
}

// Telemetry is the block telemetry's counts since start.
type Telemetry struct {
	Counts   []TelemetryCount
	Rejected int64 // reports that could not be read
}

// TelemetryCount is one count: Metric as stored (reports, conns_ok,
// conns_failed, freeze, budget, cap, reset, fallback) on Transport, in
// Bucket (freeze, budget: the least KiB of the size bucket; cap: the cap).
type TelemetryCount struct {
	Transport, Metric string
	Bucket            int
	Count             int64
}

// User is one user's period counters.
type User struct {
	Name        string
	Up, Down    int64
	Connections int
}

// ContentType is the media type of the text exposition format.
const ContentType = "text/plain; version=0.0.4; charset=utf-8"

// Handler serves GET /metrics from snap, called once per scrape; every
// other path is 404.
func Handler(snap func(ctx context.Context) (*Snapshot, error)) http.Handler {
	return handler(func(ctx context.Context, w io.Writer) error {
		s, err := snap(ctx)
		if err != nil {
			return err
		}
		return Write(w, s)
	})
}

// handler serves GET /metrics with what write writes; every other path is
// 404.
func handler(write func(ctx context.Context, w io.Writer) error) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/metrics" || (r.Method != http.MethodGet && r.Method != http.MethodHead) {
			http.NotFound(w, r)
			return
		}
		var b strings.Builder
		if err := write(r.Context(), &b); err != nil {
			http.Error(w, "metrics unavailable", http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", ContentType)
		w.Header().Set("Cache-Control", "no-store")
		io.WriteString(w, b.String())
	})
}

// Write writes s in the text exposition format.
func Write(w io.Writer, s *Snapshot) error {
	bw := bufio.NewWriter(w)
	family := func(name, typ, help string) {
		fmt.Fprintf(bw, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, typ)
	}
	sample := func(name string, v int64, labels ...string) {
		bw.WriteString(name)
		if len(labels) > 0 {
			bw.WriteByte('{')
			for i := 0; i+1 < len(labels); i += 2 {
				if i > 0 {
					bw.WriteByte(',')
				}
				bw.WriteString(labels[i] + `="` + escapeLabel(labels[i+1]) + `"`)
			}
			bw.WriteByte('}')
		}
		bw.WriteString(" " + strconv.FormatInt(v, 10) + "\n")
	}
	family("burrow_connections_active", "gauge", "Proxied connections open now.")
	sample("burrow_connections_active", s.Active)
	family("burrow_bytes_total", "counter", "Bytes relayed, by direction (up = client to destination).")
	sample("burrow_bytes_total", s.BytesUp, "direction", "up")
	sample("burrow_bytes_total", s.BytesDown, "direction", "down")
	family("burrow_handshakes_total", "counter", "Incoming TLS connections by outcome.")
	sample("burrow_handshakes_total", s.Authenticated, "result", "authenticated")
	sample("burrow_handshakes_total", s.Fallback, "result", "cover")
	family("burrow_requests_rejected_total", "counter", "Authenticated requests refused: unknown, revoked, expired or over-quota user.")
	sample("burrow_requests_rejected_total", s.Rejected)
	family("burrow_egress_refused_total", "counter", "Destinations refused by the egress policy.")
	sample("burrow_egress_refused_total", s.EgressRefused)
	family("burrow_relay_links_active", "gauge", "Entry relays' pooled connections to this server open now.")
	sample("burrow_relay_links_active", s.RelayLinks)
	family("burrow_relay_streams_total", "counter", "Client connections entry relays carried in, by outcome (refused: bad header or credential).")
	sample("burrow_relay_streams_total", s.RelayStreams, "result", "accepted")
	sample("burrow_relay_streams_total", s.RelayRefused, "result", "refused")
	if s.Telemetry != nil {
		writeTelemetry(family, sample, s.Telemetry)
	}
	if s.Users != nil {
		family("burrow_user_bytes", "gauge", "Bytes moved by a user in the current traffic period (opt-in).")
		for _, u := range s.Users {
			sample("burrow_user_bytes", u.Up, "user", u.Name, "direction", "up")
			sample("burrow_user_bytes", u.Down, "user", u.Name, "direction", "down")
		}
		family("burrow_user_connections_active", "gauge", "A user's proxied connections open now (opt-in).")
		for _, u := range s.Users {
			sample("burrow_user_connections_active", int64(u.Connections), "user", u.Name)
		}
	}
	return bw.Flush()
}

// telemetryFamilies are the burrow_telemetry_* series, by stored metric.
var telemetryFamilies = []struct {
	metric, name, help string
	label, value       string // the bucket's label, and a fixed label and value for connections
}{
	{"reports", "burrow_telemetry_reports_total", "Telemetry reports counted from clients, by the transports they used.", "", ""},
	{"conns_ok", "burrow_telemetry_connections_total", "Connections to this server that clients reported, by transport and outcome.", "", "ok"},
	{"conns_failed", "", "", "", "failed"},
	{"freeze", "burrow_telemetry_freezes_total", "Connections that clients reported frozen, by transport and bytes received before (budget_bucket: at least that many KiB, under twice).", "budget_bucket", ""},
	{"budget", "burrow_telemetry_budgets_total", "Byte budgets clients learned from freezes, by size (at least that many KiB, under twice).", "budget_bucket", ""},
	{"cap", "burrow_telemetry_caps_total", "Connection caps clients learned, by the cap.", "cap", ""},
	{"reset", "burrow_telemetry_resets_total", "Handshakes that clients reported reset after the ClientHello, by transport.", "", ""},
	{"fallback", "burrow_telemetry_fallbacks_total", "Switches of clients' tcp links to the xhttp transport.", "", ""},
}

// writeTelemetry writes the telemetry families of t.
func writeTelemetry(family func(name, typ, help string), sample func(name string, v int64, labels ...string), t *Telemetry) {
	family("burrow_telemetry_rejected_total", "counter", "Telemetry reports refused as malformed.")
	sample("burrow_telemetry_rejected_total", t.Rejected)
	name := ""
	for _, f := range telemetryFamilies {
		if f.name != "" {
			name = f.name
			family(name, "counter", f.help)
		}
		for _, c := range t.Counts {
			if c.Metric != f.metric {
				continue
			}
			labels := []string{"transport", c.Transport}
			switch {
			case f.value != "":
				labels = append(labels, "result", f.value)
			case f.label == "budget_bucket":
				labels = append(labels, f.label, strconv.Itoa(c.Bucket)+"K")
			case f.label != "":
				labels = append(labels, f.label, strconv.Itoa(c.Bucket))
			}
			sample(name, c.Count, labels...)
		}
	}
}

// escapeLabel escapes a label value: backslash, double quote and newline.
func escapeLabel(s string) string {
	return strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`).Replace(s)
}

// Parse reads the text exposition format (the subset Write produces:
// comments, and samples without timestamps) into a map from the series,
// written as `name{label="value",...}` exactly as on the wire, to its value.
// It is for tests and self-checks; errors say which line is wrong.
func Parse(r io.Reader) (map[string]float64, error) {
	out := map[string]float64{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		series, value, err := splitSample(line)
		if err != nil {
			return nil, fmt.Errorf("metrics: line %d: %w", n, err)
		}
		v, err := strconv.ParseFloat(value, 64)
		if err != nil {
			return nil, fmt.Errorf("metrics: line %d: value %.40q is not a number", n, value)
		}
		if _, dup := out[series]; dup {
			return nil, fmt.Errorf("metrics: line %d: series %.80s repeated", n, series)
		}
		out[series] = v
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("metrics: %w", err)
	}
	return out, nil
}

// splitSample splits `name{labels} value` at the space after the labels,
// skipping quoted label values (which may hold spaces and escaped quotes).
func splitSample(line string) (series, value string, err error) {
	i, inQuote, inBraces := 0, false, false
	for ; i < len(line); i++ {
		c := line[i]
		switch {
		case inQuote && c == '\\':
			i++
		case c == '"' && inBraces:
			inQuote = !inQuote
		case !inQuote && c == '{':
			inBraces = true
		case !inQuote && c == '}':
			inBraces = false
		case !inQuote && !inBraces && c == ' ':
			series, value = line[:i], strings.TrimSpace(line[i+1:])
			if series == "" || !validName(series) {
				return "", "", errors.New("bad metric name")
			}
			if strings.ContainsRune(value, ' ') {
				return "", "", errors.New("timestamps are not supported")
			}
			return series, value, nil
		}
	}
	return "", "", errors.New("no value")
}

func validName(series string) bool {
	name, _, _ := strings.Cut(series, "{")
	if name == "" {
		return false
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !(c == '_' || c == ':' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || i > 0 && '0' <= c && c <= '9') {
			return false
		}
	}
	return true
}
