package censorlab

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
)

// PrintTable writes the results as a table, one line per cell, then the
// reasons of the expected failures.
func PrintTable(w io.Writer, results []Result) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "SCENARIO\tSYSTEM\tDETECTED BY\tBLOCKED\tDELIVERED\tSECONDS\tVERDICT")
	whys := map[string]string{}
	var order []string
	for _, r := range results {
		rule := r.Rule
		if !r.Detected {
			rule = "-"
		}
		blocked := "no"
		if r.Blocked {
			blocked = "yes"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%.1f\t%s\n", r.Scenario, r.System, rule, blocked,
			percent(r.BytesDelivered, r.BytesExpected), r.Seconds, verdict(r))
		if r.ExpectedFail {
			k := r.System + " in " + r.Scenario
			whys[k] = r.Why
			order = append(order, k)
		}
	}
	tw.Flush()
	if len(order) > 0 {
		fmt.Fprintln(w, "\nExpected failures (known weaknesses):")
		for _, k := range order {
			fmt.Fprintf(w, "  %s: %s\n", k, whys[k])
		}
	}
}

func percent(got, want int64) string {
	if want == 0 {
		return "-"
	}
	if got == want {
		return "100%"
	}
	return fmt.Sprintf("%.1f%%", 100*float64(got)/float64(want))
}

func verdict(r Result) string {
	switch {
	case r.DidNotRun:
		return "FAIL: did not run: " + strings.TrimSpace(r.Detail)
	case r.Baseline && r.MustCatch && r.Detected:
		return "caught (must)"
	case r.Baseline && r.MustCatch:
		return "FAIL: baseline not caught"
	case r.Baseline && r.Detected:
		return "caught"
	case r.Baseline:
		return "passes (not required)"
	case r.ExpectedFail && r.OK && !r.Detected && !r.Blocked:
		return "expected fail, but passed"
	case r.ExpectedFail:
		return "expected fail"
	case r.OK:
		return "ok"
	}
	return "FAIL: " + strings.TrimSpace(r.Detail)
}
