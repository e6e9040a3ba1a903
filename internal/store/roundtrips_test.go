package store_test

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/uptrace/bun"

	"github.com/checkout-backend/checkout/internal/catalog"
	"github.com/checkout-backend/checkout/internal/checkout"
	"github.com/checkout-backend/checkout/internal/store"
	"github.com/checkout-backend/checkout/internal/testutil"
)

// roundTrips records the first words of each query a pool sends: one query, one round
// trip (a script of several statements is one query).
type roundTrips struct {
	mu sync.Mutex
	q  []string
}

func (h *roundTrips) BeforeQuery(ctx context.Context, _ *bun.QueryEvent) context.Context { return ctx }

func (h *roundTrips) AfterQuery(_ context.Context, e *bun.QueryEvent) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.q = append(h.q, e.Query[:min(len(e.Query), 40)])
}

func (h *roundTrips) take() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	q := h.q
	h.q = nil
	return q
}

// A checkout with a service-wide bound locks its customers in the statement that reads
// the prices, not in one of its own: a lone batch checkout is eight round trips (BEGIN,
// keys, prices with the locks, standing, orders, the inventory rows, one script, COMMIT).
func TestPlace_CustomersLockedWithThePrices_EightRoundTrips(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	hook := &roundTrips{}
	db := testutil.NewDB(t).Via(t, testutil.PostgresHostPort(t), store.Options{MaxOpenConns: 2, QueryHook: hook})
	orders := store.NewOrders(db.DB, time.Now, store.OrdersOptions{Strategy: store.StrategyBatch})
	t.Cleanup(orders.Close)
	svc, err := checkout.NewService(orders, store.NewCarts(db.DB, time.Now), 10*time.Minute, time.Now)
	if err != nil {
		t.Fatal(err)
	}
	svc.Limits = checkout.PurchaseLimits{MaxFailedPayments: 5, FailedPaymentWindow: time.Hour}
	cat := store.NewCatalog(db.DB, time.Now)
	if _, err := cat.UpsertProduct(ctx, catalog.Product{SKU: "RT", Name: "RT", PriceCents: 100, Currency: "USD"}); err != nil {
		t.Fatal(err)
	}
	if _, err := cat.SetStock(ctx, "RT", "w", 5); err != nil {
		t.Fatal(err)
	}
	hook.take()
	if _, _, err := svc.Checkout(ctx, checkout.Actor{CustomerID: "rt-customer"},
		checkout.CheckoutInput{IdempotencyKey: "rt-1", PaymentToken: "tok_visa", Items: []checkout.Line{line("RT", 1)}}); err != nil {
		t.Fatal(err)
	}
	q := hook.take()
	all := strings.Join(q, "\n")
	if strings.Contains(all, "place_lock_customers") || !strings.Contains(all, "place_prices") || !strings.Contains(all, "place_standing") {
		t.Fatalf("the customers' lock is not taken with the prices, or the standing is not read:\n%s", all)
	}
	if len(q) != 8 {
		t.Fatalf("a batch checkout with a bound took %d round trips, want 8:\n%s", len(q), all)
	}
}
