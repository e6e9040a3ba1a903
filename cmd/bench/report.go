package main

import (
	"cmp"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"time"
)

// Report is everything measured for one workload: the attack's own figures (loadStats)
// and one Section per probe. Failures are broken guarantees; any makes the exit status
// non-zero.
type Report struct {
	Workload    string
	About       string
	Concurrency int
	Rate        int // requests per second; 0 unbounded
	// NoAttack marks a workload that is not a checkout attack (fanout): its report is its
	// sections alone.
	NoAttack bool
	loadStats
	Sections []Section
	Failures []string
}

// Section is a probe's block of figures.
type Section struct {
	Title string
	Lines []Line
}

// Line is one labelled figure.
type Line struct {
	Label string
	Value string
}

// Add appends a figure to the section.
func (s *Section) Add(label, format string, args ...any) {
	s.Lines = append(s.Lines, Line{Label: label, Value: fmt.Sprintf(format, args...)})
}

// Fail records a broken guarantee.
func (r *Report) Fail(format string, args ...any) {
	r.Failures = append(r.Failures, fmt.Sprintf(format, args...))
}

// CheckoutsPerSecond is the rate of successful orders over the attack.
func (r *Report) CheckoutsPerSecond() float64 { return perSecond(r.Placed, r.Elapsed) }

// RequestsPerSecond is the rate of answered requests over the attack.
func (r *Report) RequestsPerSecond() float64 { return perSecond(r.Requests, r.Elapsed) }

// Print writes the report as one block of aligned lines.
func (r *Report) Print(w io.Writer) {
	var lines []Line
	add := func(label, format string, args ...any) {
		lines = append(lines, Line{label, fmt.Sprintf(format, args...)})
	}
	title := fmt.Sprintf("== %s: %s", r.Workload, r.About)
	if r.Interrupted {
		title += " (interrupted)"
	}
	if !r.NoAttack {
		add("requests", "%d in %s (max %d in flight, rate %s)", r.Requests, r.Elapsed.Round(time.Millisecond), r.Concurrency, rateText(r.Rate))
		if r.OutOfStock > 0 && r.LastPlaced > 0 {
			// Sold out: the rate over the selling window says more than the one over the run.
			add("checkouts/s", "%.1f (%.1f until the last order)", r.CheckoutsPerSecond(), perSecond(r.Placed, r.LastPlaced))
		} else {
			add("checkouts/s", "%.1f", r.CheckoutsPerSecond())
		}
		add("req/s", "%.1f", r.RequestsPerSecond())
		if r.Requests > 0 {
			l := r.Latency
			add("latency (checkout)", "p50 %s  p95 %s  p99 %s  (min %s, max %s)",
				fmtDur(l.P50), fmtDur(l.P95), fmtDur(l.P99), fmtDur(l.Min), fmtDur(l.Max))
		}
		if r.Placed > 0 {
			add("placed", "%d (the last one answered %s into the run)", r.Placed, r.LastPlaced.Round(10*time.Millisecond))
		} else {
			add("placed", "0")
		}
		add("OUT_OF_STOCK", "%d", r.OutOfStock)
		add("other errors", "%d", r.OtherErrors())
		kinds := slices.SortedFunc(maps.Keys(r.Errors), func(a, b string) int {
			return cmp.Or(cmp.Compare(r.Errors[b], r.Errors[a]), cmp.Compare(a, b))
		})
		for _, k := range kinds {
			add("  "+k, "%d", r.Errors[k])
		}
	}
	type block struct {
		title string
		lines []Line
	}
	blocks := []block{{"", lines}}
	for _, s := range r.Sections {
		blocks = append(blocks, block{s.Title, s.Lines})
	}
	width := 0
	for _, b := range blocks {
		for _, l := range b.lines {
			width = max(width, len(l.Label))
		}
	}
	fmt.Fprintln(w, title)
	for _, b := range blocks {
		if b.title != "" {
			fmt.Fprintf(w, "   -- %s\n", b.title)
		}
		for _, l := range b.lines {
			fmt.Fprintf(w, "   %-*s  %s\n", width, l.Label, l.Value)
		}
	}
	if len(r.Failures) == 0 {
		fmt.Fprintf(w, "   %-*s  %s\n\n", width, "result", "OK")
		return
	}
	fmt.Fprintf(w, "   %-*s  FAILED\n", width, "result")
	for _, f := range r.Failures {
		fmt.Fprintf(w, "   %-*s  - %s\n", width, "", f)
	}
	fmt.Fprintln(w)
}

// fmtDur prints a latency with a precision that suits its size.
func fmtDur(d time.Duration) string {
	switch {
	case d >= 10*time.Second:
		return d.Round(100 * time.Millisecond).String()
	case d >= time.Second:
		return d.Round(10 * time.Millisecond).String()
	case d >= 10*time.Millisecond:
		return fmt.Sprintf("%.1fms", float64(d)/float64(time.Millisecond))
	default:
		return fmt.Sprintf("%.2fms", float64(d)/float64(time.Millisecond))
	}
}

func sortedKeys[V any](m map[string]V) []string {
	return slices.Sorted(maps.Keys(m))
}

// countsText prints a map of counts as "A 3, B 1" in key order.
func countsText(m map[string]int) string {
	parts := make([]string, 0, len(m))
	for _, k := range sortedKeys(m) {
		parts = append(parts, fmt.Sprintf("%s %d", k, m[k]))
	}
	return strings.Join(parts, ", ")
}

// durStats is a distribution of durations: its size and a few quantiles.
type durStats struct {
	N             int
	P50, P99, Max time.Duration
}

// String prints the distribution as "p50 1.2ms  p99 3.4ms  max 5.6ms".
func (d durStats) String() string {
	if d.N == 0 {
		return "n/a (no samples)"
	}
	return fmt.Sprintf("p50 %s  p99 %s  max %s", fmtDur(d.P50), fmtDur(d.P99), fmtDur(d.Max))
}

// distribution summarises samples (in any order; ds is sorted in place). Quantiles
// interpolate between the closest ranks, as PostgreSQL's percentile_cont does.
func distribution(ds []time.Duration) durStats {
	if len(ds) == 0 {
		return durStats{}
	}
	slices.Sort(ds)
	return durStats{N: len(ds), P50: quantile(ds, 0.5), P99: quantile(ds, 0.99), Max: ds[len(ds)-1]}
}

// quantile of sorted samples, q in [0, 1], interpolated linearly between ranks.
func quantile(sorted []time.Duration, q float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	pos := q * float64(len(sorted)-1)
	lo := int(pos)
	if lo >= len(sorted)-1 {
		return sorted[len(sorted)-1]
	}
	frac := pos - float64(lo)
	return sorted[lo] + time.Duration(frac*float64(sorted[lo+1]-sorted[lo]))
}
