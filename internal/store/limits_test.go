package store_test

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/checkout-backend/checkout/internal/catalog"
	"github.com/checkout-backend/checkout/internal/checkout"
	"github.com/checkout-backend/checkout/internal/store"
	"github.com/checkout-backend/checkout/internal/testutil"
)

// limitedProduct makes a product whose units per customer are capped at max.
func (e *strategyEnv) limitedProduct(t *testing.T, sku string, stock, max int) {
	t.Helper()
	ctx := context.Background()
	cat := store.NewCatalog(e.db.DB, time.Now)
	if _, err := cat.UpsertProduct(ctx, catalog.Product{SKU: sku, Name: sku, PriceCents: 100, Currency: "USD", MaxPerCustomer: &max}); err != nil {
		t.Fatal(err)
	}
	if _, err := cat.SetStock(ctx, sku, "w", stock); err != nil {
		t.Fatal(err)
	}
}

// concurrently runs n checkouts of one unit of sku by customer (keys k0...), spread over
// the instances, and tallies the answers by code ("" for placed).
func (e *strategyEnv) concurrently(n int, customer, sku string) (map[checkout.Code]int, []error) {
	var mu sync.Mutex
	codes := map[checkout.Code]int{}
	var other []error
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, _, err := e.checkout(i, customer, fmt.Sprint("k", i), line(sku, 1))
			mu.Lock()
			defer mu.Unlock()
			switch c := checkout.ErrorCode(err); {
			case err == nil || c != "":
				codes[c]++
			default:
				other = append(other, err)
			}
		}()
	}
	wg.Wait()
	return codes, other
}

// testPurchaseLimit: M4, one customer taking a limited SKU's whole stock. The product's
// limit of units per customer holds for one request, for concurrent checkouts of one
// customer on two instances, and for a cart; cancelling gives the units back to the
// customer's allowance; refused checkouts hold nothing (every other customer can still
// buy the rest).
func testPurchaseLimit(t *testing.T, strategy store.Strategy) {
	e := newStrategyEnv(t, strategy, 2)
	e.limitedProduct(t, "LTD", 50, 2)
	ctx := context.Background()

	// One request asks the whole stock: refused on the line, nothing held.
	_, _, err := e.checkout(0, "greedy", "all", line("LTD", 50))
	if e, ok := checkout.AsError(err); !ok || e.Code != checkout.PurchaseLimitExceeded || !slices.Equal(e.Field, []string{"input", "items", "0", "quantity"}) {
		t.Fatalf("one checkout of the whole stock: %v, want PURCHASE_LIMIT_EXCEEDED on input.items.0.quantity", err)
	}
	if _, res := e.levels(t, "LTD"); res != 0 {
		t.Fatalf("a refused checkout holds %d units", res)
	}

	// Twenty at once, one unit each, on two instances: two are placed.
	codes, other := e.concurrently(20, "greedy", "LTD")
	if codes[""] != 2 || codes[checkout.PurchaseLimitExceeded] != 18 || len(other) > 0 {
		t.Fatalf("20 concurrent checkouts of one customer, limit 2: %v, other %v; want 2 placed, 18 PURCHASE_LIMIT_EXCEEDED", codes, other)
	}
	if _, res := e.levels(t, "LTD"); res != 2 {
		t.Fatalf("reserved %d, want 2", res)
	}

	// A cancelled order no longer counts: one more unit may be ordered.
	var first string
	if err := e.db.NewRaw("SELECT id FROM orders WHERE customer_id = 'greedy' LIMIT 1").Scan(ctx, &first); err != nil {
		t.Fatal(err)
	}
	if _, err := e.instances[0].svc.CancelOrder(ctx, checkout.Actor{CustomerID: "greedy"}, first); err != nil {
		t.Fatal(err)
	}
	if _, _, err := e.checkout(1, "greedy", "after-cancel", line("LTD", 1)); err != nil {
		t.Fatalf("after cancelling one of two: %v", err)
	}
	if _, _, err := e.checkout(0, "greedy", "third", line("LTD", 1)); checkout.ErrorCode(err) != checkout.PurchaseLimitExceeded {
		t.Fatalf("a third unit: %v, want PURCHASE_LIMIT_EXCEEDED", err)
	}

	// A cart is counted the same; the refused cart stays open.
	cart := e.cart(t, "greedy", line("LTD", 1))
	_, _, err = e.instances[0].svc.Checkout(ctx, checkout.Actor{CustomerID: "greedy"},
		checkout.CheckoutInput{IdempotencyKey: "cart", PaymentToken: "tok_visa", CartID: &cart})
	if e, ok := checkout.AsError(err); !ok || e.Code != checkout.PurchaseLimitExceeded || !slices.Equal(e.Field, []string{"input", "cartId"}) {
		t.Fatalf("cart checkout past the limit: %v, want PURCHASE_LIMIT_EXCEEDED on input.cartId", err)
	}
	if n := testutil.Count(t, e.db, "SELECT count(*) FROM carts WHERE id = ? AND order_id IS NULL", cart); n != 1 {
		t.Fatal("the refused cart was closed")
	}

	// Every other customer can buy the rest: nothing refused held a unit (Redis holds
	// included).
	var wg sync.WaitGroup
	errs := make([]error, 24)
	for i := range errs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, _, errs[i] = e.checkout(i, fmt.Sprint("fan-", i), "k", line("LTD", 2))
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("fan %d: %v", i, err)
		}
	}
	if on, res := e.levels(t, "LTD"); on != 50 || res != 50 {
		t.Fatalf("stock %d/%d, want 50/50", on, res)
	}
}

