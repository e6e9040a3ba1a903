package analytics_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/checkout-backend/checkout/internal/analytics"
	"github.com/checkout-backend/checkout/internal/analytics/analyticstest"
	"github.com/checkout-backend/checkout/internal/analytics/parquetsink"
	"github.com/checkout-backend/checkout/internal/analytics/report"
	"github.com/checkout-backend/checkout/internal/event"
	clog "github.com/checkout-backend/checkout/internal/platform/log"
)

// TestParquet_RoundTrip_MatchesDatabase runs a sale through the real stack (API, relay,
// RabbitMQ, saga workers, the analytics consumer) and reads the Parquet files back: every
// order, line, payment outcome, status change and cart is there once, with the values the
// database holds.
func TestParquet_RoundTrip_MatchesDatabase(t *testing.T) {
	t.Parallel()
	sale := analyticstest.Run(t)
	s := sale.Stack
	d, err := report.Load(sale.Dir, report.Window{})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()

	// The layout: Hive partitions by hour, only finished files.
	layout := regexp.MustCompile(`^table=(orders|order_lines|payments|status_changes|carts|stock)/dt=\d{4}-\d{2}-\d{2}/hour=\d{2}/part-[0-9a-f-]{36}\.parquet$`)
	files := 0
	filepath.WalkDir(sale.Dir, func(p string, e os.DirEntry, err error) error {
		if err != nil || e.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(sale.Dir, p)
		if !layout.MatchString(filepath.ToSlash(rel)) {
			t.Errorf("unexpected file %s (a file in progress, or outside the layout)", rel)
		}
		files++
		return nil
	})
	if files == 0 || files != d.Files {
		t.Fatalf("%d files on disk, %d read", files, d.Files)
	}

	// Orders.
	var orders []struct {
		ID         string    `bun:"id"`
		CustomerID string    `bun:"customer_id"`
		Total      int64     `bun:"total_cents"`
		Currency   string    `bun:"currency"`
		CreatedAt  time.Time `bun:"created_at"`
		Status     string    `bun:"status"`
		Reason     *string   `bun:"payment_failure_reason"`
		CartID     *string   `bun:"cart_id"`
		Lines      int       `bun:"lines"`
	}
	if err := s.DB.NewRaw(`SELECT o.id, o.customer_id, o.total_cents, o.currency, o.created_at, o.status, o.payment_failure_reason,
		(SELECT c.id FROM carts c WHERE c.order_id = o.id) AS cart_id,
		(SELECT count(*) FROM order_items i WHERE i.order_id = o.id) AS lines FROM orders o`).Scan(ctx, &orders); err != nil {
		t.Fatal(err)
	}
	want := analyticstest.FlashStock + analyticstest.CartsOrdered + analyticstest.Declined + analyticstest.Insufficient + analyticstest.EuroOrders
	if len(orders) != want || len(d.Orders) != len(orders) {
		t.Fatalf("%d orders in Parquet, %d in the database, want %d", len(d.Orders), len(orders), want)
	}
	got := map[string]analytics.Order{}
	for _, o := range d.Orders {
		got[o.OrderID] = o
	}
	paid, failed := 0, 0
	for _, o := range orders {
		g, ok := got[o.ID]
		if !ok {
			t.Fatalf("order %s missing from Parquet", o.ID)
		}
		cart := ""
		if o.CartID != nil {
			cart = *o.CartID
		}
		if g.CustomerID != o.CustomerID || g.TotalCents != o.Total || g.Currency != o.Currency || int(g.Lines) != o.Lines ||
			!g.PlacedAt.Equal(o.CreatedAt) || g.CartID != cart {
			t.Errorf("order %s: Parquet %+v, database %+v", o.ID, g, o)
		}
		switch o.Status {
		case "PAID":
			paid++
		case "PAYMENT_FAILED":
			failed++
		}
	}

	// Order lines.
	var lines []struct {
		OrderID string `bun:"order_id"`
		LineNo  int32  `bun:"line_no"`
		SKU     string `bun:"sku"`
		Qty     int32  `bun:"quantity"`
		Unit    int64  `bun:"unit_price_cents"`
	}
	if err := s.DB.NewRaw("SELECT order_id, line_no, sku, quantity, unit_price_cents FROM order_items").Scan(ctx, &lines); err != nil {
		t.Fatal(err)
	}
	type lineKey struct {
		order string
		no    int32
	}
	gotLines := map[lineKey]analytics.OrderLine{}
	for _, l := range d.OrderLines {
		gotLines[lineKey{l.OrderID, l.LineNo}] = l
	}
	if len(d.OrderLines) != len(lines) || len(gotLines) != len(lines) {
		t.Fatalf("%d order lines in Parquet, %d in the database", len(d.OrderLines), len(lines))
	}
	for _, l := range lines {
		g := gotLines[lineKey{l.OrderID, l.LineNo}]
		if g.SKU != l.SKU || g.Quantity != l.Qty || g.UnitPriceCents != l.Unit || g.Currency != got[l.OrderID].Currency {
			t.Errorf("line %s/%d: Parquet %+v, database %+v", l.OrderID, l.LineNo, g, l)
		}
	}

	// Payments: one outcome per order that has one, with its reason and amount.
	if len(d.Payments) != paid+failed || paid == 0 || failed != analyticstest.Declined+analyticstest.Insufficient {
		t.Fatalf("%d payments in Parquet; database: %d paid, %d failed", len(d.Payments), paid, failed)
	}
	for _, p := range d.Payments {
		var o = orders[0]
		for _, x := range orders {
			if x.ID == p.OrderID {
				o = x
			}
		}
		reason := ""
		if o.Reason != nil {
			reason = *o.Reason
		}
		wantOutcome := map[string]string{"PAID": analytics.PaymentSucceeded, "PAYMENT_FAILED": analytics.PaymentFailed}[o.Status]
		if o.ID != p.OrderID || p.Outcome != wantOutcome || p.Reason != reason || p.AmountCents != o.Total || p.Currency != o.Currency {
			t.Errorf("payment %+v, database order %+v", p, o)
		}
	}

	// Status changes: exactly the outbox's order events, with their sequences.
	var events []struct {
		ID       string `bun:"event_id"`
		Type     string `bun:"type"`
		Status   string `bun:"status"`
		Sequence int32  `bun:"sequence"`
	}
	if err := s.DB.NewRaw(`SELECT event_id, type, payload->'order'->>'status' AS status, (payload->'order'->>'sequence')::int AS sequence
		FROM outbox WHERE type LIKE 'order.%'`).Scan(ctx, &events); err != nil {
		t.Fatal(err)
	}
	gotStatus := map[string]analytics.StatusChange{}
	for _, sc := range d.StatusChanges {
		gotStatus[sc.EventID] = sc
	}
	if len(d.StatusChanges) != len(events) {
		t.Fatalf("%d status changes in Parquet, %d order events in the outbox", len(d.StatusChanges), len(events))
	}
	for _, e := range events {
		g, ok := gotStatus[e.ID]
		if !ok || g.Status != e.Status || g.Sequence != e.Sequence {
			t.Errorf("event %s (%s): Parquet %+v", e.ID, e.Type, g)
		}
	}

	// Carts.
	var carts []struct {
		ID         string    `bun:"id"`
		CustomerID string    `bun:"customer_id"`
		CreatedAt  time.Time `bun:"created_at"`
	}
	if err := s.DB.NewRaw("SELECT id, customer_id, created_at FROM carts").Scan(ctx, &carts); err != nil {
		t.Fatal(err)
	}
	if len(carts) != analyticstest.CartsMade || len(d.Carts) != len(carts) {
		t.Fatalf("%d carts in Parquet, %d in the database", len(d.Carts), len(carts))
	}
	gotCarts := map[string]analytics.Cart{}
	for _, c := range d.Carts {
		gotCarts[c.CartID] = c
	}
	for _, c := range carts {
		if g := gotCarts[c.ID]; g.CustomerID != c.CustomerID || !g.CreatedAt.Equal(c.CreatedAt) {
			t.Errorf("cart %s: Parquet %+v, database %+v", c.ID, g, c)
		}
	}

	// The flash SKU was seen sold out.
	soldOut := false
	for _, st := range d.Stock {
		if st.SKU == analyticstest.FlashSKU && st.Available == 0 {
			soldOut = true
		}
	}
	if !soldOut {
		t.Errorf("no stock observation of %s at 0: %+v", analyticstest.FlashSKU, d.Stock)
	}
	if d.Duplicates != 0 {
		t.Logf("%d duplicate rows dropped (redeliveries)", d.Duplicates)
	}
}

