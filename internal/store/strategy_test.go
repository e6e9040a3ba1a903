package store_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/checkout-backend/checkout/internal/catalog"
	"github.com/checkout-backend/checkout/internal/checkout"
	"github.com/checkout-backend/checkout/internal/redishold"
	"github.com/checkout-backend/checkout/internal/store"
	"github.com/checkout-backend/checkout/internal/testutil"
)

// instance is one service instance's checkout over a shared test database.
type instance struct {
	svc    *checkout.Service
	orders *store.Orders
}

type strategyEnv struct {
	db        *testutil.DB
	strategy  store.Strategy
	instances []instance
	redis     *redishold.Store
	retries   atomic.Int64
	fallbacks atomic.Int64
}

// newStrategyEnv makes a database and n instances placing checkouts with strategy.
func newStrategyEnv(t *testing.T, strategy store.Strategy, n int) *strategyEnv {
	t.Helper()
	e := &strategyEnv{db: testutil.NewDB(t, store.Options{MaxOpenConns: 24}), strategy: strategy}
	if strategy == store.StrategyRedis {
		e.redis = redishold.New(redisClient(t, testutil.RedisURL()), "t"+testutil.RandomID(4)+":")
	}
	for i := 0; i < n; i++ {
		opt := store.OrdersOptions{Strategy: strategy, OnRetry: func() { e.retries.Add(1) },
			OnRedisFallback: func(error) { e.fallbacks.Add(1) }}
		if e.redis != nil {
			opt.Redis = e.redis
		}
		orders := store.NewOrders(e.db.DB, time.Now, opt)
		t.Cleanup(orders.Close)
		svc, err := checkout.NewService(orders, store.NewCarts(e.db.DB, time.Now), 10*time.Minute, time.Now)
		if err != nil {
			t.Fatal(err)
		}
		e.instances = append(e.instances, instance{svc, orders})
	}
	return e
}

func redisClient(t *testing.T, url string) *redis.Client {
	t.Helper()
	opt, err := redis.ParseURL(url)
	if err != nil {
		t.Fatal(err)
	}
	opt.DialTimeout, opt.MaxRetries = 500*time.Millisecond, -1
	c := redis.NewClient(opt)
	t.Cleanup(func() { c.Close() })
	return c
}

func (e *strategyEnv) product(t *testing.T, sku string, price int64, currency string, stock map[string]int) {
	t.Helper()
	ctx := context.Background()
	cat := store.NewCatalog(e.db.DB, time.Now)
	if _, err := cat.UpsertProduct(ctx, catalog.Product{SKU: sku, Name: sku, PriceCents: price, Currency: currency}); err != nil {
		t.Fatal(err)
	}
	for wh, n := range stock {
		if _, err := cat.SetStock(ctx, sku, wh, n); err != nil {
			t.Fatal(err)
		}
	}
}

func (e *strategyEnv) checkout(i int, customer, key string, lines ...checkout.Line) (checkout.Order, bool, error) {
	in := e.instances[i%len(e.instances)]
	return in.svc.Checkout(context.Background(), checkout.Actor{CustomerID: customer},
		checkout.CheckoutInput{IdempotencyKey: key, PaymentToken: "tok_visa", Items: lines})
}

func (e *strategyEnv) levels(t *testing.T, sku string) (onHand, reserved int) {
	t.Helper()
	err := e.db.NewRaw("SELECT COALESCE(sum(on_hand),0)::int, COALESCE(sum(reserved),0)::int FROM inventory_levels WHERE sku = ?", sku).
		Scan(context.Background(), &onHand, &reserved)
	if err != nil {
		t.Fatal(err)
	}
	return
}

// cart makes a cart of customer's holding lines and returns its id.
func (e *strategyEnv) cart(t *testing.T, customer string, lines ...checkout.Line) string {
	t.Helper()
	ctx := context.Background()
	a := checkout.Actor{CustomerID: customer}
	c, err := e.instances[0].svc.CreateCart(ctx, a)
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range lines {
		if _, err := e.instances[0].svc.SetCartItem(ctx, a, c.ID, l.SKU, l.Quantity, false); err != nil {
			t.Fatal(err)
		}
	}
	return c.ID
}

// outcomes tallies concurrent checkouts: placed orders, OUT_OF_STOCK, anything else.
type outcomes struct {
	mu     sync.Mutex
	placed []string
	oos    int
	other  []error
}

