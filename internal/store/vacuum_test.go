package store_test

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/checkout-backend/checkout/internal/node"
	"github.com/checkout-backend/checkout/internal/store"
	"github.com/checkout-backend/checkout/internal/testutil"
)

// A server with autovacuum off (this machine's is) never vacuums the outbox or the
// orders: their dead rows pile up, every claim of the relay walks them, and the saga
// slows with each 100,000 orders. The sweeper's VacuumQueues vacuums a churned table full
// of dead rows there, and leaves the tables to autovacuum where it is on. Each case runs on a private node with that setting.
func TestVacuumQueues_OnlyWhenAutovacuumIsOff(t *testing.T) {
	t.Parallel()
	for _, autovacuum := range []string{"off", "on"} {
		t.Run("autovacuum "+autovacuum, func(t *testing.T) {
			t.Parallel()
			node := node.StartPostgres(t, node.PostgresOptions{Name: "av" + autovacuum, Settings: map[string]string{"autovacuum": autovacuum}})
			db := testutil.NewDBOn(t, node.URL())
			ctx := context.Background()
			// stat reads a table's statistics (expr over pg_stat_user_tables), flushed first.
			stat := func(table, expr string) int {
				var n int
				if err := db.NewRaw("SELECT pg_stat_force_next_flush()").Scan(ctx, new(string)); err != nil {
					t.Fatal(err)
				}
				if err := db.NewRaw("SELECT "+expr+" FROM pg_stat_user_tables WHERE relid = to_regclass(?)", table).Scan(ctx, &n); err != nil {
					t.Fatal(err)
				}
				return n
			}
			analyzed := func(table string) int { return stat(table, "analyze_count + autoanalyze_count") }
			// 1,000 orders placed on an empty table: no dead row, but grown past
			// autovacuum's analyze threshold (50 rows and a tenth of the live ones).
			if _, err := db.ExecContext(ctx, `INSERT INTO orders (id, customer_id, status, total_cents, currency, created_at, updated_at)
				SELECT gen_random_uuid(), 'g' || i, 'PENDING_PAYMENT', 100, 'USD', now(), now() FROM generate_series(1, 1000) i`); err != nil {
				t.Fatal(err)
			}
			before := analyzed("orders")
			grown, err := store.NewMaintenance(db.DB, time.Now).VacuumQueues(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if autovacuum == "off" && (!slices.Equal(grown, []string{"orders"}) || analyzed("orders") != before+1) {
				t.Fatalf("after 1,000 new orders: %v done, orders analyzed %d times (before: %d); want the orders analyzed once, alone",
					grown, analyzed("orders"), before)
			}
			// 20,000 outbox rows, published and pruned: dead rows, none live.
			if _, err := db.ExecContext(ctx, `INSERT INTO outbox (event_id, type, aggregate_id, payload, created_at)
				SELECT gen_random_uuid(), 'order.placed', 'o' || i, '{}', now() FROM generate_series(1, 20000) i`); err != nil {
				t.Fatal(err)
			}
			if _, err := db.ExecContext(ctx, "DELETE FROM outbox"); err != nil {
				t.Fatal(err)
			}
			// 20,000 orders placed, then paid: one dead version each.
			if _, err := db.ExecContext(ctx, `INSERT INTO orders (id, customer_id, status, total_cents, currency, created_at, updated_at)
				SELECT gen_random_uuid(), 'c' || i, 'PENDING_PAYMENT', 100, 'USD', now(), now() FROM generate_series(1, 20000) i`); err != nil {
				t.Fatal(err)
			}
			if _, err := db.ExecContext(ctx, "UPDATE orders SET status = 'PAID'"); err != nil {
				t.Fatal(err)
			}
			deadIn := func(table string) int { return stat(table, "n_dead_tup") }
			dead := func() int { return deadIn("outbox") }
			testutil.Eventually(t, 10*time.Second, "the dead rows in the statistics", func() bool {
				return dead() >= 20000 && deadIn("orders") >= 20000
			})
			done, err := store.NewMaintenance(db.DB, time.Now).VacuumQueues(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if autovacuum == "on" {
				if len(done) != 0 {
					t.Fatalf("vacuumed %v although autovacuum is on", done)
				}
				return
			}
			if !slices.Contains(done, "outbox") || !slices.Contains(done, "orders") {
				t.Fatalf("vacuumed %v, want the outbox and the orders (20,000 dead rows each)", done)
			}
			testutil.Eventually(t, 10*time.Second, "no dead rows left in the outbox and the orders", func() bool {
				return dead() == 0 && deadIn("orders") == 0
			})
		})
	}
}
