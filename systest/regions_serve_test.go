package systest

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/checkout-backend/checkout/internal/node"
	"github.com/checkout-backend/checkout/internal/platform/auth"
	"github.com/checkout-backend/checkout/internal/testutil"
)

// TestRegions_TwoServiceBinaries_CatalogAndStockMove_OrdersReadAndListedAnywhere runs
// the service binary as a deployment of two regions configures it (REGION, REGIONS,
// REGION_URLS, REBALANCE_*; node.UpRegions: each region its PostgreSQL, its RabbitMQ
// with the shovels `checkout shovels` prints, links through toxiproxy). A product made in
// east reaches west's catalog; its stock is all in east, and a buyer in west gets one
// once west's rebalancer has moved some; east reads that order and lists it among the
// buyer's orders (forwarded to west with the buyer's token).
func TestRegions_TwoServiceBinaries_CatalogAndStockMove_OrdersReadAndListedAnywhere(t *testing.T) {
	testutil.Slow(t) // two regions of servers of its own
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	s, err := node.UpRegions(ctx, node.RegionsOptions{Dir: t.TempDir(), Bin: testutil.BuildCheckout(t), ToxiproxyBin: testutil.ToxiproxyBin(t),
		Env: []string{"REBALANCE_LOW=3", "REBALANCE_TARGET=10", "REBALANCE_INTERVAL=200ms", "REBALANCE_REASK=2s", "REBALANCE_IDLE=2s",
			"OUTBOX_POLL_INTERVAL=200ms", "SWEEP_INTERVAL=1s"}})
	if err != nil {
		if s != nil {
			s.Down()
		}
		t.Fatal(err)
	}
	t.Cleanup(s.Down)
	east, west := s.Region("east").Instance.URL(), s.Region("west").Instance.URL()
	admin, _ := auth.Sign(s.JWTSecret, "admin", []string{"admin"}, time.Hour)
	ann, _ := auth.Sign(s.JWTSecret, "ann", nil, time.Hour)

	gql(t, east, admin, `mutation { upsertProduct(input: {sku: "MUG", name: "Mug", priceCents: 800, currency: "EUR"}) { sku } }`, nil)
	// Polled four times a second: the API's rate limit is for buyers, not for this loop.
	testutil.Eventually(t, 30*time.Second, "east's product in west's catalog", func() bool {
		time.Sleep(250 * time.Millisecond)
		return fmt.Sprint(gql(t, west, admin, `{ product(sku: "MUG") { name priceCents } }`, nil)["product"]) == "map[name:Mug priceCents:800]"
	})
	gql(t, east, admin, `mutation { setStock(sku: "MUG", warehouse: "ams", onHand: 30) { onHand } }`, nil)

	// West has none: its rebalancer asks east, and the units it is given go on sale.
	checkout := `mutation { checkout(input: {idempotencyKey: "k1", paymentToken: "tok_visa",
		items: [{sku: "MUG", quantity: 1}]}) { order { id } userErrors { code } } }`
	if co := fmt.Sprint(gql(t, west, ann, checkout, nil)["checkout"]); !strings.Contains(co, "OUT_OF_STOCK") && !strings.Contains(co, "order:map[id:") {
		t.Fatalf("checkout in west before any transfer: %s", co)
	}
	testutil.Eventually(t, 60*time.Second, "MUG on sale in west, moved from east", func() bool {
		time.Sleep(250 * time.Millisecond)
		p, _ := gql(t, west, admin, `{ product(sku: "MUG") { available } }`, nil)["product"].(map[string]any)
		n, _ := p["available"].(float64)
		return n > 0
	})
	data := gql(t, west, ann, strings.Replace(checkout, "k1", "k2", 1), nil)["checkout"].(map[string]any)
	o, ok := data["order"].(map[string]any)
	if !ok {
		t.Fatalf("checkout in west once MUG is on sale there: %v", data)
	}
	orderID := o["id"].(string)
	testutil.Eventually(t, 30*time.Second, "the order paid, as east reads it from west", func() bool {
		time.Sleep(250 * time.Millisecond)
		return fmt.Sprint(gql(t, east, ann, `query($id: ID!) { order(id: $id) { status } }`, map[string]any{"id": orderID})["order"]) == "map[status:PAID]"
	})
	listed := fmt.Sprint(gql(t, east, ann, `{ myOrders { edges { node { id } } } }`, nil)["myOrders"])
	if !strings.Contains(listed, orderID) {
		t.Errorf("ann's orders listed by east: %s, want her west order %s", listed, orderID)
	}
	east0 := fmt.Sprint(gql(t, east, admin, `{ product(sku: "MUG") { available } }`, nil)["product"])
	if east0 == "map[available:30]" {
		t.Errorf("east still has all 30 of MUG after west sold one: %s", east0)
	}
}
