package graph_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/coder/websocket/wsjson"

	"github.com/checkout-backend/checkout/graph/gqlhttp"
	"github.com/checkout-backend/checkout/internal/catalog"
	"github.com/checkout-backend/checkout/internal/checkout"
	"github.com/checkout-backend/checkout/internal/platform/auth"
	"github.com/checkout-backend/checkout/internal/platform/httpx"
	"github.com/checkout-backend/checkout/internal/platform/overload"
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

// fakeFeed is a status feed the test publishes to.
type fakeFeed struct {
	mu   sync.Mutex
	subs []chan checkout.Order
}

func (f *fakeFeed) Subscribe(ctx context.Context, orderID string) (<-chan checkout.Order, func() error, error) {
	ch := make(chan checkout.Order, 16)
	f.mu.Lock()
	f.subs = append(f.subs, ch)
	f.mu.Unlock()
	return ch, func() error { return nil }, nil
}

func (f *fakeFeed) Publish(o checkout.Order) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, ch := range f.subs {
		select {
		case ch <- o:
		default:
		}
	}
}

// socketRig is an API served over real HTTP with one order of its customer.
type socketRig struct {
	api     *testutil.API
	url     string
	token   string
	orderID string
	feed    *fakeFeed
}

const socketCustomer = "sock-owner"

func newSocketRig(t *testing.T, opt testutil.APIOptions) *socketRig { return newSocketRigOn(t, opt, 0) }

// newSocketRigOn serves the API with the service's http.Server settings when
// writeTimeout is set.
func newSocketRigOn(t *testing.T, opt testutil.APIOptions, writeTimeout time.Duration) *socketRig {
	t.Helper()
	db := testutil.NewDB(t)
	setup := testutil.NewAPI(t, db) // fixtures, outside the options under test
	setup.Product(t, "SOCK", 900, map[string]int{"w": 10})
	tok := testutil.Token(t, socketCustomer)
	co, _ := doCheckout(t, setup, tok, map[string]any{"idempotencyKey": "sock-1", "paymentToken": "tok_visa", "items": items("SOCK", 1)})
	if co.Checkout.Order == nil {
		t.Fatalf("checkout: %+v", co.Checkout)
	}
	feed := &fakeFeed{}
	opt.Feed = feed
	api := testutil.NewAPI(t, db, opt)
	srv := httptest.NewUnstartedServer(api.Handler)
	if writeTimeout > 0 {
		srv.Config = httpx.NewServer("", api.Handler, writeTimeout)
	}
	srv.Start()
	t.Cleanup(srv.Close)
	return &socketRig{api: api, url: srv.URL + "/graphql", token: tok, orderID: co.Checkout.Order.ID, feed: feed}
}

func (r *socketRig) dial(ctx context.Context, t *testing.T, token string) *testutil.WSClient {
	t.Helper()
	c, code, err := testutil.DialWS(ctx, r.url, token)
	if err != nil {
		t.Fatalf("dial: close %d: %v", code, err)
	}
	t.Cleanup(c.Close)
	return c
}

// opResult is what one operation over a socket answered.
type opResult struct {
	data  []json.RawMessage // the data of each next message
	codes []string          // the error codes of next and error messages
}

// run sends operation id and reads its messages until it completes.
func run(ctx context.Context, t *testing.T, c *testutil.WSClient, id, query string, vars map[string]any) opResult {
	t.Helper()
	if err := c.Subscribe(ctx, id, query, vars); err != nil {
		t.Fatal(err)
	}
	return until(ctx, t, c, id, func(opResult) bool { return false })
}

// until reads the messages of operation id until it completes or done says so.
func until(ctx context.Context, t *testing.T, c *testutil.WSClient, id string, done func(opResult) bool) opResult {
	t.Helper()
	var r opResult
	for !done(r) {
		m, err := c.Next(ctx)
		if err != nil {
			t.Fatalf("operation %s: %v", id, err)
		}
		if m.ID != id {
			continue
		}
		switch m.Type {
		case "next":
			var p struct {
				Data   json.RawMessage `json:"data"`
				Errors []struct {
					Extensions map[string]any `json:"extensions"`
				} `json:"errors"`
			}
			json.Unmarshal(m.Payload, &p)
			if len(p.Data) > 0 && string(p.Data) != "null" {
				r.data = append(r.data, p.Data)
			}
			for _, e := range p.Errors {
				code, _ := e.Extensions["code"].(string)
				r.codes = append(r.codes, code)
			}
		case "error":
			var errs []struct {
				Extensions map[string]any `json:"extensions"`
			}
			json.Unmarshal(m.Payload, &errs)
			for _, e := range errs {
				code, _ := e.Extensions["code"].(string)
				r.codes = append(r.codes, code)
			}
			return r
		case "complete":
			return r
		}
	}
	return r
}

