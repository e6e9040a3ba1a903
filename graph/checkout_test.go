package graph_test

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"

	"github.com/checkout-backend/checkout/internal/testutil"
)

const checkoutMutation = `mutation($input: CheckoutInput!) { checkout(input: $input) {
	order { id status totalCents currency reservationExpiresAt items { sku quantity unitPriceCents } }
	userErrors { code field message } } }`

type checkoutResult struct {
	Checkout struct {
		Order *struct {
			ID         string `json:"id"`
			Status     string `json:"status"`
			TotalCents int64  `json:"totalCents"`
			Items      []struct {
				SKU      string `json:"sku"`
				Quantity int    `json:"quantity"`
			} `json:"items"`
			ReservationExpiresAt *string `json:"reservationExpiresAt"`
		} `json:"order"`
		UserErrors []struct {
			Code    string   `json:"code"`
			Field   []string `json:"field"`
			Message string   `json:"message"`
		} `json:"userErrors"`
	} `json:"checkout"`
}

func doCheckout(t testing.TB, api *testutil.API, token string, input map[string]any) (checkoutResult, *testutil.Response) {
	t.Helper()
	r, resp, err := tryCheckout(api, token, input)
	if err != nil {
		t.Fatal(err)
	}
	return r, resp
}

// tryCheckout is doCheckout for goroutines other than the test's: it returns the error.
func tryCheckout(api *testutil.API, token string, input map[string]any) (checkoutResult, *testutil.Response, error) {
	var r checkoutResult
	resp, err := api.Post(token, checkoutMutation, map[string]any{"input": input})
	if err != nil {
		return r, nil, err
	}
	if resp.Data != nil && string(resp.Data) != "null" {
		if err := json.Unmarshal(resp.Data, &r); err != nil {
			return r, resp, fmt.Errorf("decode: %v", err)
		}
	}
	return r, resp, nil
}

func items(pairs ...any) []map[string]any {
	var out []map[string]any
	for i := 0; i < len(pairs); i += 2 {
		out = append(out, map[string]any{"sku": pairs[i], "quantity": pairs[i+1]})
	}
	return out
}

func TestCheckout_FlashSale_NeverOversells(t *testing.T) {
	t.Parallel()
	db := testutil.NewDB(t)
	api := testutil.NewAPI(t, db)
	api.Product(t, "HOT", 1000, map[string]int{"main": 50})

	const buyers = 300
	var mu sync.Mutex
	placed, outOfStock := 0, 0
	var other []string
	var wg sync.WaitGroup
	tokens := make([]string, buyers)
	for i := range tokens {
		tokens[i] = testutil.Token(t, fmt.Sprintf("buyer-%d", i))
	}
	for i := 0; i < buyers; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			r, resp, err := tryCheckout(api, tokens[i], map[string]any{"idempotencyKey": "k", "paymentToken": "tok_visa", "items": items("HOT", 1)})
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err != nil:
				other = append(other, err.Error())
			case len(resp.Errors) > 0:
				other = append(other, resp.Errors[0].Message)
			case r.Checkout.Order != nil:
				placed++
			case len(r.Checkout.UserErrors) == 1 && r.Checkout.UserErrors[0].Code == "OUT_OF_STOCK":
				outOfStock++
			default:
				other = append(other, fmt.Sprint(r.Checkout.UserErrors))
			}
		}(i)
	}
	wg.Wait()
	if len(other) > 0 {
		t.Fatalf("unexpected errors (%d): %v", len(other), other[0])
	}
	if placed != 50 || outOfStock != 250 {
		t.Fatalf("placed %d, out of stock %d; want 50 and 250", placed, outOfStock)
	}
	onHand, reserved := api.Stock(t, "HOT")
	if onHand != 50 || reserved != 50 {
		t.Fatalf("on hand %d reserved %d, want 50/50", onHand, reserved)
	}
	if n := api.Count(t, "SELECT count(*) FROM orders"); n != 50 {
		t.Fatalf("%d orders in the database, want 50", n)
	}
	if n := api.Count(t, "SELECT count(*) FROM outbox WHERE type = 'order.placed'"); n != 50 {
		t.Fatalf("%d order.placed events, want 50", n)
	}
}