func (o *outcomes) add(ord checkout.Order, err error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	switch {
	case err == nil:
		o.placed = append(o.placed, ord.ID)
	case checkout.ErrorCode(err) == checkout.OutOfStock:
		o.oos++
	default:
		o.other = append(o.other, err)
	}
}

func line(sku string, q int) checkout.Line { return checkout.Line{SKU: sku, Quantity: q} }

// TestStrategies is the correctness suite every reservation strategy passes.
func TestStrategies(t *testing.T) {
	t.Parallel()
	for _, strategy := range store.Strategies {
		t.Run(string(strategy), func(t *testing.T) {
			t.Parallel()
			t.Run("FlashSale_300BuyersStock50_Exactly50", func(t *testing.T) {
				t.Parallel()
				e := newStrategyEnv(t, strategy, 1)
				e.product(t, "HOT", 100, "USD", map[string]int{"w": 50})
				var out outcomes
				var wg sync.WaitGroup
				for i := 0; i < 300; i++ {
					wg.Add(1)
					go func() {
						defer wg.Done()
						o, _, err := e.checkout(i, fmt.Sprint("buyer-", i), "k", line("HOT", 1))
						out.add(o, err)
					}()
				}
				wg.Wait()
				if len(out.placed) != 50 || out.oos != 250 || len(out.other) > 0 {
					t.Fatalf("placed %d, out of stock %d, other %v; want 50/250/none", len(out.placed), out.oos, out.other)
				}
				if on, res := e.levels(t, "HOT"); on != 50 || res != 50 {
					t.Fatalf("stock %d/%d, want 50/50", on, res)
				}
				if n := testutil.Count(t, e.db, "SELECT count(*) FROM outbox WHERE type = 'order.placed'"); n != 50 {
					t.Fatalf("%d order.placed events, want 50", n)
				}
				// Sold out: the next one is answered at once, and a restock sells again.
				if _, _, err := e.checkout(0, "late", "k", line("HOT", 1)); checkout.ErrorCode(err) != checkout.OutOfStock {
					t.Fatalf("after sell-out: %v", err)
				}
				if _, err := store.NewCatalog(e.db.DB, time.Now).SetStock(context.Background(), "HOT", "w", 51); err != nil {
					t.Fatal(err)
				}
				if e.redis != nil {
					if err := e.instances[0].orders.SyncStockCache(context.Background(), nil); err != nil {
						t.Fatal(err)
					}
				}
				if _, _, err := e.checkout(0, "restocked", "k", line("HOT", 1)); err != nil {
					t.Fatalf("after restock: %v", err)
				}
			})
			t.Run("SoldOut_AnsweredWithoutTheRowLock_RestockSellsAtOnce", func(t *testing.T) {
				t.Parallel()
				ctx := context.Background()
				e := newStrategyEnv(t, strategy, 1)
				e.product(t, "ONE", 100, "USD", map[string]int{"w": 1})
				if _, _, err := e.checkout(0, "first", "k", line("ONE", 1)); err != nil {
					t.Fatal(err)
				}
				if _, _, err := e.checkout(0, "second", "k", line("ONE", 1)); checkout.ErrorCode(err) != checkout.OutOfStock {
					t.Fatalf("second buyer of one unit: %v, want OUT_OF_STOCK", err)
				}
				// Another transaction holds the inventory row (a restock in progress). A buyer
				// of the sold-out SKU is answered without queueing behind it: a buyer that
				// waited would still be waiting at its deadline.
				tx, err := e.db.BeginTx(ctx, nil)
				if err != nil {
					t.Fatal(err)
				}
				defer tx.Rollback()
				if _, err := tx.ExecContext(ctx, "SELECT 1 FROM inventory WHERE sku = 'ONE' FOR UPDATE"); err != nil {
					t.Fatal(err)
				}
				dctx, cancel := context.WithTimeout(ctx, 3*time.Second)
				defer cancel()
				_, _, err = e.instances[0].svc.Checkout(dctx, checkout.Actor{CustomerID: "third"},
					checkout.CheckoutInput{IdempotencyKey: "k", PaymentToken: "tok_visa", Items: []checkout.Line{line("ONE", 1)}})
				if checkout.ErrorCode(err) != checkout.OutOfStock {
					t.Fatalf("buyer of a sold-out SKU while its row is locked: %v, want OUT_OF_STOCK at once", err)
				}
				// The restock commits: the next buyer is sold the unit at once.
				if _, err := tx.ExecContext(ctx, "UPDATE inventory SET on_hand = on_hand + 1 WHERE sku = 'ONE'"); err != nil {
					t.Fatal(err)
				}
				if err := tx.Commit(); err != nil {
					t.Fatal(err)
				}
				if e.redis != nil {
					if err := e.instances[0].orders.SyncStockCache(ctx, nil); err != nil {
						t.Fatal(err)
					}
				}
				if _, _, err := e.checkout(0, "fourth", "k", line("ONE", 1)); err != nil {
					t.Fatalf("after the restock committed: %v", err)
				}
			})
			t.Run("MultiItem_AllOrNothing_NoDeadlock", func(t *testing.T) {
				t.Parallel()
				e := newStrategyEnv(t, strategy, 1)
				e.product(t, "A", 100, "USD", map[string]int{"w": 5})
				e.product(t, "B", 100, "USD", map[string]int{"w": 3})
				e.product(t, "C", 100, "USD", map[string]int{"w": 100})
				var out outcomes
				var wg sync.WaitGroup
				for i := 0; i < 40; i++ {
					wg.Add(1)
					go func() {
						defer wg.Done()
						lines := []checkout.Line{line("A", 1), line("B", 1), line("C", 2)}
						rand.Shuffle(len(lines), func(a, b int) { lines[a], lines[b] = lines[b], lines[a] })
						o, _, err := e.checkout(i, fmt.Sprint("m-", i), "k", lines...)
						out.add(o, err)
					}()
				}
				wg.Wait()
				if len(out.placed) != 3 || out.oos != 37 || len(out.other) > 0 {
					t.Fatalf("placed %d, out of stock %d, other %v; want 3/37/none (B has 3)", len(out.placed), out.oos, out.other)
				}
				for sku, want := range map[string]int{"A": 3, "B": 3, "C": 6} {
					if _, res := e.levels(t, sku); res != want {
						t.Errorf("%s reserved %d, want %d: a refused order left a hold", sku, res, want)
					}
				}
				if n := testutil.Count(t, e.db, "SELECT count(*) FROM orders"); n != 3 {
					t.Fatalf("%d orders stored, want 3", n)
				}
			})
			t.Run("TwoWarehouses_OneLineSplit", func(t *testing.T) {
				t.Parallel()
				e := newStrategyEnv(t, strategy, 1)
				e.product(t, "W", 100, "USD", map[string]int{"nyc": 4, "ams": 2})
				o, _, err := e.checkout(0, "c", "k1", line("W", 5))
				if err != nil {
					t.Fatal(err)
				}
				if n := testutil.Count(t, e.db, "SELECT count(*) FROM reservations WHERE order_id = ?", o.ID); n != 2 {
					t.Fatalf("%d reservation rows, want one per warehouse", n)
				}
				if _, _, err := e.checkout(0, "c", "k2", line("W", 2)); checkout.ErrorCode(err) != checkout.OutOfStock {
					t.Fatalf("2 of the 1 left: %v", err)
				}
				if _, _, err := e.checkout(0, "c", "k3", line("W", 1)); err != nil {
					t.Fatalf("the last unit: %v", err)
				}
			})
			t.Run("Idempotency_ConcurrentDuplicates_OneOrder", func(t *testing.T) {
				t.Parallel()
				e := newStrategyEnv(t, strategy, 2)
				e.product(t, "I", 100, "USD", map[string]int{"w": 100})
				var wg sync.WaitGroup
				ids := make([]string, 10)
				replays := atomic.Int32{}
				errs := make([]error, 10)
				for i := range ids {
					wg.Add(1)
					go func() {
						defer wg.Done()
						o, replay, err := e.checkout(i, "alice", "double-click", line("I", 2))
						ids[i], errs[i] = o.ID, err
						if replay {
							replays.Add(1)
						}
					}()
				}
				wg.Wait()
				for i := range ids {
					if errs[i] != nil || ids[i] != ids[0] {
						t.Fatalf("call %d: %s %v, want order %s", i, ids[i], errs[i], ids[0])
					}
				}
				if replays.Load() != 9 {
					t.Fatalf("%d replays, want 9", replays.Load())
				}
				if _, res := e.levels(t, "I"); res != 2 {
					t.Fatalf("reserved %d, want 2 (one reservation)", res)
				}
				if _, _, err := e.checkout(0, "alice", "double-click", line("I", 3)); checkout.ErrorCode(err) != checkout.IdempotencyKeyReused {
					t.Fatalf("other input: %v", err)
				}
				if o, _, err := e.checkout(1, "bob", "double-click", line("I", 2)); err != nil || o.ID == ids[0] {
					t.Fatalf("another customer's key: %v", err)
				}
			})
			t.Run("PurchaseLimit_ConcurrentCheckoutsOfOneCustomer_NeverAboveTheLimit", func(t *testing.T) {
				t.Parallel()
				testPurchaseLimit(t, strategy)
			})
			t.Run("UnpaidCap_ConcurrentCheckoutsOfOneCustomer_NeverAboveTheCap", func(t *testing.T) {
				t.Parallel()
				testUnpaidCap(t, strategy)
			})
			t.Run("LimitAndCapTogether_TheTighterHolds", func(t *testing.T) {
				t.Parallel()
				testLimitAndCap(t, strategy)
			})
			t.Run("TwoInstancesOneDatabase_NoOversell", func(t *testing.T) {
				t.Parallel()
				e := newStrategyEnv(t, strategy, 2)
				e.product(t, "TWO", 100, "USD", map[string]int{"w": 50})
				var out outcomes
				var wg sync.WaitGroup
				for i := 0; i < 200; i++ {
					wg.Add(1)
					go func() {
						defer wg.Done()
						o, _, err := e.checkout(i, fmt.Sprint("t-", i), "k", line("TWO", 1))
						out.add(o, err)
					}()
				}
				wg.Wait()
				if len(out.placed) != 50 || out.oos != 150 || len(out.other) > 0 {
					t.Fatalf("placed %d, out of stock %d, other %v; want 50/150/none", len(out.placed), out.oos, out.other)
				}
			})
			t.Run("BadOrdersAmongGoodOnes_OnlyTheyFail", func(t *testing.T) {
				t.Parallel()
				e := newStrategyEnv(t, strategy, 1)
				e.product(t, "G", 100, "USD", map[string]int{"w": 100})
				e.product(t, "EUR1", 100, "EUR", map[string]int{"w": 100})
				var wg sync.WaitGroup
				var good, bad atomic.Int32
				for i := 0; i < 30; i++ {
					wg.Add(1)
					go func() {
						defer wg.Done()
						lines := []checkout.Line{line("G", 1)}
						switch i % 3 {
						case 1:
							lines = append(lines, line("NOPE", 1)) // unknown SKU
						case 2:
							lines = append(lines, line("EUR1", 1)) // two currencies
						}
						_, _, err := e.checkout(i, fmt.Sprint("b-", i), "k", lines...)
						switch {
						case i%3 == 0 && err == nil:
							good.Add(1)
						case i%3 == 1 && checkout.ErrorCode(err) == checkout.UnknownSKU, i%3 == 2 && checkout.ErrorCode(err) == checkout.InvalidInput:
							bad.Add(1)
						default:
							t.Errorf("order %d: %v", i, err)
						}
					}()
				}
				wg.Wait()
				if good.Load() != 10 || bad.Load() != 20 {
					t.Fatalf("good %d bad %d, want 10/20", good.Load(), bad.Load())
				}
				if _, res := e.levels(t, "G"); res != 10 {
					t.Fatalf("G reserved %d, want 10", res)
				}
			})
			t.Run("OneCart_CheckedOutFiveTimesAtOnce_OneOrder", func(t *testing.T) {
				t.Parallel()
				ctx := context.Background()
				e := newStrategyEnv(t, strategy, 2)
				e.product(t, "CA", 100, "USD", map[string]int{"w": 100})
				e.product(t, "CB", 250, "USD", map[string]int{"w": 100})
				cart := e.cart(t, "carol", line("CA", 2), line("CB", 1))
				var out outcomes
				var notFound atomic.Int32
				var wg sync.WaitGroup
				for i := 0; i < 5; i++ {
					wg.Add(1)
					go func() {
						defer wg.Done()
						o, _, err := e.instances[i%2].svc.Checkout(ctx, checkout.Actor{CustomerID: "carol"},
							checkout.CheckoutInput{IdempotencyKey: fmt.Sprint("tab-", i), PaymentToken: "tok_visa", CartID: &cart})
						if checkout.ErrorCode(err) == checkout.CartNotFound {
							notFound.Add(1)
							return
						}
						out.add(o, err)
					}()
				}
				wg.Wait()
				if len(out.placed) != 1 || notFound.Load() != 4 || len(out.other) > 0 || out.oos > 0 {
					t.Fatalf("placed %d, CART_NOT_FOUND %d, other %v; want one order and four CART_NOT_FOUND", len(out.placed), notFound.Load(), out.other)
				}
				o, err := e.instances[0].orders.Order(ctx, out.placed[0])
				if err != nil || o == nil || o.TotalCents != 450 || len(o.Items) != 2 {
					t.Fatalf("the cart's order %+v (%v), want 2 lines totalling 450", o, err)
				}
				if _, res := e.levels(t, "CA"); res != 2 {
					t.Fatalf("CA reserved %d, want 2", res)
				}
				if n := testutil.Count(t, e.db, "SELECT count(*) FROM carts WHERE id = ? AND order_id = ?", cart, o.ID); n != 1 {
					t.Fatal("the cart does not name its order")
				}
			})
			t.Run("CartShort_OutOfStockOnTheCart_CartStaysOpen_KeyFree", func(t *testing.T) {
				t.Parallel()
				ctx := context.Background()
				e := newStrategyEnv(t, strategy, 1)
				e.product(t, "CS", 100, "USD", map[string]int{"w": 1})
				cart := e.cart(t, "dave", line("CS", 2))
				in := checkout.CheckoutInput{IdempotencyKey: "pay", PaymentToken: "tok_visa", CartID: &cart}
				_, _, err := e.instances[0].svc.Checkout(ctx, checkout.Actor{CustomerID: "dave"}, in)
				if e, ok := checkout.AsError(err); !ok || e.Code != checkout.OutOfStock || fmt.Sprint(e.Field) != "[input cartId]" {
					t.Fatalf("2 of 1 from a cart: %v, want OUT_OF_STOCK on input.cartId", err)
				}
				if n := testutil.Count(t, e.db, "SELECT count(*) FROM carts WHERE id = ? AND order_id IS NULL", cart); n != 1 {
					t.Fatal("a refused checkout closed the cart")
				}
				// The shopper lowers the quantity and pays again with the same key: a
				// refused checkout kept nothing, its key neither.
				if _, err := e.instances[0].svc.SetCartItem(ctx, checkout.Actor{CustomerID: "dave"}, cart, "CS", 1, false); err != nil {
					t.Fatal(err)
				}
				o, replay, err := e.instances[0].svc.Checkout(ctx, checkout.Actor{CustomerID: "dave"}, in)
				if err != nil || replay || len(o.Items) != 1 || o.Items[0].Quantity != 1 {
					t.Fatalf("after lowering the quantity: %+v replay %v: %v", o, replay, err)
				}
			})
			if strategy == store.StrategyOptimistic {
				t.Run("HotSKU_RetriesCounted", func(t *testing.T) {
					t.Parallel()
					e := newStrategyEnv(t, strategy, 1)
					e.product(t, "R", 100, "USD", map[string]int{"w": 1000})
					var out outcomes
					var wg sync.WaitGroup
					for i := 0; i < 40; i++ {
						wg.Add(1)
						go func() {
							defer wg.Done()
							o, _, err := e.checkout(i, fmt.Sprint("r-", i), "k", line("R", 1))
							out.add(o, err)
						}()
					}
					wg.Wait()
					if len(out.placed) != 40 || len(out.other) > 0 {
						t.Fatalf("placed %d, other %v; want all 40 (after its retries a checkout takes the lock)", len(out.placed), out.other)
					}
					if e.retries.Load() == 0 {
						t.Fatal("40 concurrent checkouts of one row and not one lost compare-and-set was counted")
					}
					if _, res := e.levels(t, "R"); res != len(out.placed) {
						t.Fatalf("reserved %d for %d orders", res, len(out.placed))
					}
					t.Logf("%d placed, %d retries", len(out.placed), e.retries.Load())
				})
			}
		})
	}
}

