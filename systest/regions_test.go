package systest

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/checkout-backend/checkout/internal/broker"
	"github.com/checkout-backend/checkout/internal/catalog"
	"github.com/checkout-backend/checkout/internal/checkout"
	"github.com/checkout-backend/checkout/internal/event"
	"github.com/checkout-backend/checkout/internal/node"
	"github.com/checkout-backend/checkout/internal/store"
	"github.com/checkout-backend/checkout/internal/testutil"
	"github.com/checkout-backend/checkout/outbox"
	"github.com/checkout-backend/checkout/workers"
)

// region is one region of a two-region deployment on this machine: its own database
// (a schema of the shared server), its own RabbitMQ node (with the shovel plugin), its
// relay, transfer worker and rebalancer, and, for each peer, a shovel whose link to
// the peer's broker goes through a toxiproxy of the test's own (cut: a partition).
type region struct {
	name      string
	db        *testutil.DB
	rabbit    *node.Rabbit
	broker    *broker.Broker
	transfers *store.Transfers
	link      *testutil.Proxy // this region's shovel to its peer
}

const regionsPrefix = "r."

func startRegion(t *testing.T, name string, regions checkout.Regions) *region {
	t.Helper()
	r := &region{name: name, db: testutil.NewDB(t)}
	r.rabbit = node.StartRabbit(t, node.RabbitOptions{Plugins: []string{"rabbitmq_shovel"}})
	// Besides the region's own queues: a partner's (every region's order events, as the
	// webhook fan-out takes them) and a local one (order.placed, as the payment worker
	// takes it).
	topo := broker.Topology{Prefix: regionsPrefix, RetryDelays: testutil.TestRetryDelays,
		Consumers: append(workers.RegionConsumers(regions), broker.Consumer{Name: "partner", Types: event.OrderTypes, Remote: true},
			broker.Consumer{Name: "local", Types: []string{event.OrderPlaced}})}
	r.broker = broker.New(r.rabbit.URL(), topo, nil)
	t.Cleanup(func() { r.broker.Close() })
	if err := r.broker.Declare(context.Background()); err != nil {
		t.Fatal(err)
	}
	r.transfers = store.NewTransfers(r.db.DB, time.Now, name)
	t.Cleanup(func() {
		if t.Failed() { // what the broker held, and how its shovels were, for the failure's reader
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			q, _ := r.rabbit.Ctl(ctx, "list_queues", "name", "messages")
			s, _ := r.rabbit.Ctl(ctx, "shovel_status")
			logs, _ := filepath.Glob(filepath.Join(r.rabbit.Dir, "log", "*.log"))
			var tail []byte
			for _, l := range logs {
				b, _ := os.ReadFile(l)
				for _, line := range strings.Split(string(b), "\n") {
					if strings.Contains(line, "Shovel") || strings.Contains(line, "shovel") && strings.Contains(line, "[error]") {
						tail = append(tail, line+"\n"...)
					}
				}
			}
			t.Logf("region %s: queues:\n%s\nshovels:\n%s\nlog:\n%s", name, q, s, tail)
		}
	})
	return r
}

