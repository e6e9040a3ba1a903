package graph_test

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/checkout-backend/checkout/internal/catalog"
	"github.com/checkout-backend/checkout/internal/testutil"
)

type cartResp struct {
	Cart *struct {
		ID         string `json:"id"`
		TotalCents int64  `json:"totalCents"`
		Items      []struct {
			SKU      string `json:"sku"`
			Quantity int    `json:"quantity"`
		} `json:"items"`
	} `json:"cart"`
	UserErrors []struct {
		Code string `json:"code"`
	} `json:"userErrors"`
}

func decode(t testing.TB, resp *testutil.Response, v any) {
	t.Helper()
	if len(resp.Errors) > 0 {
		t.Fatalf("graphql errors: %+v", resp.Errors)
	}
	if err := json.Unmarshal(resp.Data, v); err != nil {
		t.Fatal(err)
	}
}

func createCart(t testing.TB, api *testutil.API, tok string) string {
	var r struct {
		CreateCart struct {
			ID string `json:"id"`
		} `json:"createCart"`
	}
	decode(t, api.Do(t, tok, `mutation { createCart { id } }`, nil), &r)
	return r.CreateCart.ID
}

func TestCart_AddUpdateRemoveCheckout(t *testing.T) {
	t.Parallel()
	db := testutil.NewDB(t)
	api := testutil.NewAPI(t, db)
	api.Product(t, "TEE", 1500, map[string]int{"w": 10})
	api.Product(t, "MUG", 800, map[string]int{"w": 10})
	tok := testutil.Token(t, "alice")
	id := createCart(t, api, tok)

	const add = `mutation($c: ID!, $s: ID!, $q: Int!) { addCartItem(cartId: $c, sku: $s, quantity: $q) { cart { id totalCents items { sku quantity } } userErrors { code } } }`
	var r struct {
		AddCartItem cartResp `json:"addCartItem"`
	}
	decode(t, api.Do(t, tok, add, map[string]any{"c": id, "s": "TEE", "q": 2}), &r)
	decode(t, api.Do(t, tok, add, map[string]any{"c": id, "s": "TEE", "q": 1}), &r)
	decode(t, api.Do(t, tok, add, map[string]any{"c": id, "s": "MUG", "q": 1}), &r)
	if c := r.AddCartItem.Cart; c == nil || c.TotalCents != 3*1500+800 || len(c.Items) != 2 {
		t.Fatalf("cart after adds: %+v", r.AddCartItem)
	}
	var u struct {
		UpdateCartItem cartResp `json:"updateCartItem"`
	}
	decode(t, api.Do(t, tok, `mutation($c: ID!) { updateCartItem(cartId: $c, sku: "TEE", quantity: 5) { cart { totalCents items { sku quantity } } userErrors { code } } }`, map[string]any{"c": id}), &u)
	if u.UpdateCartItem.Cart.TotalCents != 5*1500+800 {
		t.Fatalf("after update: %+v", u.UpdateCartItem.Cart)
	}
	var rm struct {
		RemoveCartItem cartResp `json:"removeCartItem"`
	}
	decode(t, api.Do(t, tok, `mutation($c: ID!) { removeCartItem(cartId: $c, sku: "MUG") { cart { totalCents items { sku quantity } } userErrors { code } } }`, map[string]any{"c": id}), &rm)
	if len(rm.RemoveCartItem.Cart.Items) != 1 {
		t.Fatalf("after remove: %+v", rm.RemoveCartItem.Cart)
	}
	co, _ := doCheckout(t, api, tok, map[string]any{"idempotencyKey": "cart-1", "paymentToken": "tok_visa", "cartId": id})
	if co.Checkout.Order == nil || co.Checkout.Order.TotalCents != 7500 {
		t.Fatalf("checkout by cart: %+v", co.Checkout)
	}
	// Replaying the same checkout returns the same order; a new key finds the cart closed.
	again, _ := doCheckout(t, api, tok, map[string]any{"idempotencyKey": "cart-1", "paymentToken": "tok_visa", "cartId": id})
	if again.Checkout.Order == nil || again.Checkout.Order.ID != co.Checkout.Order.ID {
		t.Fatalf("replay: %+v", again.Checkout)
	}
	closed, _ := doCheckout(t, api, tok, map[string]any{"idempotencyKey": "cart-2", "paymentToken": "tok_visa", "cartId": id})
	if closed.Checkout.Order != nil || closed.Checkout.UserErrors[0].Code != "CART_NOT_FOUND" {
		t.Fatalf("second checkout of a closed cart: %+v", closed.Checkout)
	}
	decode(t, api.Do(t, tok, add, map[string]any{"c": id, "s": "TEE", "q": 1}), &r)
	if r.AddCartItem.Cart != nil || r.AddCartItem.UserErrors[0].Code != "CART_NOT_FOUND" {
		t.Fatalf("adding to a checked-out cart: %+v", r.AddCartItem)
	}
	if _, reserved := api.Stock(t, "TEE"); reserved != 5 {
		t.Fatalf("TEE reserved %d, want 5", reserved)
	}
}

