package telemetry

import (
	"fmt"
	"slices"
	"strings"

	"github.com/burrow-vpn/burrow/internal/access"
)

// DaySummary is one day's counts on one transport, as `burrow server
// stats` shows them.
type DaySummary struct {
	Day         string        `json:"day"`
	Transport   string        `json:"transport"`
	Reports     int64         `json:"reports"`
	ConnsOK     int64         `json:"conns_ok"`
	ConnsFailed int64         `json:"conns_failed"`
	Resets      int64         `json:"resets"`
	Fallbacks   int64         `json:"fallbacks"`
	Freezes     map[int]int64 `json:"freezes,omitempty"` // by the least KiB of the bucket
	Budgets     map[int]int64 `json:"budgets,omitempty"` // learned byte budgets, by the least KiB
	Caps        map[int]int64 `json:"caps,omitempty"`    // learned connection caps, by the cap
}

// Summarize groups rows by day (newest first) and transport.
func Summarize(rows []access.TelemetryCount) []DaySummary {
	var out []DaySummary
	idx := map[[2]string]int{}
	for _, r := range rows {
		k := [2]string{r.Day, r.Transport}
		i, ok := idx[k]
		if !ok {
			i = len(out)
			idx[k] = i
			out = append(out, DaySummary{Day: r.Day, Transport: r.Transport})
		}
		s := &out[i]
		switch r.Metric {
		case Reports:
			s.Reports += r.Count
		case ConnOK.String():
			s.ConnsOK += r.Count
		case ConnFailed.String():
			s.ConnsFailed += r.Count
		case Reset.String():
			s.Resets += r.Count
		case Fallback.String():
			s.Fallbacks += r.Count
		case Freeze.String():
			s.Freezes = addTo(s.Freezes, r.Bucket, r.Count)
		case Budget.String():
			s.Budgets = addTo(s.Budgets, r.Bucket, r.Count)
		case Cap.String():
			s.Caps = addTo(s.Caps, r.Bucket, r.Count)
		}
	}
	slices.SortStableFunc(out, func(a, b DaySummary) int {
		if c := strings.Compare(b.Day, a.Day); c != 0 {
			return c
		}
		return strings.Compare(a.Transport, b.Transport)
	})
	return out
}

func addTo(m map[int]int64, k int, n int64) map[int]int64 {
	if m == nil {
		m = map[int]int64{}
	}
	m[k] += n
	return m
}

// FormatBuckets writes m as "8K:2 16K:1" (sizes, kib true) or "2:1" (caps),
// by bucket; "-" when empty.
func FormatBuckets(m map[int]int64, kib bool) string {
	if len(m) == 0 {
		return "-"
	}
	keys := make([]int, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	var b strings.Builder
	for i, k := range keys {
		if i > 0 {
			b.WriteByte(' ')
		}
		if kib {
			fmt.Fprintf(&b, "%dK:%d", k, m[k])
		} else {
			fmt.Fprintf(&b, "%d:%d", k, m[k])
		}
	}
	return b.String()
}

// The rule that orders a user's links (Prefer).
const (
	// PreferDays is how many days of reports, today included, Prefer weighs.
	PreferDays = 3
	// minTrouble is the least troubles on tcp that can put xhttp first.
	minTrouble = 3
)

// Prefer says which transport's link a subscription lists first, from the
// rows of the last PreferDays days: "xhttp" when tcp shows trouble — its
// handshakes reset after the ClientHello, its connections freeze, tcp links
// switch to xhttp (reset + freeze + fallback on tcp) at least 3 times and
// at least once per 10 tcp connections opened (ok or failed) — and xhttp
// itself does not show more of the same trouble; "tcp" (the default order)
// otherwise.
func Prefer(rows []access.TelemetryCount) string {
	var trouble, conns, xTrouble int64
	for _, r := range rows {
		switch {
		case r.Transport == TCP.String() && (r.Metric == Reset.String() || r.Metric == Freeze.String() || r.Metric == Fallback.String()):
			trouble += r.Count
		case r.Transport == TCP.String() && (r.Metric == ConnOK.String() || r.Metric == ConnFailed.String()):
			conns += r.Count
		case r.Transport == XHTTP.String() && (r.Metric == Reset.String() || r.Metric == Freeze.String()):
			xTrouble += r.Count
		}
	}
	if trouble >= minTrouble && trouble*10 >= conns && xTrouble < trouble {
		return XHTTP.String()
	}
	return TCP.String()
}
