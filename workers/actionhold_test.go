package workers_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/checkout-backend/checkout/internal/catalog"
	"github.com/checkout-backend/checkout/internal/checkout"
	"github.com/checkout-backend/checkout/internal/store"
	"github.com/checkout-backend/checkout/internal/testutil"
	"github.com/checkout-backend/checkout/workers"
)

// TestActionHold_PaymentAwaitingTheCustomer_ExpiresSooner: M4, an order held unpaid
// through 3-D Secure. When the provider answers requires_action the order keeps its stock
// only ACTION_HOLD_TTL from that answer (never longer than its reservation): the sweeper
// expires it then and gives the stock back, while an order whose customer completes the
// action in time is paid. The expiry moves under the order's row lock, in the settlement's
// transaction, so it is ordered with payments and expiries.
func TestActionHold_PaymentAwaitingTheCustomer_ExpiresSooner(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := testutil.NewDB(t)
	var mu sync.Mutex
	at := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	now := func() time.Time { mu.Lock(); defer mu.Unlock(); return at }
	advance := func(d time.Duration) { mu.Lock(); defer mu.Unlock(); at = at.Add(d) }
	orders := store.NewOrders(db.DB, now, store.OrdersOptions{ActionHold: 3 * time.Minute})
	t.Cleanup(orders.Close)
	payments := store.NewPayments(db.DB, orders)
	t.Cleanup(payments.Close)
	svc, err := checkout.NewService(orders, store.NewCarts(db.DB, now), 10*time.Minute, now)
	if err != nil {
		t.Fatal(err)
	}
	cat := store.NewCatalog(db.DB, now)
	if _, err := cat.UpsertProduct(ctx, catalog.Product{SKU: "3DS", Name: "3DS", PriceCents: 100, Currency: "USD"}); err != nil {
		t.Fatal(err)
	}
	if _, err := cat.SetStock(ctx, "3DS", "w", 10); err != nil {
		t.Fatal(err)
	}
	place := func(customer string) checkout.Order {
		t.Helper()
		o, _, err := svc.Checkout(ctx, checkout.Actor{CustomerID: customer}, checkout.CheckoutInput{IdempotencyKey: "k",
			PaymentToken: "tok_threeDSecure2Required", Items: []checkout.Line{line("3DS", 2)}})
		if err != nil {
			t.Fatal(err)
		}
		return o
	}
	report := func(o checkout.Order, event string, status string) checkout.Order {
		t.Helper()
		got, _, err := payments.Settle(ctx, workers.PaymentConsumer, event, checkout.PaymentReport{OrderID: o.ID, Provider: "sandbox",
			ProviderPaymentID: "pi_" + o.ID, AmountCents: o.TotalCents, Currency: o.Currency, Result: checkout.PaymentResult{Status: status}})
		if err != nil {
			t.Fatal(err)
		}
		return got
	}
	reload := func(id string) *checkout.Order {
		t.Helper()
		o, err := orders.Order(ctx, id)
		if err != nil || o == nil {
			t.Fatalf("order %s: %v", id, err)
		}
		return o
	}

	// 12:00 both placed (reservations until 12:10); 12:01 the provider asks both
	// customers to authenticate: their holds end at 12:04.
	slow, quick := place("slow"), place("quick")
	advance(time.Minute)
	report(slow, "e1", checkout.PaymentRequiresAction)
	report(quick, "e2", checkout.PaymentRequiresAction)
	want := time.Date(2026, 3, 1, 12, 4, 0, 0, time.UTC)
	if got := reload(slow.ID).ReservationExpiresAt; got == nil || !got.Equal(want) {
		t.Fatalf("reservationExpiresAt after requires_action: %v, want %v (3m after the answer, not the 10m reservation)", got, want)
	}
	if n := testutil.Count(t, db, "SELECT count(*) FROM reservations WHERE order_id = ? AND expires_at = ?", slow.ID, want); n != 1 {
		t.Fatalf("the reservation rows keep the old expiry")
	}
	// A second requires_action (the webhook after the charge's answer) never extends it.
	advance(time.Minute)
	report(slow, "e3", checkout.PaymentRequiresAction)
	if got := reload(slow.ID).ReservationExpiresAt; !got.Equal(want) {
		t.Fatalf("a later requires_action moved the expiry to %v", got)
	}
	// 12:03 one customer authenticates: paid.
	advance(time.Minute)
	if o := report(quick, "e4", checkout.PaymentSucceeded); o.Status != checkout.StatusPaid {
		t.Fatalf("authenticated in time: %s, want PAID", o.Status)
	}
	sweeper := workers.NewSweeper(orders, nil, now, workers.SweeperOptions{Logger: testLogger()})
	if n, err := sweeper.SweepOnce(ctx); err != nil || n != 0 {
		t.Fatalf("12:03 sweep expired %d (%v), want none", n, err)
	}
	// 12:05, long before the 10 minutes: the other is expired and its stock back on sale.
	advance(2 * time.Minute)
	if n, err := sweeper.SweepOnce(ctx); err != nil || n != 1 {
		t.Fatalf("12:05 sweep expired %d (%v), want the order awaiting its customer", n, err)
	}
	if o := reload(slow.ID); o.Status != checkout.StatusExpired {
		t.Fatalf("order awaiting 3-D Secure past the action hold: %s, want EXPIRED", o.Status)
	}
	if n := testutil.Count(t, db, "SELECT COALESCE(sum(reserved), 0)::int FROM inventory_levels WHERE sku = '3DS'"); n != 0 {
		t.Fatalf("%d units still reserved, want 0", n)
	}
}
