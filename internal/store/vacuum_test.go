package store_test

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/checkout-backend/checkout/internal/store"
	"github.com/checkout-backend/checkout/internal/testutil"
	"github.com/checkout-backend/checkout/internal/testutil/pgnode"
)

// A server with autovacuum off (this machine's is) never vacuums the outbox: its dead
// rows pile up and every claim of the relay walks them. The sweeper's VacuumQueues
// vacuums a queue table full of dead rows there, and leaves the tables to autovacuum
// where it is on. Each case runs on a private node with that setting.
func TestVacuumQueues_OnlyWhenAutovacuumIsOff(t *testing.T) {
	t.Parallel()
	for _, autovacuum := range []string{"off", "on"} {
		t.Run("autovacuum "+autovacuum, func(t *testing.T) {
			t.Parallel()
			node := pgnode.Start(t, pgnode.Options{Name: "av" + autovacuum, Settings: map[string]string{"autovacuum": autovacuum}})
			db := testutil.NewDBOn(t, node.URL())
			ctx := context.Background()
			// 20,000 outbox rows, published and pruned: dead rows, none live.
			if _, err := db.ExecContext(ctx, `INSERT INTO outbox (event_id, type, aggregate_id, payload)
				SELECT gen_random_uuid(), 'order.placed', 'o' || i, '{}' FROM generate_series(1, 20000) i`); err != nil {
				t.Fatal(err)
			}
			if _, err := db.ExecContext(ctx, "DELETE FROM outbox"); err != nil {
				t.Fatal(err)
			}
			dead := func() int {
				var n int
				if err := db.NewRaw("SELECT pg_stat_force_next_flush()").Scan(ctx, new(string)); err != nil {
					t.Fatal(err)
				}
				if err := db.NewRaw("SELECT n_dead_tup FROM pg_stat_user_tables WHERE relid = 'outbox'::regclass").Scan(ctx, &n); err != nil {
					t.Fatal(err)
				}
				return n
			}
			testutil.Eventually(t, 10*time.Second, "the outbox's dead rows in the statistics", func() bool { return dead() >= 20000 })
			done, err := store.NewMaintenance(db.DB, nil).VacuumQueues(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if autovacuum == "on" {
				if len(done) != 0 {
					t.Fatalf("vacuumed %v although autovacuum is on", done)
				}
				return
			}
			if !slices.Contains(done, "outbox") {
				t.Fatalf("vacuumed %v, want the outbox (20,000 dead rows)", done)
			}
			testutil.Eventually(t, 10*time.Second, "no dead rows left in the outbox", func() bool { return dead() == 0 })
		})
	}
}
