package gqlhttp_test

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/checkout-backend/checkout/graph/gqlhttp"
	"github.com/checkout-backend/checkout/internal/platform/overload"
)

func postJSON(body string) *http.Request {
	r := httptest.NewRequest(http.MethodPost, "/graphql", strings.NewReader(body))
	r.Header.Set("Content-Type", "application/json")
	return r
}

func TestGraphQLClassifier(t *testing.T) {
	t.Parallel()
	hashes := map[string]string{"abc": "mutation { checkout(input: {}) { order { id } } }"}
	classify := gqlhttp.Classify(func(h string) (string, bool) { q, ok := hashes[h]; return q, ok })
	for _, c := range []struct {
		name string
		req  func() *http.Request
		want overload.Class
	}{
		{"CheckoutMutation", func() *http.Request {
			return postJSON(`{"query":"mutation Place($i: CheckoutInput!) { checkout(input: $i) { order { id } } }","variables":{"i":{}}}`)
		}, overload.Checkout},
		{"AliasedCheckout", func() *http.Request {
			return postJSON(`{"query":"mutation { placed: checkout(input: {cartId: \"c\"}) { order { id } } }"}`)
		}, overload.Checkout},
		{"AliasNamedCheckout_IsNot", func() *http.Request {
			return postJSON(`{"query":"mutation { checkout: createCart { id } }"}`)
		}, overload.Other},
		{"CheckoutInArgumentsOnly_IsNot", func() *http.Request {
			return postJSON(`{"query":"mutation { addCartItem(cartId: \"checkout\", sku: \"x\", quantity: 1) { cart { id } } }"}`)
		}, overload.Other},
		{"CommentedOut_IsNot", func() *http.Request {
			return postJSON(`{"query":"mutation {\n # checkout(input: {})\n createCart { id } }"}`)
		}, overload.Other},
		{"OtherMutation", func() *http.Request { return postJSON(`{"query":"mutation { createCart { id } }"}`) }, overload.Other},
		{"Query", func() *http.Request { return postJSON(`{"query":"{ products { edges { node { sku } } } }"}`) }, overload.Read},
		{"QueryWithFieldNamedCheckout", func() *http.Request {
			return postJSON(`{"query":"query { order(id: \"1\") { checkout: id } }"}`)
		}, overload.Read},
		{"SelectedOperation", func() *http.Request {
			return postJSON(`{"query":"query A { products { edges { cursor } } } mutation B { checkout(input: {}) { order { id } } }","operationName":"B"}`)
		}, overload.Checkout},
		{"FirstOperationWhenUnnamed", func() *http.Request {
			return postJSON(`{"query":"fragment F on Order { id } query A($x: Int = 2) { order(id: \"1\") { ...F } }"}`)
		}, overload.Read},
		{"PersistedQueryKnownHash", func() *http.Request {
			return postJSON(`{"extensions":{"persistedQuery":{"version":1,"sha256Hash":"abc"}}}`)
		}, overload.Checkout},
		{"PersistedQueryUnknownHash", func() *http.Request {
			return postJSON(`{"extensions":{"persistedQuery":{"version":1,"sha256Hash":"zzz"}}}`)
		}, overload.Other},
		{"Subscription", func() *http.Request {
			return postJSON(`{"query":"subscription { orderStatusChanged(orderId: \"1\") { id } }"}`)
		}, overload.Stream},
		{"WebSocket", func() *http.Request {
			r := httptest.NewRequest(http.MethodGet, "/graphql", nil)
			r.Header.Set("Upgrade", "websocket")
			return r
		}, overload.Stream},
		{"GET", func() *http.Request {
			return httptest.NewRequest(http.MethodGet, "/graphql?query={products{edges{cursor}}}", nil)
		}, overload.Read},
		{"NotJSON", func() *http.Request { return postJSON(`mutation { checkout }`) }, overload.Other},
		{"BrokenQuery", func() *http.Request { return postJSON(`{"query":"mutation { checkout(input: "}`) }, overload.Other},
		{"LargeBodyReadWhole", func() *http.Request {
			return postJSON(`{"query":"mutation { checkout(input: {}) { order { id } } }","variables":{"pad":"` + strings.Repeat("x", 100<<10) + `"}}`)
		}, overload.Checkout},
		{"OverTheBodyLimit", func() *http.Request {
			return postJSON(`{"query":"mutation { checkout(input: {}) { order { id } } }","variables":{"pad":"` + strings.Repeat("x", gqlhttp.DefaultMaxBodyBytes) + `"}}`)
		}, overload.Other},
		{"RefusedByTheTransport", func() *http.Request {
			return postJSON(`{"query":"subscription { orderStatusChanged(orderId: \"1\") { id } }","Query":"{ products { edges { cursor } } }"}`)
		}, overload.Other},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			r := c.req()
			var before []byte
			if r.Body != nil {
				before, _ = io.ReadAll(r.Body)
				r.Body = io.NopCloser(strings.NewReader(string(before)))
			}
			if got := classify(r); got != c.want {
				t.Errorf("class %q, want %q", got, c.want)
			}
			if r.Body != nil {
				after, _ := io.ReadAll(r.Body)
				if string(after) != string(before) {
					t.Errorf("the body reached the handler altered (%d bytes of %d)", len(after), len(before))
				}
			}
		})
	}
}