func firstUpdate(r opResult) bool { return len(r.data) > 0 }

// try starts a subscription and reads until its first update, or its end.
func try(ctx context.Context, t *testing.T, c *testutil.WSClient, id, query string, vars map[string]any) opResult {
	t.Helper()
	if err := c.Subscribe(ctx, id, query, vars); err != nil {
		t.Fatal(err)
	}
	return until(ctx, t, c, id, firstUpdate)
}

// Queries and mutations do not run over a socket, where no bulkhead sees them: 20
// createCart mutations over one socket must not create 20 carts. Every operation takes a
// token of the same bucket as the client's HTTP requests: with a burst of 22, the 20
// mutations, a query and a subscription take them all, and a second subscription is past
// the rate.
func TestSocket_OnlySubscriptions_MutationsCannotBypassTheRateLimit(t *testing.T) {
	t.Parallel()
	shed := overload.New(overload.Options{Rate: 0.001, Burst: 22, Reject: gqlhttp.Refuse})
	rig := newSocketRig(t, testutil.APIOptions{Overload: shed.Middleware, Sockets: gqlhttp.SocketOptions{Allow: shed.AllowKey}})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c := rig.dial(ctx, t, rig.token)
	ran := 0
	for i := range 20 {
		r := run(ctx, t, c, fmt.Sprint("m", i), `mutation { createCart { id } }`, nil)
		ran += len(r.data)
		if len(r.data) == 0 && (len(r.codes) != 1 || r.codes[0] != gqlhttp.CodeSubscriptionsOnly) {
			t.Fatalf("mutation %d: codes %v, want %s", i, r.codes, gqlhttp.CodeSubscriptionsOnly)
		}
	}
	if n := rig.api.Count(t, "SELECT count(*)::int FROM carts"); ran > 0 || n > 0 {
		t.Fatalf("%d of 20 mutations ran over the socket (%d carts)", ran, n)
	}
	if r := run(ctx, t, c, "q", `{ products { edges { cursor } } }`, nil); len(r.data) > 0 || r.codes[0] != gqlhttp.CodeSubscriptionsOnly {
		t.Fatalf("query over the socket: %+v", r)
	}
	if err := c.Subscribe(ctx, "s1", subscription, map[string]any{"id": rig.orderID}); err != nil {
		t.Fatal(err)
	}
	if r := until(ctx, t, c, "s1", firstUpdate); !strings.Contains(string(r.data[0]), "PENDING_PAYMENT") {
		t.Fatalf("subscription: %s", r.data[0])
	}
	if r := try(ctx, t, c, "s2", subscription, map[string]any{"id": rig.orderID}); len(r.data) > 0 || r.codes[0] != gqlhttp.CodeRateLimited {
		t.Fatalf("a second subscription past the rate: %+v", r)
	}
	if r := rig.api.Do(t, rig.token, `mutation { createCart { id } }`, nil); r.Status != http.StatusTooManyRequests {
		t.Fatalf("HTTP after the socket took the token: %d", r.Status)
	}
}

