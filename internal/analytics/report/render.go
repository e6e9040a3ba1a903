package report

import (
	"fmt"
	"html/template"
	"io"
	"math"
	"strings"
	"text/tabwriter"
	"time"
)

// Money formats minor units as major units with two decimals (the report's currencies
// have two; the amount in minor units is exact in the data).
func Money(cents int64, currency string) string {
	sign := ""
	if cents < 0 {
		sign, cents = "-", -cents
	}
	return fmt.Sprintf("%s%d.%02d %s", sign, cents/100, cents%100, currency)
}

func pct(f float64) string { return fmt.Sprintf("%.1f%%", 100*f) }

func dur(d time.Duration) string {
	switch {
	case d == 0:
		return "0s"
	case d < time.Millisecond:
		return d.String()
	case d < time.Second:
		return fmt.Sprintf("%dms", d.Milliseconds())
	default:
		return d.Round(10 * time.Millisecond).String()
	}
}

// Text writes the report as plain text.
func Text(w io.Writer, r Report) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	p := func(format string, a ...any) { fmt.Fprintf(tw, format, a...) }
	if r.Orders == 0 && r.Carts == 0 && len(r.Payments.Reasons) == 0 && r.Payments.Succeeded == 0 {
		p("Checkout report: no events in the window (%d files read)\n", r.Files)
		return tw.Flush()
	}
	p("Checkout report %s .. %s (UTC)\n", r.From.UTC().Format(time.RFC3339), r.To.UTC().Format(time.RFC3339))
	p("%d files read, %d duplicate rows dropped (events delivered twice)\n\n", r.Files, r.Duplicates)

	p("Orders per minute (%d orders, peak %d/min)\n", r.Orders, r.PeakPerMinute)
	for _, m := range r.OrdersPerMinute {
		p("  %s\t%d\t%s\n", m.Minute.UTC().Format("2006-01-02 15:04"), m.Orders, strings.Repeat("#", scaled(m.Orders, r.PeakPerMinute, 40)))
	}
	p("\nRevenue by currency\n")
	p("  currency\tplaced orders\tplaced value\tpaid orders\tpaid revenue\n")
	for _, v := range r.Revenue {
		p("  %s\t%d\t%s\t%d\t%s\n", v.Currency, v.PlacedOrders, Money(v.PlacedCents, v.Currency), v.PaidOrders, Money(v.PaidCents, v.Currency))
	}
	p("\nPayments\n")
	p("  succeeded\t%d\n  failed\t%d\n  failure rate\t%s\n", r.Payments.Succeeded, r.Payments.Failed, pct(r.Payments.FailureRate))
	for _, rc := range r.Payments.Reasons {
		p("  reason %s\t%d\n", rc.Reason, rc.Count)
	}
	p("\nConversion (carts to orders)\n")
	p("  carts created\t%d\n  carts checked out\t%d\n  conversion\t%s\n  orders placed without a cart\t%d\n",
		r.Conversion.CartsCreated, r.Conversion.CartsConverted, pct(r.Conversion.Rate), r.Conversion.OrdersWithoutCart)
	p("\nFlash-sale sell-out (first order to the order that took the last unit)\n")
	if len(r.SellOut) == 0 {
		p("  no SKU seen sold out\n")
	} else {
		p("  sku\tsold out in\torders\tunits\tfirst order\tlast unit\n")
		for _, s := range r.SellOut {
			p("  %s\t%s\t%d\t%d\t%s\t%s\n", s.SKU, dur(s.Duration), s.Orders, s.Units,
				s.FirstOrderAt.UTC().Format("15:04:05.000"), s.LastUnitAt.UTC().Format("15:04:05.000"))
		}
	}
	p("\nCheckout to PAID (%d orders)\n", r.ToPaid.Count)
	p("  p50\t%s\n  p90\t%s\n  p99\t%s\n  max\t%s\n", dur(r.ToPaid.P50), dur(r.ToPaid.P90), dur(r.ToPaid.P99), dur(r.ToPaid.Max))
	return tw.Flush()
}

func scaled(v, peak, width int) int {
	if peak <= 0 || v <= 0 {
		return 0
	}
	return max(1, v*width/peak)
}

// bar is one bar of a chart.
type bar struct {
	Label string
	Value float64
	Text  string
}

