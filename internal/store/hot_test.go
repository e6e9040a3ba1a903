package store_test

import (
	"context"
	"fmt"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/stdlib"
	"github.com/uptrace/bun"

	"github.com/checkout-backend/checkout/internal/catalog"
	"github.com/checkout-backend/checkout/internal/checkout"
	"github.com/checkout-backend/checkout/internal/pgprep"
	"github.com/checkout-backend/checkout/internal/store"
	"github.com/checkout-backend/checkout/internal/testutil"
)

// Every hot statement prepares against the migrations: one that does not would leave
// every connection of a direct pool without its statements (pgprep prepares all or
// none), and each checkout would fail with "prepared statement does not exist".
func TestHotStatements_PrepareOnTheMigratedSchema(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := testutil.NewDB(t)
	names := pgprep.Registered()
	if len(names) < 20 {
		t.Fatalf("%d statements registered (%v): the store's and the outbox's are missing", len(names), names)
	}
	conn, err := db.DB.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if err := conn.Raw(func(dc any) error { return pgprep.Prepare(ctx, dc.(*stdlib.Conn).Conn()) }); err != nil {
		t.Fatal(err)
	}
	// The check leaves the pool's connection as it found it: every statement prepared.
	var n int
	if err := conn.QueryRowContext(ctx, "SELECT count(*) FROM pg_prepared_statements").Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != len(names) {
		t.Fatalf("after the check the connection holds %d prepared statements, want all %d", n, len(names))
	}
}

// hotCheckout places and pays nothing: one checkout of a fresh SKU on db, the path that
// runs the checkout's hot statements and the outbox's insert.
func hotCheckout(t *testing.T, db *bun.DB) {
	t.Helper()
	ctx := context.Background()
	orders := store.NewOrders(db, time.Now, store.OrdersOptions{Strategy: store.StrategyLock})
	t.Cleanup(orders.Close)
	svc, err := checkout.NewService(orders, store.NewCarts(db, time.Now), 10*time.Minute, time.Now)
	if err != nil {
		t.Fatal(err)
	}
	sku := "HOT-" + testutil.RandomID(4)
	cat := store.NewCatalog(db, time.Now)
	if _, err := cat.UpsertProduct(ctx, catalog.Product{SKU: sku, Name: sku, PriceCents: 100, Currency: "USD"}); err != nil {
		t.Fatal(err)
	}
	if _, err := cat.SetStock(ctx, sku, "w", 5); err != nil {
		t.Fatal(err)
	}
	if _, _, err := svc.Checkout(ctx, checkout.Actor{CustomerID: "c-" + sku},
		checkout.CheckoutInput{IdempotencyKey: sku, PaymentToken: "tok_visa", Items: []checkout.Line{line(sku, 2)}}); err != nil {
		t.Fatalf("checkout: %v", err)
	}
}

// executions reads, on db's one connection, how often each prepared statement ran.
func executions(t *testing.T, db *bun.DB) map[string]int {
	t.Helper()
	var rows []struct {
		Name string `bun:"name"`
		N    int    `bun:"n"`
	}
	if err := db.NewRaw("SELECT name, generic_plans + custom_plans AS n FROM pg_prepared_statements").Scan(context.Background(), &rows); err != nil {
		t.Fatal(err)
	}
	out := map[string]int{}
	for _, r := range rows {
		out[r.Name] = r.N
	}
	return out
}

func TestHotStatements_ADirectPoolExecutesThemPrepared_APooledOneSendsTheirText(t *testing.T) {
	t.Parallel()
	db := testutil.NewDB(t)
	direct := db.Via(t, testutil.PostgresHostPort(t), store.Options{MaxOpenConns: 1})
	hotCheckout(t, direct.DB)
	ran := executions(t, direct.DB)
	for _, name := range []string{"place_claim_keys", "place_prices", "place_insert_orders", "place_lock_inventory", "place_reserve", "outbox_insert"} {
		if ran[name] < 1 {
			t.Errorf("direct pool: %s ran %d times prepared, want at least once (prepared: %v)", name, ran[name], ran)
		}
	}
	pooled := db.Via(t, testutil.PostgresHostPort(t), store.Options{MaxOpenConns: 1, Pooled: true})
	hotCheckout(t, pooled.DB)
	if ran := executions(t, pooled.DB); len(ran) != 0 {
		t.Errorf("pooled: %v prepared, want none (a transaction pooler moves transactions between server connections)", ran)
	}
}