// A socket authenticates once, at connection_init: it closes when its token stops being
// valid (exp plus the verifier's leeway), with 4403, ending its subscriptions.
func TestSocket_ClosedWhenItsTokenExpires(t *testing.T) {
	t.Parallel()
	rig := newSocketRig(t, testutil.APIOptions{})
	// Expired 25 s ago: still accepted for the 5 s left of the 30 s leeway.
	tok, err := auth.Sign(testutil.Secret, socketCustomer, nil, -25*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	_, until, err := auth.NewVerifier(testutil.Secret).VerifyUntil(tok)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c := rig.dial(ctx, t, tok)
	if err := c.Subscribe(ctx, "s1", subscription, map[string]any{"id": rig.orderID}); err != nil {
		t.Fatal(err)
	}
	var closeErr error
	for closeErr == nil {
		_, closeErr = c.Next(ctx)
	}
	if code := websocket.CloseStatus(closeErr); code != gqlhttp.CloseForbidden {
		t.Fatalf("the socket ended with %v (close %d), want close %d", closeErr, code, gqlhttp.CloseForbidden)
	}
	if time.Now().Before(until) {
		t.Fatalf("closed before the token's end (%v)", until)
	}
	// The token no longer opens a socket.
	if _, code, err := testutil.DialWS(ctx, rig.url, tok); err == nil || code != gqlhttp.CloseForbidden {
		t.Fatalf("a new socket with the expired token: close %d, %v", code, err)
	}
}

// A socket that never sends connection_init is closed after the init timeout.
func TestSocket_UnauthenticatedSocketClosedAfterInitTimeout(t *testing.T) {
	t.Parallel()
	rig := newSocketRig(t, testutil.APIOptions{Sockets: gqlhttp.SocketOptions{InitTimeout: 300 * time.Millisecond}})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	conn, _, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(rig.url, "http"), &websocket.DialOptions{Subprotocols: []string{"graphql-transport-ws"}})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.CloseNow()
	_, _, err = conn.Read(ctx)
	if code := websocket.CloseStatus(err); code != websocket.StatusProtocolError {
		t.Fatalf("a silent socket: %v (close %d), want close %d", err, code, websocket.StatusProtocolError)
	}
}

// A client that stops answering the server's pings is disconnected.
func TestSocket_ClientThatStopsAnsweringPingsIsClosed(t *testing.T) {
	t.Parallel()
	rig := newSocketRig(t, testutil.APIOptions{Sockets: gqlhttp.SocketOptions{PingInterval: 200 * time.Millisecond}})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	conn, _, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(rig.url, "http"), &websocket.DialOptions{Subprotocols: []string{"graphql-transport-ws"}})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.CloseNow()
	if err := wsjson.Write(ctx, conn, map[string]any{"type": "connection_init", "payload": map[string]any{"Authorization": "Bearer " + rig.token}}); err != nil {
		t.Fatal(err)
	}
	pings := 0
	for {
		var m testutil.WSMessage
		if err := wsjson.Read(ctx, conn, &m); err != nil {
			if ctx.Err() != nil {
				t.Fatalf("still open after %d unanswered pings", pings)
			}
			break
		}
		if m.Type == "ping" {
			pings++
		}
	}
	if pings == 0 {
		t.Fatal("closed without a ping")
	}
}

