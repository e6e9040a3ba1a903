package report_test

import (
	"bytes"
	"context"
	"fmt"
	"regexp"
	"testing"
	"time"

	"github.com/checkout-backend/checkout/internal/analytics"
	"github.com/checkout-backend/checkout/internal/analytics/analyticstest"
	"github.com/checkout-backend/checkout/internal/analytics/parquetsink"
	"github.com/checkout-backend/checkout/internal/analytics/report"
)

// TestReport_GeneratedSale_MatchesDatabase computes the report over the Parquet files of
// a sale run through the real stack and checks every figure against the database.
func TestReport_GeneratedSale_MatchesDatabase(t *testing.T) {
	t.Parallel()
	sale := analyticstest.Run(t)
	s := sale.Stack
	d, err := report.Load(sale.Dir, report.Window{})
	if err != nil {
		t.Fatal(err)
	}
	r := report.Compute(d)
	ctx := context.Background()
	db := s.DB

	if n := s.Count(t, "SELECT count(*) FROM orders"); r.Orders != n {
		t.Errorf("orders %d, database %d", r.Orders, n)
	}

	// Orders per minute.
	var perMin []struct {
		Minute time.Time `bun:"minute"`
		N      int       `bun:"n"`
	}
	if err := db.NewRaw("SELECT date_trunc('minute', created_at) AS minute, count(*) AS n FROM orders GROUP BY 1 ORDER BY 1").Scan(ctx, &perMin); err != nil {
		t.Fatal(err)
	}
	got := map[time.Time]int{}
	total := 0
	for _, m := range r.OrdersPerMinute {
		got[m.Minute.UTC()] = m.Orders
		total += m.Orders
	}
	for _, m := range perMin {
		if got[m.Minute.UTC()] != m.N {
			t.Errorf("minute %s: %d orders, database %d", m.Minute, got[m.Minute.UTC()], m.N)
		}
	}
	if total != r.Orders {
		t.Errorf("orders per minute add up to %d, want %d", total, r.Orders)
	}

	// Revenue by currency.
	var rev []struct {
		Currency string `bun:"currency"`
		Placed   int64  `bun:"placed"`
		PlacedN  int    `bun:"placed_n"`
		Paid     int64  `bun:"paid"`
		PaidN    int    `bun:"paid_n"`
	}
	if err := db.NewRaw(`SELECT currency, sum(total_cents) AS placed, count(*) AS placed_n,
		COALESCE(sum(total_cents) FILTER (WHERE status = 'PAID'), 0) AS paid, count(*) FILTER (WHERE status = 'PAID') AS paid_n
		FROM orders GROUP BY currency ORDER BY currency`).Scan(ctx, &rev); err != nil {
		t.Fatal(err)
	}
	if len(rev) != 2 || len(r.Revenue) != len(rev) {
		t.Fatalf("revenue %+v, database %+v", r.Revenue, rev)
	}
	for i, v := range rev {
		g := r.Revenue[i]
		if g.Currency != v.Currency || g.PlacedCents != v.Placed || g.PlacedOrders != v.PlacedN || g.PaidCents != v.Paid || g.PaidOrders != v.PaidN {
			t.Errorf("revenue %+v, database %+v", g, v)
		}
	}

	// Payments: failure rate and reasons.
	paid := s.Count(t, "SELECT count(*) FROM orders WHERE status = 'PAID'")
	failed := s.Count(t, "SELECT count(*) FROM orders WHERE status = 'PAYMENT_FAILED'")
	if r.Payments.Succeeded != paid || r.Payments.Failed != failed || failed == 0 {
		t.Errorf("payments %+v, database %d paid %d failed", r.Payments, paid, failed)
	}
	if want := float64(failed) / float64(paid+failed); r.Payments.FailureRate != want {
		t.Errorf("failure rate %v, want %v", r.Payments.FailureRate, want)
	}
	var reasons []struct {
		Reason string `bun:"reason"`
		N      int    `bun:"n"`
	}
	if err := db.NewRaw(`SELECT payment_failure_reason AS reason, count(*) AS n FROM orders WHERE status = 'PAYMENT_FAILED'
		GROUP BY 1 ORDER BY 2 DESC, 1`).Scan(ctx, &reasons); err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(reasons) != fmt.Sprint(r.Payments.Reasons) || len(reasons) != 2 {
		t.Errorf("reasons %v, database %v", r.Payments.Reasons, reasons)
	}

	// Conversion.
	carts := s.Count(t, "SELECT count(*) FROM carts")
	converted := s.Count(t, "SELECT count(*) FROM carts WHERE order_id IS NOT NULL")
	noCart := s.Count(t, "SELECT count(*) FROM orders o WHERE NOT EXISTS (SELECT 1 FROM carts c WHERE c.order_id = o.id)")
	if r.Conversion.CartsCreated != carts || r.Conversion.CartsConverted != converted || r.Conversion.OrdersWithoutCart != noCart ||
		r.Conversion.Rate != float64(converted)/float64(carts) || converted == 0 || converted == carts {
		t.Errorf("conversion %+v, database %d carts %d converted %d without cart", r.Conversion, carts, converted, noCart)
	}

	// Sell-out: the flash SKU sold out; its first order to the order that took the last unit.
	var flash struct {
		First  time.Time `bun:"first"`
		Last   time.Time `bun:"last"`
		Orders int       `bun:"orders"`
		Units  int       `bun:"units"`
	}
	if err := db.NewRaw(`SELECT min(o.created_at) AS first, max(o.created_at) AS last, count(*) AS orders, sum(i.quantity) AS units
		FROM orders o JOIN order_items i ON i.order_id = o.id WHERE i.sku = ?`, analyticstest.FlashSKU).Scan(ctx, &flash); err != nil {
		t.Fatal(err)
	}
	if len(r.SellOut) != 1 {
		t.Fatalf("sell-out %+v, want the flash SKU alone", r.SellOut)
	}
	so := r.SellOut[0]
	if so.SKU != analyticstest.FlashSKU || !so.FirstOrderAt.Equal(flash.First) || !so.LastUnitAt.Equal(flash.Last) ||
		so.Duration != flash.Last.Sub(flash.First) || so.Orders != flash.Orders || so.Units != analyticstest.FlashStock || flash.Units != analyticstest.FlashStock {
		t.Errorf("sell-out %+v, database %+v", so, flash)
	}

	// Checkout to PAID: nearest-rank percentiles (PostgreSQL's percentile_disc).
	var pc struct {
		P50 time.Duration `bun:"p50"`
		P90 time.Duration `bun:"p90"`
		P99 time.Duration `bun:"p99"`
		Max time.Duration `bun:"max"`
		N   int           `bun:"n"`
	}
	if err := db.NewRaw(`SELECT
		(extract(epoch FROM percentile_disc(0.5) WITHIN GROUP (ORDER BY updated_at - created_at)) * 1e9)::bigint AS p50,
		(extract(epoch FROM percentile_disc(0.9) WITHIN GROUP (ORDER BY updated_at - created_at)) * 1e9)::bigint AS p90,
		(extract(epoch FROM percentile_disc(0.99) WITHIN GROUP (ORDER BY updated_at - created_at)) * 1e9)::bigint AS p99,
		(extract(epoch FROM max(updated_at - created_at)) * 1e9)::bigint AS max, count(*) AS n
		FROM orders WHERE status = 'PAID'`).Scan(ctx, &pc); err != nil {
		t.Fatal(err)
	}
	if r.ToPaid.Count != pc.N || r.ToPaid.P50 != pc.P50 || r.ToPaid.P90 != pc.P90 || r.ToPaid.P99 != pc.P99 || r.ToPaid.Max != pc.Max {
		t.Errorf("checkout to PAID %+v, database %+v", r.ToPaid, pc)
	}

	// The text report says the same.
	var out bytes.Buffer
	if err := report.Text(&out, r); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		fmt.Sprintf(`Orders per minute \(%d orders`, r.Orders),
		fmt.Sprintf(`failure rate\s+%.1f%%`, 100*r.Payments.FailureRate),
		`reason card_declined\s+3\n`, `reason insufficient_funds\s+2\n`,
		regexp.QuoteMeta(report.Money(rev[1].Paid, "USD")), regexp.QuoteMeta(report.Money(rev[0].Paid, "EUR")),
		`FLASH\s+\S+\s+10\s+10\s`, fmt.Sprintf(`carts created\s+%d\n`, carts),
	} {
		if !regexp.MustCompile(want).MatchString(out.String()) {
			t.Errorf("text report lacks %q:\n%s", want, out.String())
		}
	}
	t.Logf("\n%s", out.String())

	t.Run("HTML_InHeadlessChromium", func(t *testing.T) { checkPageInChromium(t, r) })
}