// testLimitAndCap: a customer under a service-wide bound (unpaid orders) buying a SKU
// with a limit per customer: the store reads both standings in one statement, and the
// tighter of the two refuses, whichever it is.
func testLimitAndCap(t *testing.T, strategy store.Strategy) {
	e := newStrategyEnv(t, strategy, 2)
	for _, in := range e.instances {
		in.svc.Limits = checkout.PurchaseLimits{MaxUnpaidOrders: 3}
	}
	e.limitedProduct(t, "TWO-PER", 50, 2)
	e.limitedProduct(t, "FIVE-PER", 50, 5)
	codes, other := e.concurrently(10, "tight-limit", "TWO-PER")
	if codes[""] != 2 || codes[checkout.PurchaseLimitExceeded] != 8 || len(other) > 0 {
		t.Fatalf("limit 2 under a cap of 3 unpaid: %v, other %v; want 2 placed, 8 PURCHASE_LIMIT_EXCEEDED", codes, other)
	}
	codes, other = e.concurrently(10, "tight-cap", "FIVE-PER")
	if codes[""] != 3 || codes[checkout.TooManyUnpaidOrders] != 7 || len(other) > 0 {
		t.Fatalf("cap of 3 unpaid over a limit of 5: %v, other %v; want 3 placed, 7 TOO_MANY_UNPAID_ORDERS", codes, other)
	}
}

// testUnpaidCap: M4, a customer holding stock with many unpaid orders. Concurrent
// checkouts of one customer on two instances never leave it more unpaid orders than the
// cap; a cancelled order frees a place; a replay of a placed order's key still answers
// that order.
func testUnpaidCap(t *testing.T, strategy store.Strategy) {
	e := newStrategyEnv(t, strategy, 2)
	for _, in := range e.instances {
		in.svc.Limits = checkout.PurchaseLimits{MaxUnpaidOrders: 3}
	}
	e.product(t, "U", 100, "USD", map[string]int{"w": 100})
	ctx := context.Background()
	codes, other := e.concurrently(20, "holder", "U")
	if codes[""] != 3 || codes[checkout.TooManyUnpaidOrders] != 17 || len(other) > 0 {
		t.Fatalf("20 concurrent checkouts of one customer, cap 3: %v, other %v; want 3 placed, 17 TOO_MANY_UNPAID_ORDERS", codes, other)
	}
	if _, res := e.levels(t, "U"); res != 3 {
		t.Fatalf("reserved %d, want 3", res)
	}
	var placed []string
	if err := e.db.NewRaw("SELECT id FROM orders WHERE customer_id = 'holder' ORDER BY id").Scan(ctx, &placed); err != nil {
		t.Fatal(err)
	}
	var key string
	if err := e.db.NewRaw("SELECT key FROM idempotency_keys WHERE order_id = ?", placed[0]).Scan(ctx, &key); err != nil {
		t.Fatal(err)
	}
	if o, replay, err := e.checkout(0, "holder", key, line("U", 1)); err != nil || !replay || o.ID != placed[0] {
		t.Fatalf("replay at the cap: %v replay=%v, want the first order", err, replay)
	}
	if _, _, err := e.checkout(0, "someone-else", "k", line("U", 1)); err != nil {
		t.Fatalf("another customer: %v", err)
	}
	if _, err := e.instances[1].svc.CancelOrder(ctx, checkout.Actor{CustomerID: "holder"}, placed[0]); err != nil {
		t.Fatal(err)
	}
	if _, _, err := e.checkout(1, "holder", "after-cancel", line("U", 1)); err != nil {
		t.Fatalf("after cancelling one: %v", err)
	}
	if _, _, err := e.checkout(0, "holder", "fifth", line("U", 1)); checkout.ErrorCode(err) != checkout.TooManyUnpaidOrders {
		t.Fatalf("at the cap again: %v, want TOO_MANY_UNPAID_ORDERS", err)
	}
}

