package graph_test

import (
	"fmt"
	"testing"

	"github.com/checkout-backend/checkout/internal/testutil"
)

type orderPayload struct {
	Order *struct {
		ID             string  `json:"id"`
		Status         string  `json:"status"`
		TrackingNumber *string `json:"trackingNumber"`
	} `json:"order"`
	UserErrors []struct {
		Code string `json:"code"`
	} `json:"userErrors"`
}

func TestCancelOrder_PendingReleasesStock(t *testing.T) {
	t.Parallel()
	db := testutil.NewDB(t)
	api := testutil.NewAPI(t, db)
	api.Product(t, "C", 100, map[string]int{"w": 5})
	alice := testutil.Token(t, "alice")
	co, _ := doCheckout(t, api, alice, map[string]any{"idempotencyKey": "1", "paymentToken": "tok_visa", "items": items("C", 4)})
	id := co.Checkout.Order.ID

	var r struct {
		CancelOrder orderPayload `json:"cancelOrder"`
	}
	decode(t, api.Do(t, alice, `mutation($id: ID!) { cancelOrder(id: $id) { order { id status } userErrors { code } } }`, map[string]any{"id": id}), &r)
	if r.CancelOrder.Order == nil || r.CancelOrder.Order.Status != "CANCELLED" {
		t.Fatalf("cancel: %+v", r.CancelOrder)
	}
	if onHand, reserved := api.Stock(t, "C"); onHand != 5 || reserved != 0 {
		t.Fatalf("after cancel on hand %d reserved %d, want 5/0", onHand, reserved)
	}
	if n := api.Count(t, "SELECT count(*) FROM outbox WHERE type = 'order.cancelled' AND (payload->'order'->>'sequence')::int = 2"); n != 1 {
		t.Fatalf("order.cancelled events with sequence 2: %d", n)
	}
	// A final order moves no more.
	decode(t, api.Do(t, alice, `mutation($id: ID!) { cancelOrder(id: $id) { order { id } userErrors { code } } }`, map[string]any{"id": id}), &r)
	if r.CancelOrder.Order != nil || r.CancelOrder.UserErrors[0].Code != "ORDER_NOT_CANCELLABLE" {
		t.Fatalf("second cancel: %+v", r.CancelOrder)
	}
	var s struct {
		ShipOrder orderPayload `json:"shipOrder"`
	}
	decode(t, api.Do(t, testutil.Token(t, "ops", "admin"), `mutation($id: ID!) { shipOrder(id: $id, trackingNumber: "TRK1") { order { id } userErrors { code } } }`, map[string]any{"id": id}), &s)
	if s.ShipOrder.Order != nil || s.ShipOrder.UserErrors[0].Code != "INVALID_TRANSITION" {
		t.Fatalf("ship a cancelled order: %+v", s.ShipOrder)
	}
	if onHand, reserved := api.Stock(t, "C"); onHand != 5 || reserved != 0 {
		t.Fatalf("refused transitions moved stock: %d/%d", onHand, reserved)
	}
}

func TestShipOrder_PendingIsInvalidTransition(t *testing.T) {
	t.Parallel()
	db := testutil.NewDB(t)
	api := testutil.NewAPI(t, db)
	api.Product(t, "S", 100, map[string]int{"w": 5})
	co, _ := doCheckout(t, api, testutil.Token(t, "alice"), map[string]any{"idempotencyKey": "1", "paymentToken": "tok_visa", "items": items("S", 1)})
	var s struct {
		ShipOrder orderPayload `json:"shipOrder"`
	}
	decode(t, api.Do(t, testutil.Token(t, "ops", "admin"), `mutation($id: ID!) { shipOrder(id: $id, trackingNumber: "TRK1") { order { id } userErrors { code } } }`, map[string]any{"id": co.Checkout.Order.ID}), &s)
	if s.ShipOrder.Order != nil || s.ShipOrder.UserErrors[0].Code != "INVALID_TRANSITION" {
		t.Fatalf("ship unpaid order: %+v", s.ShipOrder)
	}
	decode(t, api.Do(t, testutil.Token(t, "ops", "admin"), `mutation { shipOrder(id: "not-an-id", trackingNumber: "TRK1") { order { id } userErrors { code } } }`, nil), &s)
	if s.ShipOrder.UserErrors[0].Code != "NOT_FOUND" {
		t.Fatalf("ship unknown order: %+v", s.ShipOrder)
	}
}

func TestMyOrders_RelayPagination(t *testing.T) {
	t.Parallel()
	db := testutil.NewDB(t)
	api := testutil.NewAPI(t, db)
	api.Product(t, "PG", 100, map[string]int{"w": 100})
	alice := testutil.Token(t, "alice")
	placed := map[string]bool{}
	for i := 0; i < 7; i++ {
		co, _ := doCheckout(t, api, alice, map[string]any{"idempotencyKey": fmt.Sprint(i), "paymentToken": "tok_visa", "items": items("PG", 1)})
		placed[co.Checkout.Order.ID] = true
	}
	doCheckout(t, api, testutil.Token(t, "bob"), map[string]any{"idempotencyKey": "b", "paymentToken": "tok_visa", "items": items("PG", 1)})

	seen := map[string]bool{}
	var after any
	pages := 0
	for {
		var r struct {
			MyOrders struct {
				Edges []struct {
					Cursor string `json:"cursor"`
					Node   struct {
						ID    string `json:"id"`
						Items []struct {
							Product struct{ SKU string } `json:"product"`
						} `json:"items"`
					} `json:"node"`
				} `json:"edges"`
				PageInfo struct {
					HasNextPage bool   `json:"hasNextPage"`
					EndCursor   string `json:"endCursor"`
				} `json:"pageInfo"`
			} `json:"myOrders"`
		}
		decode(t, api.Do(t, alice, `query($after: String) { myOrders(first: 3, after: $after) { edges { cursor node { id items { product { sku } } } } pageInfo { hasNextPage endCursor } } }`, map[string]any{"after": after}), &r)
		pages++
		for _, e := range r.MyOrders.Edges {
			if seen[e.Node.ID] || !placed[e.Node.ID] {
				t.Fatalf("order %s repeated or not alice's", e.Node.ID)
			}
			seen[e.Node.ID] = true
		}
		if !r.MyOrders.PageInfo.HasNextPage {
			break
		}
		after = r.MyOrders.PageInfo.EndCursor
	}
	if len(seen) != 7 || pages != 3 {
		t.Fatalf("saw %d orders in %d pages, want 7 in 3", len(seen), pages)
	}
	for _, bad := range []string{"garbage", "bz18"} {
		if code := api.Do(t, alice, `query($a: String) { myOrders(after: $a) { edges { cursor } } }`, map[string]any{"a": bad}).ErrorCode(); code != "BAD_USER_INPUT" {
			t.Errorf("cursor %q: code %q", bad, code)
		}
	}
	if code := api.Do(t, alice, `query { myOrders(first: 1000) { edges { cursor } } }`, nil).ErrorCode(); code != "BAD_USER_INPUT" {
		t.Errorf("first 1000: code %q", code)
	}
}