// TestReport_Window_PrunesPartitionsAndRows: --since and --until bound the rows read,
// and partitions wholly outside the window are not opened.
func TestReport_Window_PrunesPartitionsAndRows(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	sink, err := parquetsink.New(dir)
	if err != nil {
		t.Fatal(err)
	}
	var b analytics.Batch
	for i, at := range []time.Time{
		time.Date(2026, 11, 27, 12, 10, 0, 0, time.UTC),  // hour 12: not opened
		time.Date(2026, 11, 27, 13, 29, 59, 0, time.UTC), // hour 13, before since: read, dropped
		time.Date(2026, 11, 27, 13, 30, 0, 0, time.UTC),
		time.Date(2026, 11, 27, 14, 59, 59, 0, time.UTC),
		time.Date(2026, 11, 27, 15, 0, 0, 0, time.UTC), // hour 15, at until: not opened
	} {
		b.Orders = append(b.Orders, analytics.Order{EventID: fmt.Sprint("e", i), OrderID: fmt.Sprint("o", i), PlacedAt: at, TotalCents: 100, Currency: "USD"})
	}
	if err := sink.Write(context.Background(), b); err != nil {
		t.Fatal(err)
	}
	d, err := report.Load(dir, report.Window{Since: time.Date(2026, 11, 27, 13, 30, 0, 0, time.UTC), Until: time.Date(2026, 11, 27, 15, 0, 0, 0, time.UTC)})
	if err != nil {
		t.Fatal(err)
	}
	if len(d.Orders) != 2 || d.Orders[0].OrderID != "o2" || d.Orders[1].OrderID != "o3" {
		t.Fatalf("orders in the window: %+v, want o2 and o3", d.Orders)
	}
	if d.Files != 2 {
		t.Fatalf("%d files opened, want 2 (hours 13 and 14)", d.Files)
	}
}
