package main

import (
	"fmt"
	"io"
	"math"
	"os"
	"runtime"
	"slices"
	"strings"
	"text/tabwriter"
	"time"
)

// figure describes one number in the results.
type figure struct {
	Key    string `json:"key"`
	Label  string `json:"label"`
	Unit   string `json:"unit"`
	Better string `json:"better,omitempty"` // "higher" or "lower"
	prec   int
}

type sysResult struct {
	Name   string               `json:"name"`
	Desc   string               `json:"desc,omitempty"`
	Median map[string]float64   `json:"median"` // median over the repetitions that produced the figure
	Reps   []map[string]float64 `json:"reps"`
	Errors []string             `json:"errors,omitempty"`
}

type hostInfo struct {
	CPUs    int    `json:"cpus"`
	CPU     string `json:"cpu,omitempty"`
	Kernel  string `json:"kernel,omitempty"`
	GoBuild string `json:"go"`
	// Load averages (/proc/loadavg) when the run started and ended: a busy
	// machine moves absolute figures; ratios from one run move less.
	LoadStart string `json:"loadavg_start,omitempty"`
	LoadEnd   string `json:"loadavg_end,omitempty"`
}

type report struct {
	Started     time.Time   `json:"started"`
	WallSeconds float64     `json:"wall_seconds"`
	Host        hostInfo    `json:"host"`
	Config      benchConfig `json:"config"`
	Figures     []figure    `json:"figures"`
	Systems     []sysResult `json:"systems"`
	// Ratios[system][base][key] = median of system / median of base, same run.
	Ratios map[string]map[string]map[string]float64 `json:"ratios,omitempty"`

	ratioCols []ratioCol // table columns, in the order of -ratio-of/-ratio-to
}

type ratioCol struct{ of, to string }

func newReport(cfg benchConfig, systems []system) *report {
	r := &report{Started: time.Now().UTC(), Config: cfg, Figures: figureList(cfg.Streams)}
	r.Host = hostInfo{CPUs: runtime.NumCPU(), GoBuild: runtime.Version(), LoadStart: loadavg()}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		r.Host.Kernel = strings.TrimSpace(string(b))
	}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for line := range strings.SplitSeq(string(b), "\n") {
			if v, ok := strings.CutPrefix(line, "model name"); ok {
				r.Host.CPU = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(v), ":"))
				break
			}
		}
	}
	for _, s := range systems {
		r.Systems = append(r.Systems, sysResult{Name: s.Name, Desc: s.Desc})
	}
	return r
}

// loadavg returns the 1, 5 and 15 minute load averages.
func loadavg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return ""
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return ""
	}
	return strings.Join(f[:3], " ")
}

func figureList(streams int) []figure {
	var fs []figure
	for _, overTLS := range []bool{false, true} {
		for _, n := range []int{1, streams} {
			k := tputKey(overTLS, n)
			what := "plain"
			if overTLS {
				what = "inner-TLS"
			}
			fs = append(fs, figure{k + "_MBps", fmt.Sprintf("%s download, %d stream(s)", what, n), "MB/s", "higher", 0})
		}
	}
	for _, overTLS := range []bool{false, true} {
		for _, n := range []int{1, streams} {
			k := tputKey(overTLS, n)
			what := "plain"
			if overTLS {
				what = "inner-TLS"
			}
			fs = append(fs, figure{k + "_cpu_s_per_GiB", fmt.Sprintf("CPU, %s %d stream(s)", what, n), "s/GiB", "lower", 2})
		}
	}
	return append(fs,
		figure{"ttfb_p50_ms", "new conn TTFB p50", "ms", "lower", 2},
		figure{"ttfb_p99_ms", "new conn TTFB p99", "ms", "lower", 2},
		figure{"rtt_p50_us", "echo RTT p50", "µs", "lower", 0},
		figure{"rtt_p99_us", "echo RTT p99", "µs", "lower", 0},
		figure{"idle_held", "idle conns held", "conns", "higher", 0},
		figure{"idle_rss_client_MiB", "idle RSS client", "MiB", "lower", 1},
		figure{"idle_rss_server_MiB", "idle RSS server", "MiB", "lower", 1},
		figure{"idle_rss_total_MiB", "idle RSS client+server", "MiB", "lower", 1},
		figure{"idle_KiB_per_conn", "RSS per idle conn", "KiB", "lower", 1},
	)
}

