package store_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/uptrace/bun"

	"github.com/checkout-backend/checkout/internal/catalog"
	"github.com/checkout-backend/checkout/internal/checkout"
	"github.com/checkout-backend/checkout/internal/event"
	"github.com/checkout-backend/checkout/internal/store"
	"github.com/checkout-backend/checkout/internal/testutil"
)

// A rebalancing round asks for what runs low, of the next region in turn, once per
// reask window; after a grant of nothing it waits out the idle time; a SKU with enough
// is not asked for; and while another instance of the region holds the round, this one
// asks for nothing.
func TestTransfers_Ask_LowSKUsOncePerWindow_PeersInTurn_OneInstanceAtATime(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	var mu sync.Mutex
	clock := time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)
	now := func() time.Time { mu.Lock(); defer mu.Unlock(); return clock }
	advance := func(d time.Duration) { mu.Lock(); clock = clock.Add(d); mu.Unlock() }
	db := testutil.NewDB(t)
	cat := store.NewCatalog(db.DB, now)
	for sku, n := range map[string]int{"LOW": 4, "ENOUGH": 10} {
		if _, err := cat.UpsertProduct(ctx, catalog.Product{SKU: sku, Name: sku, PriceCents: 1, Currency: "USD"}); err != nil {
			t.Fatal(err)
		}
		if _, err := cat.SetStock(ctx, sku, "ams", n); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := cat.UpsertProduct(ctx, catalog.Product{SKU: "ELSEWHERE", Name: "x", PriceCents: 1, Currency: "USD"}); err != nil {
		t.Fatal(err)
	}
	tr := store.NewTransfers(db.DB, now, "eu")
	opt := checkout.AskOptions{Low: 10, Target: 30, Reask: 5 * time.Second, Idle: time.Minute, Warehouse: "main"}
	peers := []string{"us", "ap"}
	ask := func() map[string]event.TransferPayload {
		t.Helper()
		asked, err := tr.Ask(ctx, peers, opt)
		if err != nil {
			t.Fatal(err)
		}
		out := map[string]event.TransferPayload{}
		for _, a := range asked {
			out[a.SKU] = a
		}
		return out
	}

	first := ask()
	if len(first) != 2 {
		t.Fatalf("first round asked for %v, want LOW and ELSEWHERE (ENOUGH has 10, the low mark)", first)
	}
	low, away := first["LOW"], first["ELSEWHERE"]
	if low.From != "us" || low.To != "eu" || low.Quantity != 26 || low.Warehouse != "ams" || low.SoldOut {
		t.Fatalf("LOW asked as %+v, want 26 of us into ams, not sold out", low)
	}
	if away.Quantity != 30 || away.Warehouse != "main" || !away.SoldOut {
		t.Fatalf("ELSEWHERE asked as %+v, want 30 into main, sold out", away)
	}
	if n := testutil.Count(t, db, "SELECT count(*) FROM outbox WHERE type = ? AND headers->>? = 'us'", event.StockTransferRequested, event.ToRegionHeader); n != 2 {
		t.Fatalf("%d requests addressed to us in the outbox, want 2", n)
	}
	if again := ask(); len(again) != 0 {
		t.Fatalf("asked again within the reask window: %v", again)
	}

	// ELSEWHERE's request is answered with nothing; LOW's is lost.
	if _, err := tr.Credit(ctx, event.TransferPayload{TransferID: away.TransferID, SKU: "ELSEWHERE", From: "us", To: "eu", Warehouse: "main"}); err != nil {
		t.Fatal(err)
	}
	advance(6 * time.Second)
	second := ask()
	if len(second) != 1 || second["LOW"].From != "ap" {
		t.Fatalf("after the reask window asked for %v, want LOW alone, of ap (the next region; ELSEWHERE got nothing a minute ago)", second)
	}

	// Another instance of the region holds the round: this one asks for nothing.
	advance(2 * time.Minute)
	err := db.RunInTx(ctx, nil, func(ctx context.Context, tx bun.Tx) error {
		if _, err := tx.ExecContext(ctx, "SELECT pg_advisory_xact_lock(hashtext('checkout.rebalancer'))"); err != nil {
			return err
		}
		if held := ask(); len(held) != 0 {
			t.Errorf("asked for %v while another instance held the round", held)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if third := ask(); len(third) != 2 {
		t.Fatalf("once the round was free, asked for %v, want LOW and ELSEWHERE", third)
	}
}

// A region asked keeps its low mark for its own buyers, unless the asker has sold out:
// then it shares half of what it has, so the last units go where they are wanted.
func TestTransfers_Grant_KeepsItsOwnUnlessTheAskerSoldOut(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	now := func() time.Time { return time.Now().UTC() }
	db := testutil.NewDB(t)
	cat := store.NewCatalog(db.DB, now)
	if _, err := cat.UpsertProduct(ctx, catalog.Product{SKU: "S", Name: "S", PriceCents: 1, Currency: "USD"}); err != nil {
		t.Fatal(err)
	}
	if _, err := cat.SetStock(ctx, "S", "nyc", 15); err != nil {
		t.Fatal(err)
	}
	tr := store.NewTransfers(db.DB, now, "us")
	req := func(soldOut bool) event.TransferPayload {
		return event.TransferPayload{TransferID: uuid.Must(uuid.NewV7()).String(), SKU: "S", Quantity: 30, From: "us", To: "eu", Warehouse: "ams", SoldOut: soldOut}
	}
	g, err := tr.Grant(ctx, req(false), 10)
	if err != nil {
		t.Fatal(err)
	}
	if g.Quantity != 5 {
		t.Fatalf("gave %d of 15 keeping 10, want 5", g.Quantity)
	}
	g, err = tr.Grant(ctx, req(true), 10)
	if err != nil {
		t.Fatal(err)
	}
	if g.Quantity != 5 {
		t.Fatalf("gave %d of 10 to a sold-out region, want half: 5", g.Quantity)
	}
	if g, err = tr.Grant(ctx, req(false), 10); err != nil || g.Quantity != 0 {
		t.Fatalf("gave %d (%v) of 5, below the 10 kept, want 0", g.Quantity, err)
	}
}

// A region's copy of the catalog applies another region's change only if it is newer,
// by (updated_at, region), so two regions receiving the same changes in any order end
// with the same row; applying announces nothing (it would go back), while a change made
// here, in a region of several, is announced in its own transaction.
func TestCatalog_ApplyProduct_NewestWins_AnyOrder_ChangesMadeHereAnnounced(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	t0 := time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)
	changes := []event.ProductPayload{
		{SKU: "P", Name: "first", PriceCents: 100, Currency: "USD", UpdatedAt: t0, Region: "eu"},
		{SKU: "P", Name: "later in us", PriceCents: 300, Currency: "USD", UpdatedAt: t0.Add(time.Second), Region: "us"},
		{SKU: "P", Name: "same instant in eu", PriceCents: 200, Currency: "USD", UpdatedAt: t0.Add(time.Second), Region: "eu"},
	}
	for _, order := range [][]int{{0, 1, 2}, {2, 1, 0}, {1, 0, 2}} {
		db := testutil.NewDB(t)
		c := store.NewCatalog(db.DB, time.Now)
		for _, i := range order {
			if _, err := c.ApplyProduct(ctx, changes[i]); err != nil {
				t.Fatal(err)
			}
		}
		p, err := c.Product(ctx, "P")
		if err != nil || p == nil {
			t.Fatalf("order %v: %v %v", order, p, err)
		}
		if p.Name != "later in us" || p.PriceCents != 300 {
			t.Errorf("changes applied in the order %v: %q at %d, want the newest (us wins the tie with eu by name)", order, p.Name, p.PriceCents)
		}
		if n := testutil.Count(t, db, "SELECT count(*) FROM outbox"); n != 0 {
			t.Errorf("applying other regions' changes announced %d events", n)
		}
	}

	db := testutil.NewDB(t)
	if _, err := store.NewCatalog(db.DB, time.Now).UpsertProduct(ctx, catalog.Product{SKU: "ONE", Name: "one region", PriceCents: 1, Currency: "USD"}); err != nil {
		t.Fatal(err)
	}
	if n := testutil.Count(t, db, "SELECT count(*) FROM outbox"); n != 0 {
		t.Errorf("a deployment of one region announced %d catalog changes", n)
	}
	limit := 2
	if _, err := store.NewCatalog(db.DB, time.Now).InRegion("eu").UpsertProduct(ctx, catalog.Product{SKU: "ONE", Name: "changed", PriceCents: 5, Currency: "USD", MaxPerCustomer: &limit}); err != nil {
		t.Fatal(err)
	}
	if n := testutil.Count(t, db, `SELECT count(*) FROM outbox WHERE type = ? AND payload->>'region' = 'eu' AND payload->>'name' = 'changed'
		AND (payload->>'maxPerCustomer')::int = 2`, event.ProductUpserted); n != 1 {
		t.Errorf("a change made in eu announced %d times, want once with the product as it now is", n)
	}
}