// The service migrates on the first connection of its pool, before the tables its
// statements name exist: that connection prepares when the pool hands it out again.
func TestHotStatements_ConnectionOpenedBeforeTheMigrations_PreparesOnItsNextUse(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	_, schemaURL := testutil.EmptySchemaOn(t, testutil.DatabaseURL())
	// Two connections: the migrations hold their lock on one and run on the other.
	db, err := store.Open(ctx, schemaURL, store.Options{MaxOpenConns: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if ran := executions(t, db); len(ran) != 0 {
		t.Fatalf("prepared on an empty schema: %v", ran)
	}
	if err := store.Migrate(ctx, db); err != nil {
		t.Fatal(err)
	}
	db.SetMaxOpenConns(1) // one of the two, both opened before the tables were there
	hotCheckout(t, db)
	if ran := executions(t, db); ran["place_claim_keys"] < 1 {
		t.Fatalf("after the migrations: %v, want place_claim_keys run prepared", ran)
	}
}

// planCounts reads, on db's one connection, how often a prepared statement was planned
// generically and custom.
func planCounts(t *testing.T, db *bun.DB, name string) (generic, custom int) {
	t.Helper()
	if err := db.QueryRowContext(context.Background(),
		"SELECT generic_plans, custom_plans FROM pg_prepared_statements WHERE name = ?", name).Scan(&generic, &custom); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return generic, custom
}

// A pool opened with GenericPlans (the service's are) plans its hot statements once per
// connection: with PostgreSQL's default (plan_cache_mode = auto) a statement over an
// array parameter is planned on every call, which was a third of a paid order's
// statement time. A pool opened without keeps the default, and the URL may ask for it.
func TestHotStatements_PlannedGenericallyWhereThePoolAsks_UnlessTheURLSaysOtherwise(t *testing.T) {
	t.Parallel()
	db := testutil.NewDB(t)
	checkoutPool := db.Via(t, testutil.PostgresHostPort(t), store.Options{MaxOpenConns: 1, GenericPlans: true})
	hotCheckout(t, checkoutPool.DB)
	hotCheckout(t, checkoutPool.DB)
	for _, name := range []string{"place_prices", "place_lock_inventory", "place_reserve"} {
		if generic, custom := planCounts(t, checkoutPool.DB, name); custom != 0 || generic < 1 {
			t.Errorf("GenericPlans: %s planned %d times custom and %d generic, want never custom (one generic plan per connection)", name, custom, generic)
		}
	}

	other := db.Via(t, testutil.PostgresHostPort(t), store.Options{MaxOpenConns: 1})
	hotCheckout(t, other.DB)
	if generic, custom := planCounts(t, other.DB, "place_prices"); custom < 1 {
		t.Errorf("without GenericPlans: place_prices planned %d times custom and %d generic, want custom (PostgreSQL's first five calls)", custom, generic)
	}

	u, err := url.Parse(checkoutPool.URL)
	if err != nil {
		t.Fatal(err)
	}
	q := u.Query()
	q.Set("plan_cache_mode", "auto")
	u.RawQuery = q.Encode()
	auto, err := store.Open(context.Background(), u.String(), store.Options{MaxOpenConns: 1, GenericPlans: true})
	if err != nil {
		t.Fatal(err)
	}
	defer auto.Close()
	hotCheckout(t, auto)
	if generic, custom := planCounts(t, auto, "place_prices"); custom < 1 {
		t.Errorf("GenericPlans with plan_cache_mode=auto in the URL: place_prices planned %d times custom and %d generic, want custom", custom, generic)
	}
}

// A settlement batch's generic plan (GenericPlans, on the relay's and workers' pool too)
// is made once per connection and kept until the next ANALYZE of its tables. Made while
// a shop is young, it must still reach the one order it settles through an index, not
// read every order: here the statistics were taken at 21 orders and the tables have
// grown to a thousand since, as a new shop's do between two ANALYZEs in its first sale.
func TestHotStatements_SettlementsGenericPlansLookRowsUpByIndex_InAYoungShop(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := testutil.NewDB(t)
	hotCheckout(t, db.DB)
	grow := func(n int) {
		t.Helper()
		for _, q := range []string{
			fmt.Sprintf(`INSERT INTO orders SELECT (jsonb_populate_record(NULL::orders, to_jsonb(o) ||
				jsonb_build_object('id', gen_random_uuid(), 'customer_id', 'c-' || g %% 500))).*
				FROM (SELECT * FROM orders LIMIT 1) o, generate_series(1, %d) g`, n),
			`INSERT INTO order_items SELECT (jsonb_populate_record(NULL::order_items, to_jsonb(i) || jsonb_build_object('order_id', o.id))).*
				FROM (SELECT * FROM order_items LIMIT 1) i CROSS JOIN orders o WHERE NOT EXISTS (SELECT 1 FROM order_items x WHERE x.order_id = o.id)`,
			`INSERT INTO reservations SELECT (jsonb_populate_record(NULL::reservations, to_jsonb(r) || jsonb_build_object('order_id', o.id))).*
				FROM (SELECT * FROM reservations LIMIT 1) r CROSS JOIN orders o WHERE NOT EXISTS (SELECT 1 FROM reservations x WHERE x.order_id = o.id)`,
			`INSERT INTO payments (order_id, provider, amount_cents, currency, status, created_at, updated_at)
				SELECT id, 'sandbox', total_cents, currency, 'succeeded', now(), now() FROM orders o
				WHERE NOT EXISTS (SELECT 1 FROM payments x WHERE x.order_id = o.id)`,
			`INSERT INTO inbox (consumer, event_id, processed_at) SELECT 'payment', id::text, now() FROM orders ON CONFLICT DO NOTHING`,
		} {
			if _, err := db.ExecContext(ctx, q); err != nil {
				t.Fatalf("%s: %v", q, err)
			}
		}
	}
	grow(20)
	if _, err := db.ExecContext(ctx, "ANALYZE orders, order_items, reservations, payments, inbox"); err != nil {
		t.Fatal(err)
	}
	grow(1000)

	pool := db.Via(t, testutil.PostgresHostPort(t), store.Options{MaxOpenConns: 1, GenericPlans: true})
	for _, name := range []string{"pay_begin_charges", "pay_record_attempts", "pay_settle", "inbox_mark",
		"change_sell", "change_lock_returned", "change_release", "change_restock", "change_orders", "change_payments"} {
		var params int
		if err := pool.QueryRowContext(ctx, "SELECT cardinality(parameter_types) FROM pg_prepared_statements WHERE name = ?", name).Scan(&params); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		// The generic plan, whatever the arguments: EXPLAIN runs nothing.
		rows, err := pool.QueryContext(ctx, "EXPLAIN EXECUTE "+name+"("+strings.TrimSuffix(strings.Repeat("NULL, ", params), ", ")+")")
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		var plan []string
		for rows.Next() {
			var line string
			if err := rows.Scan(&line); err != nil {
				t.Fatal(err)
			}
			plan = append(plan, line)
		}
		if err := rows.Close(); err != nil {
			t.Fatal(err)
		}
		text := strings.Join(plan, "\n") + " "
		// A custom plan for these NULLs could fold its conditions away and scan nothing:
		// the plan read must be the generic one every call reuses.
		if generic, custom := planCounts(t, pool.DB, name); generic < 1 || custom != 0 {
			t.Fatalf("%s: planned %d times generic and %d custom, want the generic plan only (the pool's plan_cache_mode)", name, generic, custom)
		}
		for _, table := range []string{"orders", "order_items", "reservations", "payments", "inbox"} {
			if strings.Contains(text, "Seq Scan on "+table+" ") {
				t.Errorf("%s's generic plan reads all of %s (a thousand rows) for the batch it settles:\n%s", name, table, text)
			}
		}
	}
}