// run starts the region's relay, transfer worker and rebalancer until the test ends.
func (r *region) run(t *testing.T, peers []string, wg *sync.WaitGroup, ctx context.Context) {
	t.Helper()
	relay, err := outbox.NewRelay(r.db.DB, r.broker, time.Now, outbox.RelayOptions{Batch: 50, Poll: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	reb, err := workers.NewRebalancer(r.transfers, peers, workers.RebalancerOptions{Interval: 100 * time.Millisecond,
		AskOptions: checkout.AskOptions{Low: 10, Target: 30, Reask: 3 * time.Second, Idle: 3 * time.Second, Warehouse: "w-" + r.name}})
	if err != nil {
		t.Fatal(err)
	}
	w := workers.NewTransferWorker(r.transfers, 10, nil)
	replica := workers.NewCatalogWorker(store.NewCatalog(r.db.DB, time.Now), nil)
	wg.Add(4)
	go func() { defer wg.Done(); replica.Run(ctx, r.broker, broker.ConsumeOptions{}) }()
	go func() { defer wg.Done(); relay.Run(ctx) }()
	go func() { defer wg.Done(); reb.Run(ctx) }()
	go func() { defer wg.Done(); w.Run(ctx, r.broker, broker.ConsumeOptions{}) }()
}

// shovelTo sets the shovels that carry what this region addresses to peer and its order
// events, through the region's link.
func (r *region) shovelTo(t *testing.T, peer *region) {
	t.Helper()
	r.link = testutil.NewProxy(t, peer.rabbit.HostPort())
	topo := r.broker.Topology()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for _, route := range workers.ShovelRoutes(topo, peer.name) {
		name, def := topo.Shovel(route.Queue, route.Exchange, "amqp://guest:guest@"+r.link.Addr()+"/%2f")
		if _, err := r.rabbit.Ctl(ctx, "set_parameter", "shovel", name, string(def)); err != nil {
			t.Fatal(err)
		}
	}
}

func (r *region) onHand(t *testing.T, sku string) int {
	t.Helper()
	return testutil.Count(t, r.db, "SELECT COALESCE(sum(on_hand), 0) FROM inventory WHERE sku = ?", sku)
}

func (r *region) ledger(t *testing.T) checkout.RegionLedger {
	t.Helper()
	l, err := r.transfers.Ledger(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// TestRegions_OverShovels_TransfersNeverCreateStock_OrderEventsReachEveryRegionOnce runs
// two regions linked by RabbitMQ's shovel plugin. The escrow protocol: the region short
// of a SKU asks, the other grants from its spare units, and the grant is credited once.
// Cutting the link that carries grants leaves the granted units in transit (debited,
// not credited: nothing is sold twice), healing delivers them, a grant delivered again
// is not credited again, and nothing a region sends comes back to it. Order events: a
// region's reach the other's partners once, never its payment worker, and never return.
func TestRegions_OverShovels_TransfersNeverCreateStock_OrderEventsReachEveryRegionOnce(t *testing.T) {
	testutil.Slow(t) // two RabbitMQ nodes of its own
	t.Parallel()
	names := []string{"east", "west"}
	east := startRegion(t, "east", checkout.Regions{Names: names, Local: "east"})
	west := startRegion(t, "west", checkout.Regions{Names: names, Local: "west"})
	for _, r := range []*region{east, west} {
		// The catalog is in every region; the stock of SKU P is all in east.
		mustExec(t, r.db, `INSERT INTO products (sku, name, price_cents, currency, created_at, updated_at) VALUES ('P', 'Plenty', 100, 'USD', now(), now())`)
	}
	mustExec(t, east.db, `INSERT INTO inventory (sku, warehouse, on_hand, updated_at) VALUES ('P', 'w-east', 100, now())`)
	east.shovelTo(t, west)
	west.shovelTo(t, east)

	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	t.Cleanup(func() { cancel(); wg.Wait() })
	east.run(t, []string{"west"}, &wg, ctx)
	west.run(t, []string{"east"}, &wg, ctx)

	total := 100
	check := func(step string) {
		t.Helper()
		if bad := checkout.CheckEscrow([]checkout.RegionLedger{east.ledger(t), west.ledger(t)}, map[string]int{"P": total}); len(bad) > 0 {
			t.Fatalf("%s: escrow broken:\n%v", step, bad)
		}
	}

	// West has none of P: it asks east for 30 (sold out, so east may go below what it
	// keeps, but has plenty), east grants 30, west credits them.
	testutil.Eventually(t, 30*time.Second, "west credited the first grant", func() bool { return west.onHand(t, "P") == 30 })
	if got := east.onHand(t, "P"); got != 70 {
		t.Fatalf("east has %d of P after giving 30 of 100, want 70", got)
	}
	check("after the first transfer")

	// Partition of the link that carries east's grants to west. West sells 25 of its
	// 30 (5 left, below its low mark of 10) and asks again; east hears it (the other
	// link is up), debits 25 and announces the grant, which cannot cross.
	east.link.Cut()
	mustExec(t, west.db, `UPDATE inventory SET on_hand = on_hand - 25 WHERE sku = 'P'`)
	total -= 25
	testutil.Eventually(t, 30*time.Second, "east granted the second request", func() bool { return east.onHand(t, "P") == 45 })
	time.Sleep(time.Second) // what could cross would have by now
	if got := west.onHand(t, "P"); got != 5 {
		t.Fatalf("west has %d of P while the grant cannot reach it, want 5", got)
	}
	if transit := checkout.InTransit([]checkout.RegionLedger{east.ledger(t), west.ledger(t)})["P"]; transit != 25 {
		t.Fatalf("%d of P in transit during the partition, want 25", transit)
	}
	check("during the partition")

	// Heal: the grant crosses and is credited; nothing is left in transit.
	east.link.Restore()
	testutil.Eventually(t, 30*time.Second, "west credited the grant held by the partition", func() bool { return west.onHand(t, "P") == 30 })
	if transit := checkout.InTransit([]checkout.RegionLedger{east.ledger(t), west.ledger(t)})["P"]; transit != 0 {
		t.Fatalf("%d of P in transit after healing, want 0", transit)
	}
	check("after healing")

	// A grant delivered again (a shovel that crashed between the peer's confirm and
	// its own ack re-sends) is not credited twice.
	var grant event.TransferPayload
	for id, g := range east.ledger(t).Given {
		grant = event.TransferPayload{TransferID: id, SKU: g.SKU, Quantity: g.Quantity, From: "east", To: "west", Warehouse: "w-west"}
	}
	payload, _ := json.Marshal(grant)
	dup := event.Envelope{ID: grant.TransferID, Type: event.StockTransferGranted, AggregateID: "transfer:" + grant.TransferID,
		OccurredAt: time.Now(), Payload: payload, Headers: map[string]string{event.ToRegionHeader: "west"}}
	if err := west.broker.Publish(ctx, []event.Envelope{dup}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Second)
	if got := west.onHand(t, "P"); got != 30 {
		t.Fatalf("west has %d of P after a grant came twice, want 30", got)
	}
	check("after a duplicate grant")

	// Nothing crossed back: east never asked (it never ran low), so it granted
	// everything west credited and credited nothing itself; west granted nothing.
	if n := testutil.Count(t, east.db, "SELECT count(*) FROM stock_transfers_in"); n != 0 {
		t.Fatalf("east credited %d transfers: its own events came back to it", n)
	}
	if n := testutil.Count(t, west.db, "SELECT count(*) FROM stock_transfers_out"); n != 0 {
		t.Fatalf("west granted %d transfers: its own requests came back to it", n)
	}
	if n := testutil.Count(t, west.db, "SELECT count(*) FROM stock_transfer_requests WHERE answered_at IS NULL"); n != 0 {
		t.Fatalf("%d of west's requests unanswered after healing", n)
	}

	// The catalog: a product an admin creates in east, then changes, is in west as it
	// is in east.
	eastCatalog := store.NewCatalog(east.db.DB, time.Now).InRegion("east")
	for _, price := range []int64{900, 1200} {
		if _, err := eastCatalog.UpsertProduct(ctx, catalog.Product{SKU: "NEW", Name: "New", PriceCents: price, Currency: "EUR"}); err != nil {
			t.Fatal(err)
		}
	}
	testutil.Eventually(t, 30*time.Second, "east's new product in west's catalog, changed", func() bool {
		return testutil.Count(t, west.db, "SELECT count(*) FROM products WHERE sku = 'NEW' AND price_cents = 1200 AND currency = 'EUR' AND updated_in = 'east'") == 1
	})
	if n := testutil.Count(t, west.db, "SELECT count(*) FROM outbox WHERE type = ?", event.ProductUpserted); n != 0 {
		t.Fatalf("west announced %d catalog changes it only applied (they would go back to east)", n)
	}

	// Order events: east's reach west's partner queue (the remote exchange), once, as
	// they reach east's own; west's payment-like queue never sees east's order.placed;
	// and nothing west received goes back to east.
	var mu sync.Mutex
	got := map[string]int{}
	for _, r := range []*region{east, west} {
		for _, c := range []string{"partner", "local"} {
			wg.Add(1)
			go func() {
				defer wg.Done()
				r.broker.Consume(ctx, c, broker.ConsumeOptions{}, func(_ context.Context, env event.Envelope) error {
					mu.Lock()
					got[r.name+"/"+c+"/"+env.Type]++
					mu.Unlock()
					return nil
				})
			}()
		}
	}
	order := json.RawMessage(`{"order":{"id":"01a24d31-0000-7000-8000-000000000001","status":"PAID","sequence":2},"customerId":"c"}`)
	var events []event.Envelope
	for _, typ := range []string{event.OrderPlaced, event.OrderPaid} {
		events = append(events, event.Envelope{ID: uuid.Must(uuid.NewV7()).String(), Type: typ, AggregateID: "order:1",
			OccurredAt: time.Now(), Payload: order})
	}
	if err := east.broker.Publish(ctx, events); err != nil {
		t.Fatal(err)
	}
	count := func(key string) int { mu.Lock(); defer mu.Unlock(); return got[key] }
	testutil.Eventually(t, 30*time.Second, "east's order events at west's partner queue", func() bool {
		return count("west/partner/"+event.OrderPaid) > 0 && count("west/partner/"+event.OrderPlaced) > 0
	})
	time.Sleep(time.Second) // a copy sent back or twice would have arrived by now
	for key, want := range map[string]int{
		"east/partner/" + event.OrderPlaced: 1, "east/partner/" + event.OrderPaid: 1,
		"west/partner/" + event.OrderPlaced: 1, "west/partner/" + event.OrderPaid: 1,
		"east/local/" + event.OrderPlaced: 1, "west/local/" + event.OrderPlaced: 0,
	} {
		if n := count(key); n != want {
			t.Errorf("%s: %d deliveries, want %d", key, n, want)
		}
	}
}

func mustExec(t *testing.T, db *testutil.DB, query string, args ...any) {
	t.Helper()
	if _, err := db.ExecContext(context.Background(), query, args...); err != nil {
		t.Fatal(err)
	}
}