// recordingSink keeps what it is given; fail makes Write fail.
type recordingSink struct {
	mu      sync.Mutex
	batches []analytics.Batch
	fail    error
}

func (s *recordingSink) Write(_ context.Context, b analytics.Batch) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.fail != nil {
		return s.fail
	}
	s.batches = append(s.batches, b)
	return nil
}

func (s *recordingSink) count() (batches, rows int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, b := range s.batches {
		rows += b.Len()
	}
	return len(s.batches), rows
}

func placed(t *testing.T, orderID string, items ...event.OrderItemData) event.Envelope {
	t.Helper()
	var total int64
	for _, it := range items {
		total += it.UnitPriceCents * int64(it.Quantity)
	}
	env, err := event.New(event.OrderPlaced, orderID, time.Now(), event.OrderPayload{CustomerID: "c-" + orderID,
		Order: event.OrderData{ID: orderID, Status: "PENDING_PAYMENT", Sequence: 1, TotalCents: total, Currency: "USD",
			UpdatedAt: time.Now().UTC(), Items: items}})
	if err != nil {
		t.Fatal(err)
	}
	return env
}

func startFlusher(t *testing.T, a *analytics.Analytics) {
	ctx, cancel := context.WithCancel(context.Background())
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() { defer close(done); a.RunFlusher(ctx, stop) }()
	t.Cleanup(func() { cancel(); close(stop); <-done })
}

