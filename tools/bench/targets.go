package main

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// target is one in-process goal of issue 16, read from `go test -bench`
// output: a metric of one benchmark run on one core (-cpu 1, so the name
// has no -N suffix), with the figure it must reach.
type target struct {
	Bench, Metric, Goal string
	Min                 float64
	// Values are the metric's figures over the runs (-count), in order.
	Values []float64
}

// inProcessTargets are the in-process goals. x_naive is checked
// against 8: the naive map round trip must take at least 8 times as long.
func inProcessTargets() []target {
	return []target{
		{Bench: "BenchmarkCloudTrailObject", Metric: "x_gunzip", Goal: "≥ 0.5", Min: 0.5},
		{Bench: "BenchmarkCloudTrailObject", Metric: "x_naive", Goal: "≥ 8", Min: 8},
		{Bench: "BenchmarkVPCFlowObject", Metric: "lines/s", Goal: "≥ 1.5 M", Min: 1.5e6},
	}
}

// parseTargets fills each target's Values from go test output: the lines
// of its benchmark without a -N suffix (the -cpu 1 runs).
func parseTargets(out string, ts []target) []target {
	for line := range strings.Lines(out) {
		f := strings.Fields(line)
		if len(f) < 4 {
			continue
		}
		for i := range ts {
			if f[0] != ts[i].Bench {
				continue
			}
			// Metrics come as "<value> <unit>" pairs after the name and
			// the iteration count.
			for k := 2; k+1 < len(f); k += 2 {
				if f[k+1] == ts[i].Metric {
					if v, err := strconv.ParseFloat(f[k], 64); err == nil {
						ts[i].Values = append(ts[i].Values, v)
					}
				}
			}
		}
	}
	return ts
}

// targetsMarkdown is the targets as a table: every run's figure, the lowest, and
// whether the lowest meets the goal.
func targetsMarkdown(ts []target) string {
	var b strings.Builder
	b.WriteString("| benchmark (-cpu 1) | metric | runs | lowest | goal | holds |\n|---|---|---|---|---|---|\n")
	for _, t := range ts {
		if len(t.Values) == 0 {
			fmt.Fprintf(&b, "| %s | %s | not run | – | %s | – |\n", t.Bench, t.Metric, t.Goal)
			continue
		}
		var runs []string
		for _, v := range t.Values {
			runs = append(runs, formatMetric(v))
		}
		low := slices.Min(t.Values)
		holds := "yes"
		if low < t.Min {
			holds = "**no**"
		}
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %s | %s |\n", t.Bench, t.Metric, strings.Join(runs, ", "), formatMetric(low), t.Goal, holds)
	}
	return b.String()
}

func formatMetric(v float64) string {
	if v >= 1e5 {
		return fmt.Sprintf("%.2f M", v/1e6)
	}
	if v < 10 {
		return strconv.FormatFloat(v, 'f', 3, 64)
	}
	return strconv.FormatFloat(v, 'f', 1, 64)
}
