// Package analyticstest runs a generated flash sale through the whole service (API,
// relay, saga workers and the analytics consumer writing Parquet files) for the
// analytics and report tests.
package analyticstest

import (
	"context"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/uptrace/bun"

	"github.com/checkout-backend/checkout/internal/analytics"
	"github.com/checkout-backend/checkout/internal/analytics/parquetsink"
	"github.com/checkout-backend/checkout/internal/analytics/report"
	"github.com/checkout-backend/checkout/internal/broker"
	"github.com/checkout-backend/checkout/internal/catalog"
	"github.com/checkout-backend/checkout/internal/checkout"
	clog "github.com/checkout-backend/checkout/internal/platform/log"
	"github.com/checkout-backend/checkout/internal/store"
	"github.com/checkout-backend/checkout/internal/testutil"
)

// The sale's shape. Stock and buyers of the flash SKU make it sell out.
const (
	FlashSKU     = "FLASH"
	FlashStock   = 10
	FlashBuyers  = 16
	TeeSKU       = "TEE"
	MugSKU       = "MUG" // priced in EUR
	CartsMade    = 6
	CartsOrdered = 4
	Declined     = 3 // tok_chargeDeclined: card_declined
	Insufficient = 2 // tok_chargeDeclinedInsufficientFunds: insufficient_funds
	EuroOrders   = 3
)

// Sale is a finished sale: every order reached its final status and every event of it
// is in the Parquet files under Dir.
type Sale struct {
	Stack *testutil.Stack
	Dir   string
	// Events is the number of analytics events (order.* and cart.created) written.
	Events int
	// Flushes counts the consumer's successful batch writes.
	Flushes *atomic.Int64
}

// Run runs the sale and waits until the analytics files hold all its events.
func Run(t testing.TB) *Sale {
	t.Helper()
	s := testutil.NewStack(t, testutil.StackOptions{Extra: []broker.Consumer{analytics.Consumer}})
	dir := t.TempDir()
	sink, err := parquetsink.New(dir)
	if err != nil {
		t.Fatal(err)
	}
	sale := &Sale{Stack: s, Dir: dir, Flushes: &atomic.Int64{}}
	flushed := make(chan struct{}, 1)
	a, err := analytics.New(sink, time.Now, analytics.Options{MaxBatch: 32, FlushInterval: 100 * time.Millisecond,
		Stock: func(ctx context.Context, skus []string) (map[string]int, error) {
			return store.Available(ctx, s.DB.DB, skus)
		},
		Logger: clog.New(io.Discard, 8), // errors reach the test through Observe
		Observe: func(events, rows int, took time.Duration, err error) {
			if err != nil {
				t.Errorf("analytics batch write: %v", err)
				return
			}
			sale.Flushes.Add(1)
			select {
			case flushed <- struct{}{}:
			default:
			}
		}})
	if err != nil {
		t.Fatal(err)
	}
	sub := broker.New(testutil.AMQPURL(), s.Topology, clog.New(io.Discard, 8))
	t.Cleanup(func() { sub.Close() })
	s.Go(func(ctx context.Context) error { return a.Run(ctx, sub, broker.ConsumeOptions{}) })

	ctx := context.Background()
	s.Product(t, FlashSKU, 1999, map[string]int{"eu-1": FlashStock/2 + 1, "us-1": FlashStock - FlashStock/2 - 1})
	s.Product(t, TeeSKU, 2500, map[string]int{"eu-1": 500})
	if _, err := s.Catalog.UpsertProduct(ctx, catalog.Product{SKU: MugSKU, Name: "Mug", PriceCents: 1200, Currency: "EUR"}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Catalog.SetStock(ctx, MugSKU, "eu-1", 500); err != nil {
		t.Fatal(err)
	}

	var ids []string
	var mu sync.Mutex
	add := func(id string) { mu.Lock(); ids = append(ids, id); mu.Unlock() }

	// The flash sale: more buyers than units, all at once.
	var wg sync.WaitGroup
	for i := range FlashBuyers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			o, _, err := s.Service.Checkout(ctx, checkout.Actor{CustomerID: fmt.Sprintf("flash-%d", i)},
				checkout.CheckoutInput{IdempotencyKey: "flash", PaymentToken: "tok_visa", Items: []checkout.Line{{SKU: FlashSKU, Quantity: 1}}})
			if err == nil {
				add(o.ID)
			} else if ce, ok := err.(*checkout.Error); !ok || ce.Code != checkout.OutOfStock {
				t.Errorf("flash checkout: %v", err)
			}
		}()
	}
	wg.Wait()

	// Carts: some checked out, some abandoned.
	for i := range CartsMade {
		actor := checkout.Actor{CustomerID: fmt.Sprintf("cart-%d", i)}
		c, err := s.Service.CreateCart(ctx, actor)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := s.Service.SetCartItem(ctx, actor, c.ID, TeeSKU, 1+i%3, true); err != nil {
			t.Fatal(err)
		}
		if i < CartsOrdered {
			id := c.ID
			o, _, err := s.Service.Checkout(ctx, actor, checkout.CheckoutInput{IdempotencyKey: "cart", PaymentToken: "tok_visa", CartID: &id})
			if err != nil {
				t.Fatal(err)
			}
			add(o.ID)
		}
	}
	// Declines, and orders in another currency.
	for i := range Declined {
		add(s.Checkout(t, fmt.Sprintf("declined-%d", i), "k", "tok_chargeDeclined", checkout.Line{SKU: TeeSKU, Quantity: 1}))
	}
	for i := range Insufficient {
		add(s.Checkout(t, fmt.Sprintf("poor-%d", i), "k", "tok_chargeDeclinedInsufficientFunds", checkout.Line{SKU: TeeSKU, Quantity: 2}))
	}
	for i := range EuroOrders {
		add(s.Checkout(t, fmt.Sprintf("euro-%d", i), "k", "tok_visa", checkout.Line{SKU: MugSKU, Quantity: i + 1}))
	}
	for _, id := range ids {
		o, err := s.Orders.Order(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		want := checkout.StatusPaid
		if o.CustomerID[:4] == "decl" || o.CustomerID[:4] == "poor" {
			want = checkout.StatusPaymentFailed
		}
		s.WaitStatus(t, id, want, 30*time.Second)
	}
	sale.Events = s.Count(t, "SELECT count(*) FROM outbox WHERE type IN (?)", bun.List(analytics.Types))
	// Wait on the consumer's flushes until the files hold every event.
	deadline := time.After(60 * time.Second)
	for {
		d, err := report.Load(dir, report.Window{})
		if err != nil {
			t.Fatal(err)
		}
		if len(d.StatusChanges)+len(d.Carts) >= sale.Events {
			return sale
		}
		select {
		case <-flushed:
		case <-time.After(time.Second): // a flush that raced the read above
		case <-deadline:
			t.Fatalf("analytics files hold %d of %d events after 60s", len(d.StatusChanges)+len(d.Carts), sale.Events)
		}
	}
}
