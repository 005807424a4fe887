package relay

import (
	"bufio"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
)

// MetricsHandler serves GET /metrics: the relay's counters in the
// Prometheus text format (0.0.4). Exits are labelled by address; nothing
// names a client or a user (the relay knows neither).
//
//	burrow_relay_connections_active 3
//	burrow_relay_connections_total{result="exit"} 120
//	burrow_relay_connections_total{result="cover"} 4
//	burrow_relay_connections_total{result="refused"} 0
//	burrow_relay_bytes_total{direction="up"} 1234
//	burrow_relay_exit_up{exit="203.0.113.7:443"} 1
//	burrow_relay_exit_streams_active{exit="203.0.113.7:443"} 3
//	burrow_relay_exit_streams_total{exit="203.0.113.7:443"} 120
//	burrow_relay_exit_failures_total{exit="203.0.113.7:443"} 0
//	burrow_relay_pool_connections{exit="203.0.113.7:443"} 2
//	burrow_relay_pool_dialed_total{exit="203.0.113.7:443"} 9
//	burrow_relay_trunks{exit="203.0.113.7:443"} 2
func (r *Relay) MetricsHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if req.URL.Path != "/metrics" || (req.Method != http.MethodGet && req.Method != http.MethodHead) {
			http.NotFound(w, req)
			return
		}
		w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
		w.Header().Set("Cache-Control", "no-store")
		r.WriteMetrics(w)
	})
}

// WriteMetrics writes the relay's metrics in the text format.
func (r *Relay) WriteMetrics(w io.Writer) error {
	bw := bufio.NewWriter(w)
	family := func(name, typ, help string) {
		fmt.Fprintf(bw, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, typ)
	}
	sample := func(name string, v int64, labels ...string) {
		bw.WriteString(name)
		if len(labels) == 2 {
			bw.WriteString("{" + labels[0] + `="` + strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`).Replace(labels[1]) + `"}`)
		}
		bw.WriteString(" " + strconv.FormatInt(v, 10) + "\n")
	}
	s := &r.stats
	family("burrow_relay_connections_active", "gauge", "Client connections open now.")
	sample("burrow_relay_connections_active", s.Active.Load())
	family("burrow_relay_connections_total", "counter", "Client connections by outcome: carried to an exit, shown the cover (no exit up), refused (no exit and no cover).")
	sample("burrow_relay_connections_total", s.ToExit.Load(), "result", "exit")
	sample("burrow_relay_connections_total", s.ToCover.Load(), "result", "cover")
	sample("burrow_relay_connections_total", s.Refused.Load(), "result", "refused")
	family("burrow_relay_bytes_total", "counter", "Bytes carried between clients and exits (up = client to exit).")
	sample("burrow_relay_bytes_total", s.BytesUp.Load(), "direction", "up")
	sample("burrow_relay_bytes_total", s.BytesDown.Load(), "direction", "down")
	exits := r.exits.list()
	perExit := func(name, typ, help string, v func(e *exit) int64) {
		family(name, typ, help)
		for _, e := range exits {
			sample(name, v(e), "exit", e.name())
		}
	}
	perExit("burrow_relay_exit_up", "gauge", "1 if the exit answered its last health check.", func(e *exit) int64 {
		if e.up.Load() {
			return 1
		}
		return 0
	})
	perExit("burrow_relay_exit_streams_active", "gauge", "Client streams open to the exit now.", func(e *exit) int64 { return e.streams.Load() })
	perExit("burrow_relay_exit_streams_total", "counter", "Client streams opened to the exit.", func(e *exit) int64 { return e.opened.Load() })
	perExit("burrow_relay_exit_failures_total", "counter", "Failed health checks and stream openings.", func(e *exit) int64 { return e.failed.Load() })
	perExit("burrow_relay_pool_connections", "gauge", "Pooled connections to the exit open now.", func(e *exit) int64 { return e.pool.Stats().Live })
	perExit("burrow_relay_pool_dialed_total", "counter", "Pooled connections to the exit opened (rotation included).", func(e *exit) int64 { return e.pool.Stats().Dialed })
	perExit("burrow_relay_trunks", "gauge", "Trunks (sessions carrying client streams) to the exit open now.", func(e *exit) int64 { return int64(e.trunks.count()) })
	return bw.Flush()
}