func TestCheckout_MultiItem_NoDeadlockNoPartialOrder(t *testing.T) {
	t.Parallel()
	db := testutil.NewDB(t)
	api := testutil.NewAPI(t, db)
	skus := []string{"A", "B", "C", "D", "E", "F"}
	for _, s := range skus {
		api.Product(t, s, 100, map[string]int{"w1": 15, "w2": 10})
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var failures []string
	placed := 0
	tokens := make([]string, 80)
	for i := range tokens {
		tokens[i] = testutil.Token(t, fmt.Sprintf("c%d", i))
	}
	for i := 0; i < 80; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(i), 7))
			perm := rng.Perm(len(skus))[:3+rng.IntN(3)]
			var lines []map[string]any
			for _, p := range perm {
				lines = append(lines, map[string]any{"sku": skus[p], "quantity": 1 + rng.IntN(4)})
			}
			r, resp, err := tryCheckout(api, tokens[i], map[string]any{"idempotencyKey": fmt.Sprint(i), "paymentToken": "pm_card_visa", "items": lines})
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err != nil:
				failures = append(failures, err.Error())
			case len(resp.Errors) > 0:
				failures = append(failures, resp.Errors[0].Message)
			case r.Checkout.Order != nil:
				placed++
				if len(r.Checkout.Order.Items) != len(lines) {
					failures = append(failures, "order with missing lines")
				}
			case len(r.Checkout.UserErrors) == 0 || r.Checkout.UserErrors[0].Code != "OUT_OF_STOCK":
				failures = append(failures, fmt.Sprint(r.Checkout.UserErrors))
			}
		}(i)
	}
	wg.Wait()
	if len(failures) > 0 {
		t.Fatalf("failures: %v", failures)
	}
	if placed == 0 {
		t.Fatal("no order placed")
	}
	// Every SKU's reserved units equal the units its orders hold: no partial order.
	for _, s := range skus {
		_, reserved := api.Stock(t, s)
		ordered := api.Count(t, "SELECT COALESCE(sum(quantity),0)::int FROM order_items WHERE sku = ?", s)
		held := api.Count(t, "SELECT COALESCE(sum(quantity),0)::int FROM reservations WHERE sku = ? AND status = 'HELD'", s)
		if reserved != ordered || held != ordered {
			t.Errorf("sku %s: reserved %d, held %d, ordered %d", s, reserved, held, ordered)
		}
	}
	if n := api.Count(t, `SELECT count(*) FROM order_items oi WHERE quantity <> (SELECT COALESCE(sum(quantity),0) FROM reservations r WHERE r.order_id = oi.order_id AND r.sku = oi.sku)`); n != 0 {
		t.Fatalf("%d order lines whose reservations do not match", n)
	}
	if n := api.Count(t, "SELECT count(*) FROM orders"); n != placed {
		t.Fatalf("%d orders stored, %d placed", n, placed)
	}
}