func TestAuthorization(t *testing.T) {
	t.Parallel()
	db := testutil.NewDB(t)
	api := testutil.NewAPI(t, db)
	api.Product(t, "P", 100, map[string]int{"w": 10})
	alice, bob := testutil.Token(t, "alice"), testutil.Token(t, "bob")
	partner, admin := testutil.Token(t, "erp", "partner"), testutil.Token(t, "ops", "admin")
	cartID := createCart(t, api, alice)
	api.Do(t, alice, `mutation($c: ID!) { addCartItem(cartId: $c, sku: "P", quantity: 1) { userErrors { code } } }`, map[string]any{"c": cartID})
	co, _ := doCheckout(t, api, alice, map[string]any{"idempotencyKey": "a1", "paymentToken": "tok_visa", "items": items("P", 1)})
	orderID := co.Checkout.Order.ID

	t.Run("OtherCustomerCannotReadCart", func(t *testing.T) {
		var r struct {
			Cart *struct{ ID string } `json:"cart"`
		}
		decode(t, api.Do(t, bob, `query($id: ID!) { cart(id: $id) { id } }`, map[string]any{"id": cartID}), &r)
		if r.Cart != nil {
			t.Fatal("bob read alice's cart")
		}
	})
	t.Run("OtherCustomerCannotChangeCart", func(t *testing.T) {
		var r struct {
			AddCartItem cartResp `json:"addCartItem"`
		}
		decode(t, api.Do(t, bob, `mutation($c: ID!) { addCartItem(cartId: $c, sku: "P", quantity: 1) { cart { id } userErrors { code } } }`, map[string]any{"c": cartID}), &r)
		if r.AddCartItem.Cart != nil || r.AddCartItem.UserErrors[0].Code != "CART_NOT_FOUND" {
			t.Fatalf("got %+v", r.AddCartItem)
		}
	})
	t.Run("OtherCustomerCannotCheckOutCart", func(t *testing.T) {
		r, _ := doCheckout(t, api, bob, map[string]any{"idempotencyKey": "b1", "paymentToken": "tok_visa", "cartId": cartID})
		if r.Checkout.Order != nil || r.Checkout.UserErrors[0].Code != "CART_NOT_FOUND" {
			t.Fatalf("got %+v", r.Checkout)
		}
	})
	t.Run("OtherCustomerReadsOrderAsNotFound", func(t *testing.T) {
		var r struct {
			Order *struct{ ID string } `json:"order"`
		}
		decode(t, api.Do(t, bob, `query($id: ID!) { order(id: $id) { id } }`, map[string]any{"id": orderID}), &r)
		if r.Order != nil {
			t.Fatal("bob read alice's order")
		}
		var c struct {
			CancelOrder struct {
				Order      *struct{ ID string } `json:"order"`
				UserErrors []struct{ Code string }
			} `json:"cancelOrder"`
		}
		decode(t, api.Do(t, bob, `mutation($id: ID!) { cancelOrder(id: $id) { order { id } userErrors { code } } }`, map[string]any{"id": orderID}), &c)
		if c.CancelOrder.Order != nil || c.CancelOrder.UserErrors[0].Code != "NOT_FOUND" {
			t.Fatalf("bob cancelled alice's order: %+v", c)
		}
	})
	t.Run("PartnerAndAdminReadAnyOrder", func(t *testing.T) {
		for _, tok := range []string{partner, admin} {
			var r struct {
				Order *struct{ ID string } `json:"order"`
			}
			decode(t, api.Do(t, tok, `query($id: ID!) { order(id: $id) { id } }`, map[string]any{"id": orderID}), &r)
			if r.Order == nil {
				t.Fatal("privileged reader could not read the order")
			}
		}
	})
	t.Run("AdminOnlyOperationsRefuseCustomers", func(t *testing.T) {
		for _, q := range []string{
			`mutation { upsertProduct(input: {sku: "X", name: "x", priceCents: 1, currency: "USD"}) { sku } }`,
			`mutation { setStock(sku: "P", warehouse: "w", onHand: 999) { onHand } }`,
			`query { inventory(sku: "P") { onHand } }`,
			fmt.Sprintf(`mutation { shipOrder(id: %q, trackingNumber: "T1") { order { id } } }`, orderID),
		} {
			if code := api.Do(t, alice, q, nil).ErrorCode(); code != "FORBIDDEN" {
				t.Errorf("%s: code %q, want FORBIDDEN", q, code)
			}
			if code := api.Do(t, partner, q, nil).ErrorCode(); code != "FORBIDDEN" {
				t.Errorf("partner %s: code %q, want FORBIDDEN", q, code)
			}
		}
		if onHand, _ := api.Stock(t, "P"); onHand != 10 {
			t.Fatalf("stock changed by a customer: %d", onHand)
		}
	})
	t.Run("MissingOrBadTokenIsUnauthenticated", func(t *testing.T) {
		for _, tok := range []string{"", "not-a-jwt", testutil.Token(t, "x")[:40] + "tampered"} {
			if code := api.Do(t, tok, `query { myOrders { edges { node { id } } } }`, nil).ErrorCode(); code != "UNAUTHENTICATED" {
				t.Errorf("token %q: code %q", tok, code)
			}
		}
		// Products are public, even without a token.
		resp := api.Do(t, "", `query { product(sku: "P") { sku available } }`, nil)
		if len(resp.Errors) > 0 || string(resp.Data) != `{"product":{"sku":"P","available":9}}` {
			t.Fatalf("public product: %s %+v", resp.Data, resp.Errors)
		}
	})
}

