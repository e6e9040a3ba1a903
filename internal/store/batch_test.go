package store_test

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/checkout-backend/checkout/internal/checkout"
	"github.com/checkout-backend/checkout/internal/store"
	"github.com/checkout-backend/checkout/internal/testutil"
)

// TestBatch_AFailureNoCheckForesaw_FailsOnlyItsOrder: an order that fails its batch's
// transaction for a reason no check foresaw (here a trigger that refuses one customer's
// orders) fails alone: the batch is placed again order by order, and the ten good orders
// that shared its batch are placed.
func TestBatch_AFailureNoCheckForesaw_FailsOnlyItsOrder(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := testutil.NewDB(t, store.Options{MaxOpenConns: 8})
	if _, err := db.ExecContext(ctx, `CREATE FUNCTION refuse_poison() RETURNS trigger LANGUAGE plpgsql AS $$
		BEGIN IF NEW.customer_id = 'poison' THEN RAISE EXCEPTION 'this order cannot be written'; END IF; RETURN NEW; END $$;
		CREATE TRIGGER refuse_poison BEFORE INSERT ON orders FOR EACH ROW EXECUTE FUNCTION refuse_poison()`); err != nil {
		t.Fatal(err)
	}
	// One batch at a time, eleven orders at most, and a batch gathers until it is full
	// (MaxWait is long): the first order runs alone, held in its hook while the eleven
	// queue behind it, and they make the next batch together.
	gate, entered := make(chan struct{}), make(chan struct{})
	var opened sync.Once
	open := func() { opened.Do(func() { close(gate) }) }
	var first atomic.Bool
	var mu sync.Mutex
	var sizes []int
	orders := store.NewOrders(db.DB, time.Now, store.OrdersOptions{Strategy: store.StrategyBatch, Batch: store.BatchOptions{
		Workers: 1, MaxSize: 11, MaxWait: 30 * time.Second, OnBatch: func(n int) {
			mu.Lock()
			sizes = append(sizes, n)
			mu.Unlock()
			if first.CompareAndSwap(false, true) {
				close(entered)
				<-gate
			}
		}}})
	t.Cleanup(orders.Close)
	t.Cleanup(open) // runs first: a failing test never leaves the batch held
	svc, err := checkout.NewService(orders, store.NewCarts(db.DB, time.Now), 10*time.Minute, time.Now)
	if err != nil {
		t.Fatal(err)
	}
	cat := store.NewCatalog(db.DB, time.Now)
	if _, err := cat.UpsertProduct(ctx, catalogProduct("B")); err != nil {
		t.Fatal(err)
	}
	if _, err := cat.SetStock(ctx, "B", "w", 100); err != nil {
		t.Fatal(err)
	}
	buy := func(customer string) error {
		_, _, err := svc.Checkout(ctx, checkout.Actor{CustomerID: customer},
			checkout.CheckoutInput{IdempotencyKey: "k", PaymentToken: "tok_visa", Items: []checkout.Line{{SKU: "B", Quantity: 1}}})
		return err
	}

	gateErr := make(chan error, 1)
	go func() { gateErr <- buy("gate") }()
	<-entered
	errs := make([]error, 11)
	var wg sync.WaitGroup
	for i := range errs {
		customer := fmt.Sprint("good-", i)
		if i == 5 {
			customer = "poison"
		}
		wg.Add(1)
		go func() { defer wg.Done(); errs[i] = buy(customer) }()
	}
	open()
	wg.Wait()
	if err := <-gateErr; err != nil {
		t.Fatalf("the first order: %v", err)
	}
	mu.Lock()
	if len(sizes) < 2 || sizes[1] != 11 {
		t.Fatalf("batch sizes %v, want the eleven in one batch after the first", sizes)
	}
	mu.Unlock()
	for i, err := range errs {
		if i == 5 {
			if err == nil {
				t.Fatal("the poisoned order was placed")
			}
			continue
		}
		if err != nil {
			t.Errorf("good order %d failed with the poisoned one: %v", i, err)
		}
	}
	var reserved int
	if err := db.NewRaw("SELECT reserved FROM inventory WHERE sku = 'B'").Scan(ctx, &reserved); err != nil || reserved != 11 {
		t.Fatalf("reserved %d (%v), want 11: the first order and the ten good ones", reserved, err)
	}
}