func TestCheckout_MultiWarehouse_OneLineFromTwo(t *testing.T) {
	t.Parallel()
	db := testutil.NewDB(t)
	api := testutil.NewAPI(t, db)
	api.Product(t, "SPLIT", 500, map[string]int{"ams": 3, "nyc": 4})
	r, resp := doCheckout(t, api, testutil.Token(t, "c1"), map[string]any{"idempotencyKey": "k", "paymentToken": "tok_visa", "items": items("SPLIT", 6)})
	if r.Checkout.Order == nil {
		t.Fatalf("no order: %+v %+v", r.Checkout.UserErrors, resp.Errors)
	}
	if r.Checkout.Order.TotalCents != 3000 {
		t.Fatalf("total %d, want 3000", r.Checkout.Order.TotalCents)
	}
	if n := api.Count(t, "SELECT count(*) FROM reservations WHERE order_id = ?", r.Checkout.Order.ID); n != 2 {
		t.Fatalf("%d reservation rows, want 2 (one per warehouse)", n)
	}
	if n := api.Count(t, "SELECT reserved FROM inventory WHERE sku = 'SPLIT' AND warehouse = 'nyc'"); n != 4 {
		t.Fatalf("nyc reserved %d, want 4 (the fuller warehouse first)", n)
	}
	if n := api.Count(t, "SELECT reserved FROM inventory WHERE sku = 'SPLIT' AND warehouse = 'ams'"); n != 2 {
		t.Fatalf("ams reserved %d, want 2", n)
	}
	// The last unit of both warehouses together is gone: one more than left is refused.
	r, _ = doCheckout(t, api, testutil.Token(t, "c2"), map[string]any{"idempotencyKey": "k", "paymentToken": "tok_visa", "items": items("SPLIT", 2)})
	if r.Checkout.Order != nil || r.Checkout.UserErrors[0].Code != "OUT_OF_STOCK" {
		t.Fatalf("want OUT_OF_STOCK, got %+v", r.Checkout)
	}
	want := []string{"input", "items", "0", "quantity"}
	if fmt.Sprint(r.Checkout.UserErrors[0].Field) != fmt.Sprint(want) {
		t.Fatalf("OUT_OF_STOCK field %v, want %v", r.Checkout.UserErrors[0].Field, want)
	}
}

func TestCheckout_Idempotency(t *testing.T) {
	t.Parallel()
	db := testutil.NewDB(t)
	api := testutil.NewAPI(t, db)
	api.Product(t, "IDEM", 250, map[string]int{"main": 100})
	tok := testutil.Token(t, "alice")
	input := map[string]any{"idempotencyKey": "double-click", "paymentToken": "tok_visa", "items": items("IDEM", 3)}

	t.Run("TenConcurrentIdenticalCalls_OneOrder", func(t *testing.T) {
		ids := make([]string, 10)
		var wg sync.WaitGroup
		for i := range ids {
			wg.Add(1)
			go func(i int) {
				defer wg.Done()
				r, resp, err := tryCheckout(api, tok, input)
				if err != nil {
					t.Errorf("call %d: %v", i, err)
					return
				}
				if r.Checkout.Order == nil {
					t.Errorf("call %d: no order: %+v %+v", i, r.Checkout.UserErrors, resp.Errors)
					return
				}
				ids[i] = r.Checkout.Order.ID
			}(i)
		}
		wg.Wait()
		for _, id := range ids {
			if id != ids[0] {
				t.Fatalf("different orders for one key: %v", ids)
			}
		}
		if n := api.Count(t, "SELECT count(*) FROM orders"); n != 1 {
			t.Fatalf("%d orders, want 1", n)
		}
		if _, reserved := api.Stock(t, "IDEM"); reserved != 3 {
			t.Fatalf("reserved %d, want 3 (one reservation)", reserved)
		}
		if n := api.Count(t, "SELECT count(*) FROM outbox"); n != 1 {
			t.Fatalf("%d events, want 1", n)
		}
	})
	t.Run("SameKeyOtherInput_Refused", func(t *testing.T) {
		other := map[string]any{"idempotencyKey": "double-click", "paymentToken": "tok_visa", "items": items("IDEM", 4)}
		r, _ := doCheckout(t, api, tok, other)
		if r.Checkout.Order != nil || len(r.Checkout.UserErrors) != 1 || r.Checkout.UserErrors[0].Code != "IDEMPOTENCY_KEY_REUSED" {
			t.Fatalf("want IDEMPOTENCY_KEY_REUSED, got %+v", r.Checkout)
		}
		if _, reserved := api.Stock(t, "IDEM"); reserved != 3 {
			t.Fatalf("reserved %d after a refused reuse, want 3", reserved)
		}
	})
	t.Run("SameKeyTwoCustomers_TwoOrders", func(t *testing.T) {
		r, _ := doCheckout(t, api, testutil.Token(t, "bob"), input)
		if r.Checkout.Order == nil {
			t.Fatalf("bob got no order: %+v", r.Checkout.UserErrors)
		}
		if n := api.Count(t, "SELECT count(*) FROM orders"); n != 2 {
			t.Fatalf("%d orders, want 2", n)
		}
	})
}