// Sockets and subscriptions are capped per client, with a clear answer, and a closed
// socket or a completed subscription gives its place back. Until connection_init a socket
// counts against its address, then against the identity it authenticated.
func TestSocket_PerClientCaps(t *testing.T) {
	t.Parallel()
	rig := newSocketRig(t, testutil.APIOptions{Sockets: gqlhttp.SocketOptions{MaxPerClient: 2, MaxSubscriptionsPerClient: 2}})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	raw := func() (*websocket.Conn, int, string) {
		conn, resp, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(rig.url, "http"), &websocket.DialOptions{Subprotocols: []string{"graphql-transport-ws"}})
		if err == nil {
			return conn, http.StatusSwitchingProtocols, ""
		}
		if resp == nil {
			t.Fatal(err)
		}
		var body struct {
			Errors []struct {
				Extensions map[string]any `json:"extensions"`
			} `json:"errors"`
		}
		b, _ := io.ReadAll(resp.Body)
		json.Unmarshal(b, &body)
		code := ""
		if len(body.Errors) > 0 {
			code, _ = body.Errors[0].Extensions["code"].(string)
		}
		return nil, resp.StatusCode, code
	}
	// Two sockets waiting for connection_init from one address; a third is refused.
	p1, _, _ := raw()
	p2, _, _ := raw()
	if _, status, code := raw(); status != http.StatusTooManyRequests || code != gqlhttp.CodeTooManySockets {
		t.Fatalf("a third unauthenticated socket: %d %s", status, code)
	}
	p1.CloseNow()
	p2.CloseNow()
	// Two authenticated sockets of one customer; a third is closed at connection_init.
	var a, b *testutil.WSClient
	for a == nil || b == nil { // until the closed ones have given their places back
		c, code, err := testutil.DialWS(ctx, rig.url, rig.token)
		switch {
		case err == nil && a == nil:
			a = c
		case err == nil:
			b = c
		case ctx.Err() != nil:
			t.Fatalf("dial: %d %v", code, err)
		}
	}
	t.Cleanup(a.Close)
	t.Cleanup(b.Close)
	if _, code, err := testutil.DialWS(ctx, rig.url, rig.token); err == nil || code != gqlhttp.CloseTooManySockets {
		t.Fatalf("a third socket of the customer: close %d, %v", code, err)
	}

	vars := map[string]any{"id": rig.orderID}
	for _, id := range []string{"s1", "s2"} {
		if err := a.Subscribe(ctx, id, subscription, vars); err != nil {
			t.Fatal(err)
		}
		until(ctx, t, a, id, firstUpdate)
	}
	for name, c := range map[string]*testutil.WSClient{"same socket": a, "other socket": b} {
		if r := try(ctx, t, c, "s3", subscription, vars); len(r.data) > 0 || len(r.codes) == 0 || r.codes[0] != gqlhttp.CodeTooManySubscriptions {
			t.Fatalf("a third subscription (%s): %+v", name, r)
		}
	}
	// Completing one gives its place back (once the server has ended it).
	if err := wsjson.Write(ctx, a.Conn, map[string]any{"id": "s1", "type": "complete"}); err != nil {
		t.Fatal(err)
	}
	for i := 0; ; i++ {
		r := try(ctx, t, b, fmt.Sprint("again", i), subscription, vars)
		if len(r.data) > 0 {
			break
		}
		if r.codes[0] != gqlhttp.CodeTooManySubscriptions {
			t.Fatalf("retry: %+v", r)
		}
	}
	// Closing a socket gives its place back.
	a.Close()
	for {
		c, code, err := testutil.DialWS(ctx, rig.url, rig.token)
		if err == nil {
			c.Close()
			break
		}
		if code != gqlhttp.CloseTooManySockets {
			t.Fatalf("retry: close %d, %v", code, err)
		}
	}
}

// The server's WriteTimeout bounds HTTP responses, not sockets: a subscription still
// delivers after it has passed (a hijacked connection loses the server's deadlines).
func TestSocket_OutlivesTheServersWriteTimeout(t *testing.T) {
	t.Parallel()
	const writeTimeout = 300 * time.Millisecond
	rig := newSocketRigOn(t, testutil.APIOptions{}, writeTimeout)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c := rig.dial(ctx, t, rig.token)
	first := try(ctx, t, c, "s1", subscription, map[string]any{"id": rig.orderID})
	if len(first.data) == 0 {
		t.Fatalf("subscription: %+v", first)
	}
	time.Sleep(3 * writeTimeout) // the condition under test: the timeout has passed
	rig.feed.Publish(checkout.Order{ID: rig.orderID, Status: checkout.StatusPaid, Sequence: 2, UpdatedAt: time.Now()})
	if r := until(ctx, t, c, "s1", func(r opResult) bool { return len(r.data) > 0 }); !strings.Contains(string(r.data[0]), "PAID") {
		t.Fatalf("update after the write timeout: %+v", r)
	}
}

// TestL4_Socket_FiftyYearToken_Refused: a token whose lifetime exceeds JWT_MAX_LIFETIME
// opens no socket (4403) and reads nothing over HTTP (UNAUTHENTICATED); the reviewer's
// 50-year token was a session whose socket the expiry timer never closed.
func TestL4_Socket_FiftyYearToken_Refused(t *testing.T) {
	t.Parallel()
	rig := newSocketRig(t, testutil.APIOptions{})
	tok, err := auth.Sign(testutil.Secret, socketCustomer, nil, 50*365*24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if c, code, err := testutil.DialWS(ctx, rig.url, tok); err == nil {
		c.Close()
		t.Fatal("a 50-year token opened a socket")
	} else if code != gqlhttp.CloseForbidden {
		t.Fatalf("close %d (%v), want %d", code, err, gqlhttp.CloseForbidden)
	}
	r := rig.api.Do(t, tok, `query($id: ID!) { order(id: $id) { id } }`, map[string]any{"id": rig.orderID})
	if len(r.Errors) == 0 || r.Errors[0].Extensions["code"] != gqlhttp.CodeUnauthenticated {
		t.Fatalf("over HTTP: %+v", r)
	}
}