// TestConsumer_AcksOnlyAfterTheBatchIsWritten: a handler returns nil (the broker acks)
// only after the sink took its batch; a failing sink gives the events back.
func TestConsumer_AcksOnlyAfterTheBatchIsWritten(t *testing.T) {
	t.Parallel()
	t.Run("FullBatch_WrittenWithoutWaitingForTheTimer", func(t *testing.T) {
		t.Parallel()
		sink := &recordingSink{}
		a, err := analytics.New(sink, time.Now, analytics.Options{MaxBatch: 3, FlushInterval: time.Hour, Logger: clog.New(io.Discard, 8)})
		if err != nil {
			t.Fatal(err)
		}
		startFlusher(t, a)
		var wg sync.WaitGroup
		errs := make(chan error, 3)
		for i := range 3 {
			env := placed(t, "o"+string(rune('a'+i)), event.OrderItemData{SKU: "S", Quantity: 1, UnitPriceCents: 100})
			wg.Add(1)
			go func() {
				defer wg.Done()
				errs <- a.Handle(context.Background(), env)
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			if err != nil {
				t.Fatal(err)
			}
		}
		// Three events: three orders, three lines, three status changes, in one batch.
		if b, rows := sink.count(); b != 1 || rows != 9 {
			t.Fatalf("%d batches with %d rows, want 1 with 9", b, rows)
		}
	})
	t.Run("PartialBatch_WrittenByTheTimer", func(t *testing.T) {
		t.Parallel()
		sink := &recordingSink{}
		a, _ := analytics.New(sink, time.Now, analytics.Options{MaxBatch: 100, FlushInterval: 20 * time.Millisecond, Logger: clog.New(io.Discard, 8)})
		startFlusher(t, a)
		if err := a.Handle(context.Background(), placed(t, "o1", event.OrderItemData{SKU: "S", Quantity: 2, UnitPriceCents: 100})); err != nil {
			t.Fatal(err)
		}
		if b, rows := sink.count(); b != 1 || rows != 3 {
			t.Fatalf("%d batches with %d rows, want 1 with 3", b, rows)
		}
	})
	t.Run("SinkDown_EventsGivenBack", func(t *testing.T) {
		t.Parallel()
		sink := &recordingSink{fail: errors.New("disk full")}
		a, _ := analytics.New(sink, time.Now, analytics.Options{MaxBatch: 1, WriteTimeout: 50 * time.Millisecond, Logger: clog.New(io.Discard, 8)})
		startFlusher(t, a)
		if err := a.Handle(context.Background(), placed(t, "o1")); err == nil {
			t.Fatal("handler acked an event its sink did not write")
		}
	})
	t.Run("Undecodable_DeadLettered", func(t *testing.T) {
		t.Parallel()
		a, _ := analytics.New(&recordingSink{}, time.Now, analytics.Options{Logger: clog.New(io.Discard, 8)})
		env := event.Envelope{ID: "e1", Type: event.OrderPaid, Payload: json.RawMessage(`{"order": 7}`)}
		if err := a.Handle(context.Background(), env); err == nil || !strings.Contains(err.Error(), "decode") {
			t.Fatalf("want a permanent decode error, got %v", err)
		}
	})
}

// TestConsumer_ClockIsADependency: New refuses a nil clock, and a batch's stock
// observations carry the time of the clock it was given.
func TestConsumer_ClockIsADependency(t *testing.T) {
	t.Parallel()
	if _, err := analytics.New(&recordingSink{}, nil, analytics.Options{}); err == nil {
		t.Fatal("analytics.New took a nil clock")
	}
	at := time.Date(2031, 3, 4, 5, 6, 7, 0, time.UTC)
	sink := &recordingSink{}
	a, err := analytics.New(sink, func() time.Time { return at }, analytics.Options{MaxBatch: 1, Logger: clog.New(io.Discard, 8),
		Stock: func(context.Context, []string) (map[string]int, error) { return map[string]int{"S": 4}, nil }})
	if err != nil {
		t.Fatal(err)
	}
	startFlusher(t, a)
	if err := a.Handle(context.Background(), placed(t, "o1", event.OrderItemData{SKU: "S", Quantity: 1, UnitPriceCents: 100})); err != nil {
		t.Fatal(err)
	}
	sink.mu.Lock()
	defer sink.mu.Unlock()
	if len(sink.batches) != 1 || len(sink.batches[0].Stock) != 1 || !sink.batches[0].Stock[0].ObservedAt.Equal(at) {
		t.Fatalf("stock observations %+v, want one observed at the clock's %s", sink.batches, at)
	}
}

// TestRedelivery_CountedOnce: an event written, then delivered again to a new process
// (the ack was lost in a crash) lands in a second file; the report counts it once.
func TestRedelivery_CountedOnce(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	env := placed(t, "o-dup", event.OrderItemData{SKU: "S", Quantity: 2, UnitPriceCents: 500})
	for range 2 { // two processes, one after the other
		sink, err := parquetsink.New(dir)
		if err != nil {
			t.Fatal(err)
		}
		a, _ := analytics.New(sink, time.Now, analytics.Options{MaxBatch: 1, Logger: clog.New(io.Discard, 8)})
		ctx, cancel := context.WithCancel(context.Background())
		stop, done := make(chan struct{}), make(chan struct{})
		go func() { defer close(done); a.RunFlusher(ctx, stop) }()
		if err := a.Handle(context.Background(), env); err != nil {
			t.Fatal(err)
		}
		cancel()
		close(stop)
		<-done
	}
	d, err := report.Load(dir, report.Window{})
	if err != nil {
		t.Fatal(err)
	}
	if d.Files != 6 || d.Duplicates != 3 {
		t.Fatalf("%d files, %d duplicates; want 6 files (2 copies of 3 tables), 3 duplicates", d.Files, d.Duplicates)
	}
	r := report.Compute(d)
	if r.Orders != 1 || len(d.OrderLines) != 1 || r.Revenue[0].PlacedCents != 1000 {
		t.Fatalf("a redelivered event counted twice: %d orders, %d lines, %+v", r.Orders, len(d.OrderLines), r.Revenue)
	}
}

// TestFacts_OrderLinesComeFromTheEvent checks the event's lines make the line facts.
func TestFacts_OrderLinesComeFromTheEvent(t *testing.T) {
	t.Parallel()
	env := placed(t, "o1", event.OrderItemData{SKU: "A", Quantity: 2, UnitPriceCents: 150}, event.OrderItemData{SKU: "B", Quantity: 1, UnitPriceCents: 99})
	b, err := analytics.Facts(env)
	if err != nil {
		t.Fatal(err)
	}
	if len(b.Orders) != 1 || b.Orders[0].Lines != 2 || b.Orders[0].Units != 3 || b.Orders[0].TotalCents != 399 {
		t.Fatalf("orders %+v", b.Orders)
	}
	skus := []string{}
	for _, l := range b.OrderLines {
		skus = append(skus, l.SKU)
	}
	sort.Strings(skus)
	if strings.Join(skus, ",") != "A,B" || b.OrderLines[0].LineNo != 1 || b.OrderLines[1].LineNo != 2 {
		t.Fatalf("lines %+v", b.OrderLines)
	}
}
