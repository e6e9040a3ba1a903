package store_test

import (
	"context"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/checkout-backend/checkout/internal/catalog"
	"github.com/checkout-backend/checkout/internal/checkout"
	"github.com/checkout-backend/checkout/internal/event"
	"github.com/checkout-backend/checkout/internal/store"
	"github.com/checkout-backend/checkout/internal/testutil"
)

// escrowRegion is one region of the property test: its own database (a schema of its
// own), its transfers and its catalog.
type escrowRegion struct {
	name, warehouse string
	db              *testutil.DB
	transfers       *store.Transfers
	catalog         *store.Catalog
}

// message is a request or a grant on its way between regions.
type message struct {
	grant   bool
	payload event.TransferPayload
}

// TestEscrow_TransferProtocol_RandomDelaysDuplicatesDropsReorders_NeverCreatesStock
// drives the transfer protocol between two regions, each with a database of its own,
// through a network that delays, reorders, duplicates and drops its messages (requests
// may be lost; grants are only ever late, as the outbox publishes them until they are
// confirmed), with restocks among them and grants delivered twice at once, and checks
// the escrow invariant (checkout.CheckEscrow) after every step: every credit matches one
// grant, nothing in transit is negative, and the units on hand in both regions plus
// those in transit are exactly what the regions were given. After the network heals,
// nothing is in transit and the units on hand are that total. ESCROW_SEED replays a run.
func TestEscrow_TransferProtocol_RandomDelaysDuplicatesDropsReorders_NeverCreatesStock(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	seed := uint64(time.Now().UnixNano())
	if s, err := strconv.ParseUint(os.Getenv("ESCROW_SEED"), 10, 64); err == nil {
		seed = s
	}
	t.Logf("seed %d (ESCROW_SEED=%d replays it)", seed, seed)
	rng := rand.New(rand.NewPCG(seed, 1))
	now := func() time.Time { return time.Now().UTC() }

	start := map[string]map[string]int{ // region -> SKU -> on hand
		"eu": {"SCARCE": 5, "PLENTY": 100, "EU-ONLY": 20},
		"us": {"SCARCE": 3, "PLENTY": 80},
	}
	regions := []*escrowRegion{{name: "eu", warehouse: "ams"}, {name: "us", warehouse: "nyc"}}
	expected := map[string]int{}
	for _, r := range regions {
		r.db = testutil.NewDB(t)
		r.transfers = store.NewTransfers(r.db.DB, now, r.name)
		r.catalog = store.NewCatalog(r.db.DB, now)
		for _, sku := range []string{"SCARCE", "PLENTY", "EU-ONLY"} {
			if _, err := r.catalog.UpsertProduct(ctx, catalog.Product{SKU: sku, Name: sku, PriceCents: 100, Currency: "USD"}); err != nil {
				t.Fatal(err)
			}
			if n, ok := start[r.name][sku]; ok {
				if _, err := r.catalog.SetStock(ctx, sku, r.warehouse, n); err != nil {
					t.Fatal(err)
				}
				expected[sku] += n
			}
		}
	}
	other := func(r *escrowRegion) *escrowRegion {
		if r == regions[0] {
			return regions[1]
		}
		return regions[0]
	}
	byName := func(name string) *escrowRegion {
		for _, r := range regions {
			if r.name == name {
				return r
			}
		}
		t.Fatalf("no region %q", name)
		return nil
	}
	readLedgers := func() []checkout.RegionLedger {
		t.Helper()
		var ledgers []checkout.RegionLedger
		for _, r := range regions {
			l, err := r.transfers.Ledger(ctx)
			if err != nil {
				t.Fatal(err)
			}
			ledgers = append(ledgers, l)
		}
		return ledgers
	}
	check := func(step int, what string) {
		t.Helper()
		if bad := checkout.CheckEscrow(readLedgers(), expected); len(bad) > 0 {
			t.Fatalf("seed %d, step %d (%s): the escrow invariant broke:\n%s", seed, step, what, strings.Join(bad, "\n"))
		}
	}

	var network, delivered []message
	grants, credits, duplicates, dropped, restocks := 0, 0, 0, 0, 0
	deliver := func(m message) string {
		t.Helper()
		if !m.grant {
			giver := byName(m.payload.From)
			g, err := giver.transfers.Grant(ctx, m.payload, rng.IntN(4))
			if err != nil {
				t.Fatalf("seed %d: grant %+v: %v", seed, m.payload, err)
			}
			network = append(network, message{grant: true, payload: g})
			grants++
			return "grant " + g.SKU
		}
		receiver := byName(m.payload.To)
		if rng.IntN(5) > 0 {
			ok, err := receiver.transfers.Credit(ctx, m.payload)
			if err != nil {
				t.Fatalf("seed %d: credit %+v: %v", seed, m.payload, err)
			}
			if ok {
				credits++
			}
			return "credit " + m.payload.SKU
		}
		// The same grant delivered twice at once (two consumers, a redelivery racing
		// the first): one of them credits it.
		var wg sync.WaitGroup
		var mu sync.Mutex
		n := 0
		for range 2 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				ok, err := receiver.transfers.Credit(ctx, m.payload)
				if err != nil {
					t.Errorf("seed %d: credit %+v: %v", seed, m.payload, err)
				}
				if ok {
					mu.Lock()
					n++
					mu.Unlock()
				}
			}()
		}
		wg.Wait()
		if n > 1 {
			t.Fatalf("seed %d: grant %s credited %d times at once", seed, m.payload.TransferID, n)
		}
		credits += n
		return "credit twice at once " + m.payload.SKU
	}

	skus := []string{"SCARCE", "PLENTY", "EU-ONLY"}
	for step := 1; step <= 300; step++ {
		var what string
		switch p := rng.IntN(100); {
		case p < 30: // a region asks the other for some stock
			asker := regions[rng.IntN(2)]
			req := event.TransferPayload{TransferID: uuid.Must(uuid.NewV7()).String(), SKU: skus[rng.IntN(len(skus))],
				Quantity: 1 + rng.IntN(10), From: other(asker).name, To: asker.name, Warehouse: asker.warehouse}
			network = append(network, message{payload: req})
			what = "request " + req.SKU
		case p < 80 && len(network) > 0: // a message arrives, in any order
			i := rng.IntN(len(network))
			m := network[i]
			switch q := rng.IntN(10); {
			case q == 0 && !m.grant: // a request lost for good
				network = append(network[:i], network[i+1:]...)
				dropped++
				what = "drop a request"
			case q < 3: // delivered, and still on its way again (a redelivery to come)
				what = deliver(m)
				delivered = append(delivered, m)
				duplicates++
			default:
				network = append(network[:i], network[i+1:]...)
				what = deliver(m)
				delivered = append(delivered, m)
			}
		case p < 90 && len(delivered) > 0: // an old message delivered once more
			what = "again: " + deliver(delivered[rng.IntN(len(delivered))])
			duplicates++
		default: // a restock in one region
			r := regions[rng.IntN(2)]
			sku := skus[rng.IntN(len(skus))]
			levels, err := r.catalog.Inventory(ctx, sku)
			if err != nil {
				t.Fatal(err)
			}
			have := 0
			for _, l := range levels {
				if l.Warehouse == r.warehouse {
					have = l.OnHand
				}
			}
			add := 1 + rng.IntN(5)
			if _, err := r.catalog.SetStock(ctx, sku, r.warehouse, have+add); err != nil {
				t.Fatal(err)
			}
			expected[sku] += add
			restocks++
			what = "restock " + sku
		}
		check(step, what)
	}

	// The network heals: every grant still on its way arrives (requests too).
	for step := 301; len(network) > 0; step++ {
		m := network[0]
		network = network[1:]
		check(step, deliver(m))
	}
	ledgers := readLedgers()
	for i, r := range regions {
		l := ledgers[i]
		// One stock.transfer_granted in the giver's outbox per transfer it granted.
		if n := testutil.Count(t, r.db.DB, `SELECT count(*) FROM outbox WHERE type = ?`, event.StockTransferGranted); n != len(l.Given) {
			t.Errorf("%s: %d grant events for %d grants", r.name, n, len(l.Given))
		}
	}
	for sku, n := range checkout.InTransit(ledgers) {
		if n != 0 {
			t.Errorf("after the network healed, %d of %s still in transit", n, sku)
		}
	}
	if bad := checkout.CheckEscrow(ledgers, expected); len(bad) > 0 {
		t.Fatalf("seed %d, healed: %s", seed, strings.Join(bad, "\n"))
	}
	t.Logf("%d grants, %d credits, %d duplicates, %d requests dropped, %d restocks; on hand after healing: eu %v, us %v",
		grants, credits, duplicates, dropped, restocks, ledgers[0].OnHand, ledgers[1].OnHand)
	if credits == 0 || duplicates == 0 {
		t.Fatalf("seed %d: the run exercised too little (%d credits, %d duplicates)", seed, credits, duplicates)
	}
}