func TestRedisStrategy_PostgreSQLHasTheLastWord(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	t.Run("CounterAheadOfPostgreSQL_NoOversell", func(t *testing.T) {
		t.Parallel()
		e := newStrategyEnv(t, store.StrategyRedis, 1)
		e.product(t, "D", 100, "USD", map[string]int{"w": 5})
		// Redis believes in 50 units (drifted, or a sync raced a checkout): PostgreSQL
		// still sells 5 and the holds of the refused checkouts are given back.
		if err := e.redis.Sync(ctx, map[string]int{"D": 50}); err != nil {
			t.Fatal(err)
		}
		var out outcomes
		var wg sync.WaitGroup
		for i := 0; i < 20; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				o, _, err := e.checkout(i, fmt.Sprint("d-", i), "k", line("D", 1))
				out.add(o, err)
			}()
		}
		wg.Wait()
		if len(out.placed) != 5 || out.oos != 15 {
			t.Fatalf("placed %d out of stock %d other %v, want 5/15", len(out.placed), out.oos, out.other)
		}
		if c, _ := e.redis.Counter(ctx, "D"); c != 45 {
			t.Fatalf("counter %d, want 45 (50 minus the 5 sold; refused holds returned)", c)
		}
	})
	t.Run("RedisLostItsData_CountersRebuiltFromPostgreSQL", func(t *testing.T) {
		t.Parallel()
		e := newStrategyEnv(t, store.StrategyRedis, 1)
		e.product(t, "L", 100, "USD", map[string]int{"w": 3})
		if _, _, err := e.checkout(0, "c", "k1", line("L", 2)); err != nil { // no counter yet: synced first
			t.Fatal(err)
		}
		if c, _ := e.redis.Counter(ctx, "L"); c != 1 {
			t.Fatalf("counter %d, want 1", c)
		}
		if _, _, err := e.checkout(0, "c", "k2", line("L", 2)); checkout.ErrorCode(err) != checkout.OutOfStock {
			t.Fatalf("Redis let 2 of 1 through: %v", err)
		}
	})
	t.Run("RedisDown_CheckoutsGoOnWithRowLocks", func(t *testing.T) {
		t.Parallel()
		db := testutil.NewDB(t)
		down := redishold.New(redisClient(t, "redis://127.0.0.1:1/0"), "down:")
		var fallbacks atomic.Int32
		orders := store.NewOrders(db.DB, time.Now, store.OrdersOptions{Strategy: store.StrategyRedis, Redis: down, OnRedisFallback: func(error) { fallbacks.Add(1) }})
		svc, _ := checkout.NewService(orders, store.NewCarts(db.DB, time.Now), time.Minute, time.Now)
		cat := store.NewCatalog(db.DB, time.Now)
		cat.UpsertProduct(ctx, catalog.Product{SKU: "X", Name: "X", PriceCents: 1, Currency: "USD"})
		cat.SetStock(ctx, "X", "w", 1)
		if _, _, err := svc.Checkout(ctx, checkout.Actor{CustomerID: "c"}, checkout.CheckoutInput{IdempotencyKey: "k", PaymentToken: "tok_visa", Items: []checkout.Line{line("X", 1)}}); err != nil {
			t.Fatalf("with Redis down: %v", err)
		}
		if _, _, err := svc.Checkout(ctx, checkout.Actor{CustomerID: "c"}, checkout.CheckoutInput{IdempotencyKey: "k2", PaymentToken: "tok_visa", Items: []checkout.Line{line("X", 1)}}); checkout.ErrorCode(err) != checkout.OutOfStock {
			t.Fatalf("with Redis down the second unit: %v", err)
		}
		if fallbacks.Load() < 2 {
			t.Fatalf("%d fallbacks counted, want every checkout", fallbacks.Load())
		}
	})
	t.Run("ReleasedStockGoesBackOnTheCounter", func(t *testing.T) {
		t.Parallel()
		e := newStrategyEnv(t, store.StrategyRedis, 1)
		e.product(t, "E", 100, "USD", map[string]int{"w": 2})
		o, _, err := e.checkout(0, "c", "k", line("E", 2))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := e.instances[0].orders.Transition(ctx, o.ID, func(*checkout.Order) (checkout.Change, error) {
			return checkout.Change{To: checkout.StatusExpired}, nil
		}); err != nil {
			t.Fatal(err)
		}
		if c, _ := e.redis.Counter(ctx, "E"); c != 2 {
			t.Fatalf("counter %d after the order expired, want 2", c)
		}
	})
}
