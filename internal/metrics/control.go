package metrics

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"time"
)

// A control plane (burrow control run --metrics) answers, for example:
//
//	burrow_control_store_up 1
//	burrow_control_store_latency_seconds 0.00042
//	burrow_control_log_version 120345
//	burrow_control_nodes_up 2
//	burrow_control_node_up{node="exit-1",role="exit"} 1
//	burrow_control_node_lag{node="exit-1",role="exit"} 0
//	burrow_control_node_last_seen_seconds{node="exit-1",role="exit"} 3.2
//	burrow_control_sync_requests_total{answer="changes"} 5120
//	burrow_control_sync_requests_total{answer="snapshot"} 3
//	burrow_control_traffic_pushes_total{result="applied"} 800
//	burrow_control_traffic_pushes_total{result="retried"} 2
//	burrow_control_loans_total 40
//	burrow_control_loan_bytes_total 167772160
//
// Node names are the operator's; no user is ever named.

// Control is what one scrape of a control plane reports.
type Control struct {
	// StoreUp: the timed Version query answered; StoreLatency is how long it
	// took, LogVersion what it said (both left out when the store is down).
	StoreUp      bool
	StoreLatency time.Duration
	LogVersion   int64
	Nodes        []ControlNode
	// Since the control plane started.
	SyncChanges, SyncSnapshots   int64
	PushesApplied, PushesRetried int64
	Loans, LoanBytes             int64
}

// ControlNode is one node that is not revoked.
type ControlNode struct {
	Name, Role string
	// Up: a request from the node within the last minute.
	Up bool
	// Applied is the log version the node last said it holds (its sync
	// requests and status reports); -1 if it never said.
	Applied int64
	// LastSeen is how long ago the node was last heard from; -1 if never.
	LastSeen time.Duration
}

// ControlHandler serves GET /metrics from snap, called once per scrape.
func ControlHandler(snap func(ctx context.Context) (*Control, error)) http.Handler {
	return handler(func(ctx context.Context, w io.Writer) error {
		c, err := snap(ctx)
		if err != nil {
			return err
		}
		return WriteControl(w, c)
	})
}

// WriteControl writes c in the text exposition format.
func WriteControl(w io.Writer, c *Control) error {
	bw := bufio.NewWriter(w)
	family := func(name, typ, help string) {
		fmt.Fprintf(bw, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, typ)
	}
	sample := func(name, value string, labels ...string) {
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
		bw.WriteString(" " + value + "\n")
	}
	num := func(v int64) string { return strconv.FormatInt(v, 10) }
	secs := func(d time.Duration) string { return strconv.FormatFloat(d.Seconds(), 'g', 6, 64) }
	bit := map[bool]string{false: "0", true: "1"}

	family("burrow_control_store_up", "gauge", "Whether the store (PostgreSQL or SQLite) answered this scrape's version query.")
	sample("burrow_control_store_up", bit[c.StoreUp])
	if c.StoreUp {
		family("burrow_control_store_latency_seconds", "gauge", "How long this scrape's version query to the store took.")
		sample("burrow_control_store_latency_seconds", secs(c.StoreLatency))
		family("burrow_control_log_version", "gauge", "The change log's newest version.")
		sample("burrow_control_log_version", num(c.LogVersion))
	}
	up := 0
	for _, n := range c.Nodes {
		if n.Up {
			up++
		}
	}
	family("burrow_control_nodes_up", "gauge", "Nodes heard from within the last minute.")
	sample("burrow_control_nodes_up", strconv.Itoa(up))
	family("burrow_control_node_up", "gauge", "Whether a node was heard from within the last minute.")
	for _, n := range c.Nodes {
		sample("burrow_control_node_up", bit[n.Up], "node", n.Name, "role", n.Role)
	}
	if c.StoreUp {
		family("burrow_control_node_lag", "gauge", "Change log versions a node has yet to apply (log version minus the node's applied version).")
		for _, n := range c.Nodes {
			if n.Applied >= 0 {
				sample("burrow_control_node_lag", num(max(c.LogVersion-n.Applied, 0)), "node", n.Name, "role", n.Role)
			}
		}
	}
	family("burrow_control_node_last_seen_seconds", "gauge", "How long ago a node was last heard from.")
	for _, n := range c.Nodes {
		if n.LastSeen >= 0 {
			sample("burrow_control_node_last_seen_seconds", secs(n.LastSeen), "node", n.Name, "role", n.Role)
		}
	}
	family("burrow_control_sync_requests_total", "counter", "Nodes' sync requests, by answer (changes, or a whole snapshot).")
	sample("burrow_control_sync_requests_total", num(c.SyncChanges), "answer", "changes")
	sample("burrow_control_sync_requests_total", num(c.SyncSnapshots), "answer", "snapshot")
	family("burrow_control_traffic_pushes_total", "counter", "Nodes' traffic pushes, by result (retried: a batch already counted).")
	sample("burrow_control_traffic_pushes_total", num(c.PushesApplied), "result", "applied")
	sample("burrow_control_traffic_pushes_total", num(c.PushesRetried), "result", "retried")
	family("burrow_control_loans_total", "counter", "Quota loans that lent a node bytes.")
	sample("burrow_control_loans_total", num(c.Loans))
	family("burrow_control_loan_bytes_total", "counter", "Bytes of users' quotas lent to nodes.")
	sample("burrow_control_loan_bytes_total", num(c.LoanBytes))
	return bw.Flush()
}