// barChart draws a horizontal bar chart as inline SVG: one <rect class="bar"> per bar.
func barChart(name, title string, bars []bar) template.HTML {
	const width, labelW, rowH, pad = 640, 170, 22, 8
	h := pad*2 + rowH*max(len(bars), 1)
	var b strings.Builder
	fmt.Fprintf(&b, `<svg class="chart" data-chart="%s" role="img" aria-label="%s" viewBox="0 0 %d %d" width="%d" height="%d" xmlns="http://www.w3.org/2000/svg">`,
		template.HTMLEscapeString(name), template.HTMLEscapeString(title), width, h, width, h)
	if len(bars) == 0 {
		fmt.Fprintf(&b, `<text x="%d" y="%d" class="empty">no data</text>`, pad, pad+15)
	}
	peak := 0.0
	for _, x := range bars {
		peak = math.Max(peak, x.Value)
	}
	for i, x := range bars {
		y := pad + i*rowH
		w := 0.0
		if peak > 0 {
			w = math.Max(1, (width-labelW-110)*x.Value/peak)
		}
		fmt.Fprintf(&b, `<text x="%d" y="%d" class="label" text-anchor="end">%s</text>`, labelW-6, y+15, template.HTMLEscapeString(x.Label))
		fmt.Fprintf(&b, `<rect class="bar" x="%d" y="%d" width="%.1f" height="%d" data-value="%g"><title>%s: %s</title></rect>`,
			labelW, y+3, w, rowH-6, x.Value, template.HTMLEscapeString(x.Label), template.HTMLEscapeString(x.Text))
		fmt.Fprintf(&b, `<text x="%.1f" y="%d" class="value">%s</text>`, float64(labelW)+w+6, y+15, template.HTMLEscapeString(x.Text))
	}
	b.WriteString(`</svg>`)
	return template.HTML(b.String())
}

// columnChart draws a vertical bar chart (a time series) as inline SVG.
func columnChart(name, title string, bars []bar) template.HTML {
	const height, left, bottom, top = 220, 40, 40, 10
	colW := 14.0
	if len(bars) > 40 {
		colW = math.Max(2, 560/float64(len(bars)))
	}
	width := left + int(colW*float64(max(len(bars), 1))) + 20
	width = max(width, 320)
	var b strings.Builder
	fmt.Fprintf(&b, `<svg class="chart" data-chart="%s" role="img" aria-label="%s" viewBox="0 0 %d %d" width="%d" height="%d" xmlns="http://www.w3.org/2000/svg">`,
		template.HTMLEscapeString(name), template.HTMLEscapeString(title), width, height, width, height)
	peak := 0.0
	for _, x := range bars {
		peak = math.Max(peak, x.Value)
	}
	plotH := float64(height - top - bottom)
	fmt.Fprintf(&b, `<line x1="%d" y1="%d" x2="%d" y2="%d" class="axis"/>`, left, height-bottom, width-10, height-bottom)
	fmt.Fprintf(&b, `<text x="%d" y="%d" class="label" text-anchor="end">%g</text>`, left-4, top+10, peak)
	if len(bars) == 0 {
		fmt.Fprintf(&b, `<text x="%d" y="%d" class="empty">no data</text>`, left+8, top+20)
	}
	for i, x := range bars {
		hgt := 0.0
		if peak > 0 {
			hgt = plotH * x.Value / peak
		}
		xPos := float64(left) + float64(i)*colW
		fmt.Fprintf(&b, `<rect class="bar" x="%.1f" y="%.1f" width="%.1f" height="%.1f" data-value="%g"><title>%s: %s</title></rect>`,
			xPos+1, float64(height-bottom)-hgt, math.Max(1, colW-2), hgt, x.Value, template.HTMLEscapeString(x.Label), template.HTMLEscapeString(x.Text))
		if len(bars) <= 12 || i%int(math.Ceil(float64(len(bars))/12)) == 0 {
			fmt.Fprintf(&b, `<text x="%.1f" y="%d" class="tick" transform="rotate(45 %.1f %d)">%s</text>`, xPos, height-bottom+12, xPos, height-bottom+12, template.HTMLEscapeString(x.Label))
		}
	}
	b.WriteString(`</svg>`)
	return template.HTML(b.String())
}

type page struct {
	R      Report
	Charts []chart
}

type chart struct {
	Title, Note string
	SVG         template.HTML
}

// Charts are the names of the charts of the HTML page (data-chart attributes).
var Charts = []string{"orders-per-minute", "revenue", "payments", "conversion", "sell-out", "checkout-to-paid"}