// finish computes medians and the ratios of each system named with a prefix
// in of to each system named in to.
func (r *report) finish(of, to []string) {
	r.WallSeconds = time.Since(r.Started).Seconds()
	r.Host.LoadEnd = loadavg()
	byName := map[string]*sysResult{}
	for i := range r.Systems {
		s := &r.Systems[i]
		s.Median = medians(s.Reps)
		byName[s.Name] = s
	}
	for _, s := range r.Systems {
		if !hasAnyPrefix(s.Name, of) {
			continue
		}
		for _, spec := range to {
			// spec is NAME or NAME:SUFFIX (only figures whose key ends in SUFFIX).
			baseName, suffix, _ := strings.Cut(spec, ":")
			base, ok := byName[baseName]
			if !ok || base.Name == s.Name {
				continue
			}
			rs := map[string]float64{}
			for k, v := range s.Median {
				if k == "idle_opened" || k == "ttfb_failed" || strings.HasSuffix(k, "_foreign_cpu_share") || !strings.HasSuffix(k, suffix) {
					continue
				}
				if b, ok := base.Median[k]; ok && b != 0 {
					rs[k] = v / b
				}
			}
			if len(rs) == 0 {
				continue
			}
			if r.Ratios == nil {
				r.Ratios = map[string]map[string]map[string]float64{}
			}
			if r.Ratios[s.Name] == nil {
				r.Ratios[s.Name] = map[string]map[string]float64{}
			}
			r.Ratios[s.Name][baseName] = rs
			r.ratioCols = append(r.ratioCols, ratioCol{s.Name, baseName})
		}
	}
}

// medians returns, for each key, the median of the repetitions that have it.
func medians(reps []map[string]float64) map[string]float64 {
	vals := map[string][]float64{}
	for _, rep := range reps {
		for k, v := range rep {
			if !math.IsNaN(v) && !math.IsInf(v, 0) {
				vals[k] = append(vals[k], v)
			}
		}
	}
	out := map[string]float64{}
	for k, vs := range vals {
		out[k] = median(vs)
	}
	return out
}

func median(vs []float64) float64 {
	s := slices.Clone(vs)
	slices.Sort(s)
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

func hasAnyPrefix(s string, prefixes []string) bool {
	for _, p := range prefixes {
		if strings.HasPrefix(s, p) {
			return true
		}
	}
	return false
}

// printTable writes one row per figure and one column per system, then one
// column per ratio.
func (r *report) printTable(w io.Writer) {
	fmt.Fprintf(w, "\nBurrow benchmark, %s, %d CPUs (%s), %d rep(s), medians; %d MiB per throughput test; wall %.0f s; load average %s at start, %s at end\n\n",
		r.Started.Format(time.RFC3339), r.Host.CPUs, r.Host.CPU, r.Config.Reps, r.Config.Bytes>>20, r.WallSeconds, r.Host.LoadStart, r.Host.LoadEnd)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	head := []string{"figure", "unit"}
	for _, s := range r.Systems {
		head = append(head, s.Name)
	}
	for _, c := range r.ratioCols {
		head = append(head, c.of+"/"+c.to)
	}
	fmt.Fprintln(tw, strings.Join(head, "\t")+"\t")
	for _, f := range r.Figures {
		row := []string{f.Label, f.Unit}
		any := false
		for _, s := range r.Systems {
			if v, ok := s.Median[f.Key]; ok {
				row = append(row, fmt.Sprintf("%.*f", f.prec, v))
				any = true
			} else {
				row = append(row, "-")
			}
		}
		if !any {
			continue
		}
		for _, c := range r.ratioCols {
			if v, ok := r.Ratios[c.of][c.to][f.Key]; ok {
				row = append(row, fmt.Sprintf("%.2fx", v))
			} else {
				row = append(row, "-")
			}
		}
		fmt.Fprintln(tw, strings.Join(row, "\t")+"\t")
	}
	tw.Flush()
	for _, s := range r.Systems {
		if s.Desc != "" {
			fmt.Fprintf(w, "\n%s: %s", s.Name, s.Desc)
		}
	}
	fmt.Fprintln(w)
	var foreign []float64
	for _, s := range r.Systems {
		for _, rep := range s.Reps {
			for k, v := range rep {
				if strings.HasSuffix(k, "_foreign_cpu_share") {
					foreign = append(foreign, v)
				}
			}
		}
	}
	if len(foreign) > 0 {
		fmt.Fprintf(w, "\nOther processes used a median %.0f%% and at most %.0f%% of the machine's CPU during the throughput tests (*_foreign_cpu_share in the JSON).\n",
			100*median(foreign), 100*slices.Max(foreign))
	}
	for _, s := range r.Systems {
		for _, e := range s.Errors {
			fmt.Fprintf(w, "ERROR %s %s\n", s.Name, e)
		}
	}
}
