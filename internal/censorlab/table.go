package censorlab

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
)

// PrintTable writes the results as a table, one line per cell, then the
// rules that flagged a benign control (not usable by a censor) and the
// reasons of the expected failures.
func PrintTable(w io.Writer, results []Result) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "SCENARIO\tSYSTEM\tDETECTED BY\tBLOCKED\tDELIVERED\tCONNS\tSECONDS\tVERDICT")
	whys := map[string]string{}
	var order, unusable []string
	for _, r := range results {
		rule := r.Rule
		if !r.Detected {
			rule = "-"
		}
		blocked := "no"
		if r.Blocked {
			blocked = "yes"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d\t%.1f\t%s\n", r.Scenario, r.System, rule, blocked,
			percent(r.BytesDelivered, r.BytesExpected), r.Conns, r.Seconds, verdict(r))
		if r.ExpectedFail {
			k := r.System + " in " + r.Scenario
			whys[k] = fmt.Sprintf("%s (expected rule %s, floor %d bytes)", r.Why, strings.Join(r.ExpectRules, "+"), r.Floor)
			order = append(order, k)
		}
		if r.Control && r.Detected {
			unusable = append(unusable, fmt.Sprintf("%s in %s flags %s: %s", r.Rule, r.Scenario, r.System, r.Detail))
		}
	}
	tw.Flush()
	if len(unusable) > 0 {
		fmt.Fprintln(w, "\nNot usable by a censor (flags ordinary browsing, collateral damage):")
		for _, u := range unusable {
			fmt.Fprintf(w, "  %s\n", u)
		}
	}
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
	case r.Control && r.Detected:
		return "NOT USABLE BY A CENSOR: flags benign browsing"
	case r.Control && r.OK:
		return "benign, passes"
	case r.ExpectedFail && r.OK && !r.Detected && !r.Blocked:
		return "expected fail, but passed"
	case r.ExpectedFail && r.OK:
		return "expected fail"
	case r.ExpectedFail:
		return fmt.Sprintf("FAIL: expected %s and %d bytes, got %s and %d", strings.Join(r.ExpectRules, "+"), r.Floor, r.Rule, r.BytesDelivered)
	case r.OK:
		return "ok"
	}
	return "FAIL: " + strings.TrimSpace(r.Detail)
}