// HTML writes the report as one self-contained page: inline CSS and SVG, no script, no
// external resource.
func HTML(w io.Writer, r Report) error {
	var perMin, revenue, pay, conv, sell, paid []bar
	for _, m := range r.OrdersPerMinute {
		perMin = append(perMin, bar{Label: m.Minute.UTC().Format("15:04"), Value: float64(m.Orders), Text: fmt.Sprintf("%d orders", m.Orders)})
	}
	for _, v := range r.Revenue {
		revenue = append(revenue, bar{Label: v.Currency + " paid", Value: float64(v.PaidCents), Text: Money(v.PaidCents, v.Currency)})
	}
	pay = append(pay, bar{Label: "succeeded", Value: float64(r.Payments.Succeeded), Text: fmt.Sprint(r.Payments.Succeeded)})
	for _, rc := range r.Payments.Reasons {
		pay = append(pay, bar{Label: "failed: " + rc.Reason, Value: float64(rc.Count), Text: fmt.Sprint(rc.Count)})
	}
	conv = []bar{
		{Label: "carts created", Value: float64(r.Conversion.CartsCreated), Text: fmt.Sprint(r.Conversion.CartsCreated)},
		{Label: "carts checked out", Value: float64(r.Conversion.CartsConverted), Text: fmt.Sprintf("%d (%s)", r.Conversion.CartsConverted, pct(r.Conversion.Rate))},
	}
	for _, s := range r.SellOut {
		sell = append(sell, bar{Label: s.SKU, Value: s.Duration.Seconds(), Text: fmt.Sprintf("%s, %d units", dur(s.Duration), s.Units)})
	}
	if r.ToPaid.Count > 0 {
		for _, q := range []struct {
			n string
			d time.Duration
		}{{"p50", r.ToPaid.P50}, {"p90", r.ToPaid.P90}, {"p99", r.ToPaid.P99}, {"max", r.ToPaid.Max}} {
			paid = append(paid, bar{Label: q.n, Value: q.d.Seconds(), Text: dur(q.d)})
		}
	}
	p := page{R: r, Charts: []chart{
		{Title: "Orders per minute", Note: fmt.Sprintf("%d orders, peak %d per minute", r.Orders, r.PeakPerMinute), SVG: columnChart(Charts[0], "Orders per minute", perMin)},
		{Title: "Revenue by currency", Note: "paid orders, in major units", SVG: barChart(Charts[1], "Revenue by currency", revenue)},
		{Title: "Payments", Note: fmt.Sprintf("failure rate %s", pct(r.Payments.FailureRate)), SVG: barChart(Charts[2], "Payment outcomes", pay)},
		{Title: "Carts to orders", Note: fmt.Sprintf("conversion %s; %d orders without a cart", pct(r.Conversion.Rate), r.Conversion.OrdersWithoutCart), SVG: barChart(Charts[3], "Conversion", conv)},
		{Title: "Flash-sale sell-out per SKU", Note: "first order to the order that took the last unit", SVG: barChart(Charts[4], "Sell-out time", sell)},
		{Title: "Checkout to PAID", Note: fmt.Sprintf("%d orders, nearest-rank percentiles", r.ToPaid.Count), SVG: barChart(Charts[5], "Checkout to PAID", paid)},
	}}
	return pageTmpl.Execute(w, p)
}

var pageTmpl = template.Must(template.New("page").Funcs(template.FuncMap{
	"money": Money, "pct": pct, "dur": dur,
	"ts": func(t time.Time) string { return t.UTC().Format("2006-01-02 15:04:05 MST") },
}).Parse(`<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Checkout report</title>
<style>
body { font: 14px/1.4 system-ui, sans-serif; margin: 2rem; color: #1d2330; background: #fff; }
h1 { font-size: 1.4rem; } h2 { font-size: 1.1rem; margin: 0 0 .2rem; }
section { margin: 1.5rem 0; } .note { color: #5b6474; margin: 0 0 .5rem; }
table { border-collapse: collapse; } td, th { padding: .2rem .8rem .2rem 0; text-align: left; }
svg .bar { fill: #3b6fd8; } svg .label, svg .value, svg .tick, svg .empty { font-size: 11px; fill: #1d2330; }
svg .axis { stroke: #9aa3b2; }
</style>
</head>
<body>
<h1>Checkout report</h1>
<p class="note">{{if .R.From.IsZero}}No events in the window.{{else}}{{ts .R.From}} to {{ts .R.To}}{{end}} &middot; {{.R.Files}} files, {{.R.Duplicates}} duplicate rows dropped</p>
<table>
<tr><th>Orders</th><td>{{.R.Orders}}</td></tr>
<tr><th>Payment failure rate</th><td>{{pct .R.Payments.FailureRate}} ({{.R.Payments.Failed}} of {{.R.Payments.Succeeded}} + {{.R.Payments.Failed}})</td></tr>
<tr><th>Carts to orders</th><td>{{pct .R.Conversion.Rate}}</td></tr>
<tr><th>Checkout to PAID p50 / p90 / p99</th><td>{{dur .R.ToPaid.P50}} / {{dur .R.ToPaid.P90}} / {{dur .R.ToPaid.P99}}</td></tr>
{{range .R.Revenue}}<tr><th>Revenue {{.Currency}}</th><td>{{money .PaidCents .Currency}} paid of {{money .PlacedCents .Currency}} placed</td></tr>
{{end}}</table>
{{range .Charts}}<section>
<h2>{{.Title}}</h2>
<p class="note">{{.Note}}</p>
{{.SVG}}
</section>
{{end}}</body>
</html>
`))