// TestPurchaseLimits_FailedPaymentsCap_RefusedUntilTheWindowPasses: M4 (and the card
// testing the issue names): after CHECKOUT_MAX_FAILED_PAYMENTS failed payments within
// the window, the customer's checkouts are refused until the oldest failure leaves the
// window, counted from the database on the service's clock.
func TestPurchaseLimits_FailedPaymentsCap_RefusedUntilTheWindowPasses(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := testutil.NewDB(t)
	var mu sync.Mutex
	at := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	now := func() time.Time { mu.Lock(); defer mu.Unlock(); return at }
	advance := func(d time.Duration) { mu.Lock(); defer mu.Unlock(); at = at.Add(d) }
	orders := store.NewOrders(db.DB, now, store.OrdersOptions{})
	t.Cleanup(orders.Close)
	svc, err := checkout.NewService(orders, store.NewCarts(db.DB, now), 10*time.Minute, now)
	if err != nil {
		t.Fatal(err)
	}
	svc.Limits = checkout.PurchaseLimits{MaxFailedPayments: 2, FailedPaymentWindow: time.Hour}
	cat := store.NewCatalog(db.DB, now)
	if _, err := cat.UpsertProduct(ctx, catalog.Product{SKU: "F", Name: "F", PriceCents: 100, Currency: "USD"}); err != nil {
		t.Fatal(err)
	}
	if _, err := cat.SetStock(ctx, "F", "w", 100); err != nil {
		t.Fatal(err)
	}
	buy := func(customer, key string) (checkout.Order, error) {
		o, _, err := svc.Checkout(ctx, checkout.Actor{CustomerID: customer},
			checkout.CheckoutInput{IdempotencyKey: key, PaymentToken: "tok_chargeDeclined", Items: []checkout.Line{line("F", 1)}})
		return o, err
	}
	fail := func(id string) {
		t.Helper()
		reason := "card_declined"
		if _, err := orders.Transition(ctx, id, func(*checkout.Order) (checkout.Change, error) {
			return checkout.Change{To: checkout.StatusPaymentFailed, PaymentFailureReason: &reason}, nil
		}); err != nil {
			t.Fatal(err)
		}
	}
	for i := 0; i < 2; i++ {
		o, err := buy("tester", fmt.Sprint("k", i))
		if err != nil {
			t.Fatal(err)
		}
		fail(o.ID)
		advance(10 * time.Minute)
	}
	_, err = buy("tester", "k2")
	if e, ok := checkout.AsError(err); !ok || e.Code != checkout.TooManyFailedPayments {
		t.Fatalf("after 2 failed payments in the hour: %v, want TOO_MANY_FAILED_PAYMENTS", err)
	}
	if _, err := buy("honest", "k"); err != nil {
		t.Fatalf("another customer: %v", err)
	}
	// The first failure (at 12:00) leaves the window at 13:00; it is 12:20 now.
	advance(39 * time.Minute)
	if _, err := buy("tester", "k3"); checkout.ErrorCode(err) != checkout.TooManyFailedPayments {
		t.Fatalf("12:59, both failures within the hour: %v, want TOO_MANY_FAILED_PAYMENTS", err)
	}
	advance(2 * time.Minute)
	if _, err := buy("tester", "k4"); err != nil {
		t.Fatalf("13:01, one failure within the hour: %v", err)
	}
}