func TestCheckout_BadInput_ClearErrorNothingWritten(t *testing.T) {
	t.Parallel()
	db := testutil.NewDB(t)
	api := testutil.NewAPI(t, db)
	api.Product(t, "OK", 100, map[string]int{"w": 10})
	if _, err := api.Catalog.UpsertProduct(t.Context(), catalog.Product{SKU: "EUR1", Name: "Euro item", PriceCents: 100, Currency: "EUR"}); err != nil {
		t.Fatal(err)
	}
	if _, err := api.Catalog.SetStock(t.Context(), "EUR1", "w", 10); err != nil {
		t.Fatal(err)
	}
	alice := testutil.Token(t, "alice")
	emptyCart := createCart(t, api, alice)
	bobCart := createCart(t, api, testutil.Token(t, "bob"))
	api.Do(t, testutil.Token(t, "bob"), `mutation($c: ID!) { addCartItem(cartId: $c, sku: "OK", quantity: 1) { userErrors { code } } }`, map[string]any{"c": bobCart})

	cases := []struct {
		name  string
		input map[string]any
		code  string
	}{
		{"UnknownSKU", map[string]any{"items": items("NOPE", 1)}, "UNKNOWN_SKU"},
		{"QuantityZero", map[string]any{"items": items("OK", 0)}, "INVALID_QUANTITY"},
		{"QuantityNegative", map[string]any{"items": items("OK", -3)}, "INVALID_QUANTITY"},
		{"QuantityAbsurd", map[string]any{"items": items("OK", 2147483647)}, "INVALID_QUANTITY"},
		{"OutOfStock", map[string]any{"items": items("OK", 11)}, "OUT_OF_STOCK"},
		{"EmptyItems", map[string]any{"items": []any{}}, "CART_EMPTY"},
		{"EmptyCart", map[string]any{"cartId": emptyCart}, "CART_EMPTY"},
		{"CartOfAnotherCustomer", map[string]any{"cartId": bobCart}, "CART_NOT_FOUND"},
		{"CartNotAUUID", map[string]any{"cartId": "../etc"}, "CART_NOT_FOUND"},
		{"BothCartAndItems", map[string]any{"cartId": bobCart, "items": items("OK", 1)}, "INVALID_INPUT"},
		{"NeitherCartNorItems", map[string]any{}, "INVALID_INPUT"},
		{"CardNumberToken", map[string]any{"items": items("OK", 1), "paymentToken": "4242424242424242"}, "INVALID_PAYMENT_TOKEN"},
		{"CardNumberWithSpaces", map[string]any{"items": items("OK", 1), "paymentToken": "4242 4242 4242 4242"}, "INVALID_PAYMENT_TOKEN"},
		{"EmptyToken", map[string]any{"items": items("OK", 1), "paymentToken": ""}, "INVALID_PAYMENT_TOKEN"},
		{"EmptyIdempotencyKey", map[string]any{"items": items("OK", 1), "idempotencyKey": ""}, "INVALID_INPUT"},
		{"MixedCurrencies", map[string]any{"items": items("OK", 1, "EUR1", 1)}, "INVALID_INPUT"},
		{"LineOkThenUnknown", map[string]any{"items": items("OK", 1, "NOPE", 1)}, "UNKNOWN_SKU"},
	}
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			in := map[string]any{"idempotencyKey": fmt.Sprint("bad-", i), "paymentToken": "tok_visa"}
			for k, v := range c.input {
				in[k] = v
			}
			r, resp := doCheckout(t, api, alice, in)
			if len(resp.Errors) > 0 || resp.Status != 200 {
				t.Fatalf("status %d errors %+v", resp.Status, resp.Errors)
			}
			if r.Checkout.Order != nil || len(r.Checkout.UserErrors) != 1 || r.Checkout.UserErrors[0].Code != c.code {
				t.Fatalf("want %s, got %+v", c.code, r.Checkout)
			}
			if tok, _ := in["paymentToken"].(string); tok != "" && tok != "tok_visa" {
				b, _ := json.Marshal(r)
				if strings.Contains(string(b), tok) {
					t.Fatal("the card-like token was echoed back")
				}
			}
		})
	}
	// The carts the cases use were made on purpose: their cart.created events are not bad input's.
	if n := api.Count(t, "SELECT (SELECT count(*) FROM orders) + (SELECT count(*) FROM outbox WHERE type <> 'cart.created') + (SELECT count(*) FROM reservations) + (SELECT count(*) FROM idempotency_keys)"); n != 0 {
		t.Fatalf("bad input wrote %d rows", n)
	}
	if _, reserved := api.Stock(t, "OK"); reserved != 0 {
		t.Fatalf("reserved %d after bad input", reserved)
	}
	// A quantity beyond 32 bits is a clear answer too, never a 5xx.
	r, resp := doCheckout(t, api, alice, map[string]any{"idempotencyKey": "x", "paymentToken": "tok_visa", "items": items("OK", 1<<40)})
	if resp.Status >= 500 || (len(resp.Errors) == 0 && (len(r.Checkout.UserErrors) == 0 || r.Checkout.UserErrors[0].Code != "INVALID_QUANTITY")) {
		t.Fatalf("2^40 quantity: status %d errors %+v payload %+v", resp.Status, resp.Errors, r.Checkout)
	}
}
