package store_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/uptrace/bun"

	"github.com/checkout-backend/checkout/internal/checkout"
	"github.com/checkout-backend/checkout/internal/event"
	"github.com/checkout-backend/checkout/internal/store"
	"github.com/checkout-backend/checkout/internal/testutil"
)

// The clock is a dependency: no adapter is made without one (a nil clock is a
// programming error, refused at once rather than quietly replaced by time.Now).
func TestConstructors_RefuseANilClock(t *testing.T) {
	t.Parallel()
	for name, newAdapter := range map[string]func(){
		"NewOrders":      func() { store.NewOrders(nil, nil, store.OrdersOptions{}) },
		"NewCarts":       func() { store.NewCarts(nil, nil) },
		"NewCatalog":     func() { store.NewCatalog(nil, nil) },
		"NewMaintenance": func() { store.NewMaintenance(nil, nil) },
		"NewWebhooks":    func() { store.NewWebhooks(nil, nil) },
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			defer func() {
				if r := recover(); r != "store: "+name+" with a nil clock" {
					t.Fatalf("%s with a nil clock: recovered %v, want its panic", name, r)
				}
			}()
			newAdapter()
		})
	}
	if _, err := checkout.NewService(store.NewOrders(nil, time.Now, store.OrdersOptions{}), store.NewCarts(nil, time.Now), time.Minute, nil); err == nil {
		t.Error("checkout.NewService took a nil clock")
	}
}

// A clock that stands where the test puts it.
type fixedClock struct{ at time.Time }

func (c *fixedClock) now() time.Time { return c.at }

// Every time a checkout and a cancellation write is the clock's they were given, for
// each strategy: the order, its reservation, its idempotency key, its cart, the stock
// and the outbox rows of its events carry the clock's times (set far from the wall
// clock), and no time column of any table holds another.
func TestCheckout_EveryRowAtTheClock(t *testing.T) {
	t.Parallel()
	const ttl = 10 * time.Minute
	setUp := time.Date(2001, 2, 3, 4, 5, 6, 0, time.UTC)
	placed := setUp.Add(time.Hour)
	cancelled := placed.Add(time.Minute)
	for _, strategy := range []store.Strategy{store.StrategyLock, store.StrategyOptimistic, store.StrategyBatch} {
		t.Run(string(strategy), func(t *testing.T) {
			t.Parallel()
			db := testutil.NewDB(t)
			ctx := context.Background()
			clock := &fixedClock{at: setUp}
			orders := store.NewOrders(db.DB, clock.now, store.OrdersOptions{Strategy: strategy})
			t.Cleanup(orders.Close)
			svc, err := checkout.NewService(orders, store.NewCarts(db.DB, clock.now), ttl, clock.now)
			if err != nil {
				t.Fatal(err)
			}
			cat := store.NewCatalog(db.DB, clock.now)
			if _, err := cat.UpsertProduct(ctx, catalogProduct("S")); err != nil {
				t.Fatal(err)
			}
			if _, err := cat.SetStock(ctx, "S", "w1", 5); err != nil {
				t.Fatal(err)
			}
			alice := checkout.Actor{CustomerID: "alice"}
			cart, err := svc.CreateCart(ctx, alice)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := svc.SetCartItem(ctx, alice, cart.ID, "S", 2, false); err != nil {
				t.Fatal(err)
			}

			clock.at = placed
			o, _, err := svc.Checkout(ctx, alice, checkout.CheckoutInput{IdempotencyKey: "k", PaymentToken: "tok_visa", CartID: &cart.ID})
			if err != nil {
				t.Fatal(err)
			}
			expires := placed.Add(ttl)
			for _, c := range []struct{ what, query string }{
				{"the order", "SELECT count(*) FROM orders WHERE id = ?0 AND created_at = ?1 AND updated_at = ?1 AND reservation_expires_at = ?2"},
				{"its reservation", "SELECT count(*) FROM reservations WHERE order_id = ?0 AND created_at = ?1 AND updated_at = ?1 AND expires_at = ?2"},
				{"its idempotency key", "SELECT count(*) FROM idempotency_keys WHERE order_id = ?0 AND created_at = ?1"},
				{"its cart", "SELECT count(*) FROM carts WHERE order_id = ?0 AND created_at = ?3 AND updated_at = ?1"},
				{"its order.placed", "SELECT count(*) FROM outbox WHERE aggregate_id = ?0 AND type = '" + event.OrderPlaced + "' AND created_at = ?1"},
				{"the stock", "SELECT count(*) FROM inventory WHERE sku = 'S' AND updated_at = ?1"},
			} {
				if n := testutil.Count(t, db, c.query, o.ID, placed, expires, setUp); n != 1 {
					t.Errorf("placed at %s: %s not at the clock's time (%d rows match)", placed, c.what, n)
				}
			}

			clock.at = cancelled
			if _, err := svc.CancelOrder(ctx, alice, o.ID); err != nil {
				t.Fatal(err)
			}
			for _, c := range []struct{ what, query string }{
				{"the order", "SELECT count(*) FROM orders WHERE id = ?0 AND created_at = ?1 AND updated_at = ?2"},
				{"its reservation", "SELECT count(*) FROM reservations WHERE order_id = ?0 AND created_at = ?1 AND updated_at = ?2"},
				{"its order.cancelled", "SELECT count(*) FROM outbox WHERE aggregate_id = ?0 AND type = '" + event.OrderCancelled + "' AND created_at = ?2"},
				{"the stock", "SELECT count(*) FROM inventory WHERE sku = 'S' AND updated_at = ?2"},
			} {
				if n := testutil.Count(t, db, c.query, o.ID, placed, cancelled); n != 1 {
					t.Errorf("cancelled at %s: %s not at the clock's time (%d rows match)", cancelled, c.what, n)
				}
			}
			if others := timesOtherThan(t, db, setUp, placed, expires, cancelled); len(others) > 0 {
				t.Errorf("times written that are not the clock's: %s", strings.Join(others, "; "))
			}
		})
	}
}

// timesOtherThan lists the time columns of the test's schema holding a value not in
// allowed, with how many rows do.
func timesOtherThan(t *testing.T, db *testutil.DB, allowed ...time.Time) []string {
	t.Helper()
	ctx := context.Background()
	var cols []struct {
		Table  string `bun:"table_name"`
		Column string `bun:"column_name"`
	}
	if err := db.NewRaw(`SELECT table_name, column_name FROM information_schema.columns
		WHERE table_schema = current_schema() AND data_type LIKE 'timestamp%' AND table_name <> 'bun_migrations'
		ORDER BY 1, 2`).Scan(ctx, &cols); err != nil {
		t.Fatal(err)
	}
	if len(cols) == 0 {
		t.Fatal("no time columns found")
	}
	var out []string
	for _, c := range cols {
		var bad []time.Time
		if err := db.NewRaw("SELECT ? FROM ? WHERE ? IS NOT NULL AND ? NOT IN (?)", bun.Ident(c.Column), bun.Ident(c.Table),
			bun.Ident(c.Column), bun.Ident(c.Column), bun.List(allowed)).Scan(ctx, &bad); err != nil {
			t.Fatal(err)
		}
		if len(bad) > 0 {
			out = append(out, c.Table+"."+c.Column+" "+bad[0].UTC().Format(time.RFC3339Nano))
		}
	}
	return out
}
