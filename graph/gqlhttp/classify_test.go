package gqlhttp_test

import (
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
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
			if got, _ := classify(r); got != c.want {
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

// M3: the classifier counts what a request costs the client's rate: the root fields of
// the operation that runs (aliases, inline fragments and fragments spread at the root
// looked through, directives not mistaken for fields), and its checkouts, without
// changing its class.
func TestM3_ClassifyQueryCountsRootFieldsAndCheckouts(t *testing.T) {
	t.Parallel()
	const co = `checkout(input: {cartId: "c"}) { order { id } }`
	for _, c := range []struct {
		name, doc, op string
		class         overload.Class
		cost          overload.Cost
	}{
		{"OneCheckout", `mutation { ` + co + ` }`, "", overload.Checkout, overload.Cost{Operations: 1, Checkouts: 1}},
		{"TenAliasedCheckouts", `mutation { a: ` + co + ` b: ` + co + ` c: ` + co + ` d: ` + co + ` e: ` + co +
			` f: ` + co + ` g: ` + co + ` h: ` + co + ` i: ` + co + ` j: ` + co + ` }`, "", overload.Checkout, overload.Cost{Operations: 10, Checkouts: 10}},
		{"AliasedCreateCarts", `mutation { a: createCart { id } b: createCart { id } checkout: createCart { id } }`, "", overload.Other, overload.Cost{Operations: 3}},
		{"TypenameIsFree", `mutation { __typename createCart { id } }`, "", overload.Other, overload.Cost{Operations: 1}},
		{"Directives", `mutation M($s: Boolean!) @dir { a: createCart @skip(if: $s) { id } b: ` + co + ` }`, "", overload.Checkout, overload.Cost{Operations: 2, Checkouts: 1}},
		{"InlineFragments", `mutation { ... on Mutation { a: ` + co + ` } ... @include(if: true) { b: ` + co + ` } ... on Mutation @skip(if: false) { c: ` + co + ` } }`,
			"", overload.Checkout, overload.Cost{Operations: 3, Checkouts: 3}},
		{"SpreadsLookedThroughEachFragmentOnce", `mutation { ...F ...F ...G } fragment F on Mutation { a: ` + co + ` ...G } fragment G on Mutation { b: ` + co + ` ...F cancelOrder(id: "1") { order { id } } }`,
			"", overload.Checkout, overload.Cost{Operations: 3, Checkouts: 2}},
		{"FragmentBeforeTheOperation", `fragment F on Mutation { a: ` + co + ` } mutation { ...F }`, "", overload.Checkout, overload.Cost{Operations: 1, Checkouts: 1}},
		{"NestedFieldsAreNotRoot", `query { products(first: 2) { edges { node { sku } } } order(id: "1") { checkout: id } }`, "", overload.Read, overload.Cost{Operations: 2}},
		{"SelectedOperation", `query A { a b c } mutation B { ` + co + ` }`, "B", overload.Checkout, overload.Cost{Operations: 1, Checkouts: 1}},
		{"QueryCheckoutsAreNotCheckouts", `query { checkout }`, "", overload.Read, overload.Cost{Operations: 1}},
		{"Broken", `mutation { ` + co, "", overload.Other, overload.Cost{}},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			class, cost := gqlhttp.ClassifyQuery(c.doc, c.op)
			if class != c.class || cost != c.cost {
				t.Errorf("%q %+v, want %q %+v", class, cost, c.class, c.cost)
			}
		})
	}
	// GET counts its query parameter.
	classify := gqlhttp.Classify(nil)
	r := httptest.NewRequest(http.MethodGet, "/graphql?query="+url.QueryEscape(`{ a: products { edges { cursor } } b: products { edges { cursor } } }`), nil)
	if class, cost := classify(r); class != overload.Read || cost.Operations != 2 {
		t.Errorf("GET: %q %+v", class, cost)
	}
}
