package graph_test

import (
	"slices"
	"testing"

	"github.com/checkout-backend/checkout/internal/checkout"
	"github.com/checkout-backend/checkout/internal/testutil"
)

const upsertLimited = `mutation($input: ProductInput!) { upsertProduct(input: $input) { sku maxPerCustomer available } }`

type upsertResult struct {
	UpsertProduct struct {
		SKU            string `json:"sku"`
		MaxPerCustomer *int   `json:"maxPerCustomer"`
		Available      int    `json:"available"`
	} `json:"upsertProduct"`
}

// TestM4_OneRequestAsksTheWholeLimitedStock_RefusedByThePerCustomerLimit is the
// reviewer's attack of M4: one checkout asked the demo's limited sneaker's 50 units and
// the next customer got OUT_OF_STOCK. With the admin's maxPerCustomer the request is
// refused on its line (PURCHASE_LIMIT_EXCEEDED), nothing is held, and the next customer
// buys; the limit reads back on Product, an update that omits it keeps it, null clears it.
func TestM4_OneRequestAsksTheWholeLimitedStock_RefusedByThePerCustomerLimit(t *testing.T) {
	t.Parallel()
	api := testutil.NewAPI(t, testutil.NewDB(t))
	admin := testutil.Token(t, "admin", "admin")
	input := map[string]any{"sku": "SNEAKER-LTD-42", "name": "Limited sneaker", "priceCents": 15000, "currency": "USD", "maxPerCustomer": 2}
	var up upsertResult
	decode(t, api.Do(t, admin, upsertLimited, map[string]any{"input": input}), &up)
	if up.UpsertProduct.MaxPerCustomer == nil || *up.UpsertProduct.MaxPerCustomer != 2 {
		t.Fatalf("maxPerCustomer read back %v, want 2", up.UpsertProduct.MaxPerCustomer)
	}
	api.Product(t, "OTHER", 100, nil) // a product without a limit, for contrast
	if _, err := api.Catalog.SetStock(t.Context(), "SNEAKER-LTD-42", "ams", 50); err != nil {
		t.Fatal(err)
	}

	attacker, next := testutil.Token(t, "attacker"), testutil.Token(t, "next-customer")
	r, resp := doCheckout(t, api, attacker, map[string]any{"idempotencyKey": "all", "paymentToken": "tok_threeDSecure2Required",
		"items": items("SNEAKER-LTD-42", 50)})
	if len(resp.Errors) > 0 || r.Checkout.Order != nil || len(r.Checkout.UserErrors) != 1 {
		t.Fatalf("checkout of the whole stock: %+v %+v, want one userError", r.Checkout, resp.Errors)
	}
	ue := r.Checkout.UserErrors[0]
	if ue.Code != string(checkout.PurchaseLimitExceeded) || !slices.Equal(ue.Field, []string{"input", "items", "0", "quantity"}) {
		t.Fatalf("userError %+v, want PURCHASE_LIMIT_EXCEEDED on input.items.0.quantity", ue)
	}
	if _, reserved := api.Stock(t, "SNEAKER-LTD-42"); reserved != 0 {
		t.Fatalf("the refused request holds %d units", reserved)
	}
	r, _ = doCheckout(t, api, attacker, map[string]any{"idempotencyKey": "two", "paymentToken": "tok_visa", "items": items("SNEAKER-LTD-42", 2)})
	if r.Checkout.Order == nil {
		t.Fatalf("the attacker's 2: %+v", r.Checkout.UserErrors)
	}
	r, _ = doCheckout(t, api, next, map[string]any{"idempotencyKey": "mine", "paymentToken": "tok_visa", "items": items("SNEAKER-LTD-42", 1)})
	if r.Checkout.Order == nil {
		t.Fatalf("the next customer: %+v, want an order", r.Checkout.UserErrors)
	}

	// An update that does not mention the limit keeps it; null removes it.
	delete(input, "maxPerCustomer")
	input["priceCents"] = 14000
	decode(t, api.Do(t, admin, upsertLimited, map[string]any{"input": input}), &up)
	if up.UpsertProduct.MaxPerCustomer == nil || *up.UpsertProduct.MaxPerCustomer != 2 {
		t.Fatalf("a price update cleared the limit: %v", up.UpsertProduct.MaxPerCustomer)
	}
	input["maxPerCustomer"] = nil
	decode(t, api.Do(t, admin, upsertLimited, map[string]any{"input": input}), &up)
	if up.UpsertProduct.MaxPerCustomer != nil {
		t.Fatalf("null did not clear the limit: %v", *up.UpsertProduct.MaxPerCustomer)
	}
	// A limit below 1 is bad input.
	input["maxPerCustomer"] = 0
	if resp := api.Do(t, admin, upsertLimited, map[string]any{"input": input}); resp.ErrorCode() != "BAD_USER_INPUT" {
		t.Fatalf("maxPerCustomer 0: %+v, want BAD_USER_INPUT", resp.Errors)
	}
}

// TestM4_UnpaidOrdersCap_AnsweredAsAUserError: a customer at CHECKOUT_MAX_UNPAID_ORDERS
// is told so with the new code, on the input.
func TestM4_UnpaidOrdersCap_AnsweredAsAUserError(t *testing.T) {
	t.Parallel()
	api := testutil.NewAPI(t, testutil.NewDB(t))
	api.Service.Limits = checkout.PurchaseLimits{MaxUnpaidOrders: 2}
	api.Product(t, "P", 100, map[string]int{"w": 100})
	tok := testutil.Token(t, "holder")
	for _, key := range []string{"a", "b"} {
		if r, _ := doCheckout(t, api, tok, map[string]any{"idempotencyKey": key, "paymentToken": "tok_threeDSecure2Required", "items": items("P", 1)}); r.Checkout.Order == nil {
			t.Fatalf("order %s: %+v", key, r.Checkout.UserErrors)
		}
	}
	r, resp := doCheckout(t, api, tok, map[string]any{"idempotencyKey": "c", "paymentToken": "tok_visa", "items": items("P", 1)})
	if len(resp.Errors) > 0 || len(r.Checkout.UserErrors) != 1 || r.Checkout.UserErrors[0].Code != string(checkout.TooManyUnpaidOrders) ||
		!slices.Equal(r.Checkout.UserErrors[0].Field, []string{"input"}) {
		t.Fatalf("third unpaid order: %+v %+v, want TOO_MANY_UNPAID_ORDERS on input", r.Checkout, resp.Errors)
	}
}
