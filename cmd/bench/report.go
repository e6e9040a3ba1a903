package main

import (
	"cmp"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"text/tabwriter"
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

// The cost table's columns: a counter, its heading and how a per-order value prints.
var costColumns = []struct {
	name, heading string
	format        func(float64) string
}{
	{cWALSyncs, "WAL flushes", func(v float64) string { return fmt.Sprintf("%.2f", v) }},
	{cWALBytes, "WAL KiB", func(v float64) string { return fmt.Sprintf("%.1f", v/1024) }},
	{cCommits, "commits", func(v float64) string { return fmt.Sprintf("%.1f", v) }},
	{cPublished, "msgs published", func(v float64) string { return fmt.Sprintf("%.1f", v) }},
	{cDelivered, "msgs delivered", func(v float64) string { return fmt.Sprintf("%.1f", v) }},
	{cServiceCPU, "CPU ms service", func(v float64) string { return fmt.Sprintf("%.2f", v) }},
	{cPostgreCPU, "CPU ms PostgreSQL", func(v float64) string { return fmt.Sprintf("%.2f", v) }},
	{cRabbitCPU, "CPU ms RabbitMQ", func(v float64) string { return fmt.Sprintf("%.2f", v) }},
}

// cpuNames are the CPU counters; their sum is the "all" column.
var cpuNames = []string{cServiceCPU, cPostgreCPU, cRabbitCPU}

// perOrderCells is the window's figures per paid order, one cell per cost column and a
// last one for the CPU of the three together ("n/a" for what was not measured).
func (w costWindow) perOrderCells() []string {
	cells := make([]string, 0, len(costColumns)+1)
	for _, c := range costColumns {
		if v, ok := w.perOrder(c.name); ok {
			cells = append(cells, c.format(v))
		} else {
			cells = append(cells, "n/a")
		}
	}
	all, ok := 0.0, w.paid > 0
	for _, n := range cpuNames {
		v, have := w.perOrder(n)
		all, ok = all+v, ok && have
	}
	if ok {
		cells = append(cells, fmt.Sprintf("%.2f", all))
	} else {
		cells = append(cells, "n/a")
	}
	return cells
}

// perOrderText is perOrderCells as one line: "WAL flushes 7.00, WAL KiB 3.2, ...".
func (w costWindow) perOrderText() string {
	cells := w.perOrderCells()
	parts := make([]string, 0, len(cells))
	for i, c := range costColumns {
		parts = append(parts, c.heading+" "+cells[i])
	}
	parts = append(parts, "CPU ms all "+cells[len(cells)-1])
	return strings.Join(parts, ", ")
}

// totalsText is the window's totals (not per order), as one line.
func (w costWindow) totalsText() string {
	var parts []string
	for _, c := range costColumns {
		v, ok := w.totals[c.name]
		switch {
		case !ok:
			parts = append(parts, c.heading+" n/a")
		case c.name == cWALBytes:
			parts = append(parts, fmt.Sprintf("%s %.1f", c.heading, v/1024))
		default:
			parts = append(parts, fmt.Sprintf("%s %.0f", c.heading, v))
		}
	}
	return strings.Join(parts, ", ")
}

// printCostTable prints, for each strategy and level, what a paid order cost beside
// orders/s, p50/p99 and the ratio to the raw ceiling; then each strategy's idle window
// (totals, not subtracted) and why any figure is n/a.
func printCostTable(out io.Writer, ceiling float64, runs []*strategyRun) {
	fmt.Fprintln(out, "per paid order (counters from just before a level's load to when its orders are settled; server-wide, see the idle window):")
	fmt.Fprintln(out)
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
	head := "| strategy\t| in flight\t| paid\t| orders/s\t| p50\t| p99\t| x raw ceiling\t|"
	for _, c := range costColumns {
		head += " " + c.heading + "\t|"
	}
	fmt.Fprintln(tw, head+" CPU ms all\t|")
	fmt.Fprintln(tw, strings.Repeat("|---\t", 8+len(costColumns))+"|")
	missing := map[string]string{}
	for _, r := range runs {
		for _, h := range r.hot {
			ops := perSecond(h.stats.Placed, h.stats.Elapsed)
			fmt.Fprintf(tw, "| %s\t| %d\t| %d\t| %.0f\t| %s\t| %s\t| %.2fx\t| %s\t|\n", r.strategy, h.inFlight, h.cost.paid, ops,
				fmtDur(h.stats.Latency.P50), fmtDur(h.stats.Latency.P99), ops/max(ceiling, 1), strings.Join(h.cost.perOrderCells(), "\t| "))
			for k, v := range h.cost.missing {
				missing[k] = v
			}
		}
	}
	tw.Flush()
	for _, r := range runs {
		if r.idle != nil {
			fmt.Fprintf(out, "idle window (%s, %s, no load; totals, not subtracted above): %s\n", r.strategy, r.idle.elapsed.Round(100*time.Millisecond), r.idle.totalsText())
		}
	}
	for _, k := range sortedKeys(missing) {
		fmt.Fprintf(out, "n/a %s: %s\n", k, missing[k])
	}
	for _, r := range runs {
		if r.costFrom != "" {
			fmt.Fprintf(out, "counted (%s): %s\n", r.strategy, r.costFrom)
		}
	}
	fmt.Fprintln(out)
}
