package graph_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/time/rate"

	"github.com/checkout-backend/checkout/graph/gqlhttp"
	"github.com/checkout-backend/checkout/internal/platform/overload"
	"github.com/checkout-backend/checkout/internal/testutil"
)

// servedShedder is the shedder as serve builds it with the default limits (CLIENT_RATE
// 50, CLIENT_BURST 100, CHECKOUT_RATE 1, CHECKOUT_BURST 5), over the API's classifier.
func servedShedder() *overload.Shedder {
	return overload.New(overload.Options{Rate: 50, Burst: 100, CheckoutRate: rate.Limit(1), CheckoutBurst: 5,
		Classify: gqlhttp.Classify(nil), Reject: gqlhttp.Refuse})
}

// postAs posts body as token and returns the recorder (status, headers and body).
func postAs(h http.Handler, token, body string) *httptest.ResponseRecorder {
	req := httptest.NewRequest(http.MethodPost, "/graphql", strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec
}

// aliasedCheckouts is one request of n aliased checkouts, each its own key and token:
// what a card tester sends to try n cards for the price of one request.
func aliasedCheckouts(req, n int) string {
	var b strings.Builder
	b.WriteString("mutation {")
	for i := range n {
		fmt.Fprintf(&b, ` c%d: checkout(input: {idempotencyKey: "r%d-c%d", paymentToken: "tok_visa", items: [{sku: "CARD", quantity: 1}]}) { order { id } }`, i, req, i)
	}
	b.WriteString(" }")
	body, _ := json.Marshal(map[string]string{"query": b.String()})
	return string(body)
}

// M3: the rate limit counts operations, not requests, and checkout has its own lower
// rate per customer. 20 requests of 10 aliased checkouts by one customer used to run
// 200 checkout resolvers without a 429; now a request with more than one checkout is
// refused before any runs, and single checkouts past the customer's checkout burst are
// answered 429 with Retry-After and RATE_LIMITED.
func TestM3_AliasedCheckoutsCountPerOperation_CheckoutHasItsOwnRate(t *testing.T) {
	t.Parallel()
	db := testutil.NewDB(t)
	shed := servedShedder()
	api := testutil.NewAPI(t, db, testutil.APIOptions{Overload: shed.Middleware})
	api.Product(t, "CARD", 100, map[string]int{"main": 10000})
	tok := testutil.Token(t, "card-tester")

	refused := 0
	for i := range 20 {
		w := postAs(api.Handler, tok, aliasedCheckouts(i, 10))
		if w.Code == http.StatusTooManyRequests {
			refused++
		}
	}
	orders := api.Count(t, "SELECT count(*)::int FROM orders")
	if orders > 5 {
		t.Fatalf("20 requests of 10 aliased checkouts ran %d checkouts (%d requests refused); want at most the checkout burst of 5", orders, refused)
	}

	// Single checkouts: the checkout burst, then 429 with Retry-After and RATE_LIMITED.
	var last *httptest.ResponseRecorder
	for i := range 10 {
		body, _ := json.Marshal(map[string]any{"query": checkoutMutation, "variables": map[string]any{"input": map[string]any{
			"idempotencyKey": "single-" + strconv.Itoa(i), "paymentToken": "tok_visa", "items": items("CARD", 1)}}})
		if last = postAs(api.Handler, tok, string(body)); last.Code == http.StatusTooManyRequests {
			break
		}
	}
	if last.Code != http.StatusTooManyRequests {
		t.Fatalf("10 single checkouts in a row: last %d, want 429", last.Code)
	}
	if s, err := strconv.Atoi(last.Header().Get("Retry-After")); err != nil || s < 1 {
		t.Errorf("Retry-After %q", last.Header().Get("Retry-After"))
	}
	var resp testutil.Response
	if err := json.Unmarshal(last.Body.Bytes(), &resp); err != nil || resp.ErrorCode() != gqlhttp.CodeRateLimited {
		t.Errorf("429 body %s: want %s", last.Body.String(), gqlhttp.CodeRateLimited)
	}
	if n := api.Count(t, "SELECT count(*)::int FROM orders"); n > 5 {
		t.Errorf("%d orders in all; the checkout burst is 5", n)
	}

	// Reads are not slowed by the checkout rate: another customer's queries and this
	// customer's own queries still run.
	if w := postAs(api.Handler, tok, `{"query":"{ products(first: 1) { edges { cursor } } }"}`); w.Code != http.StatusOK {
		t.Errorf("a query after the checkout rate ran out: %d %s", w.Code, w.Body.String())
	}
}

// M3: a request costs as many tokens of its client's rate as it has root fields, so ten
// aliased createCart cost ten tokens, not one.
func TestM3_AliasedCreateCartsCostOneTokenEach(t *testing.T) {
	t.Parallel()
	db := testutil.NewDB(t)
	shed := overload.New(overload.Options{Rate: 0.001, Burst: 20, Classify: gqlhttp.Classify(nil), Reject: gqlhttp.Refuse})
	api := testutil.NewAPI(t, db, testutil.APIOptions{Overload: shed.Middleware})
	tok := testutil.Token(t, "cart-maker")
	var q bytes.Buffer
	q.WriteString("mutation {")
	for i := range 10 {
		fmt.Fprintf(&q, " c%d: createCart { id }", i)
	}
	q.WriteString(" }")
	body, _ := json.Marshal(map[string]string{"query": q.String()})
	codes := []int{}
	for range 3 {
		codes = append(codes, postAs(api.Handler, tok, string(body)).Code)
	}
	if fmt.Sprint(codes) != fmt.Sprint([]int{200, 200, 429}) {
		t.Fatalf("three requests of ten createCart within a burst of 20: %v, want [200 200 429]", codes)
	}
	if n := api.Count(t, "SELECT count(*)::int FROM carts"); n != 20 {
		t.Errorf("%d carts, want 20", n)
	}
}

// M3: the door cannot read a persisted query sent by hash alone; once gqlgen knows its
// operation, its checkouts are charged to the customer's checkout rate all the same, and
// a hash of several checkouts is refused like their text.
func TestM3_CheckoutsByPersistedHashTakeCheckoutTokens(t *testing.T) {
	t.Parallel()
	db := testutil.NewDB(t)
	shed := servedShedder()
	api := testutil.NewAPI(t, db, testutil.APIOptions{Overload: shed.Middleware})
	api.Product(t, "CARD", 100, map[string]int{"main": 10000})
	tok := testutil.Token(t, "hash-tester")
	q := `mutation($in: CheckoutInput!) { checkout(input: $in) { order { id } } }`
	send := func(i int, withText bool) *httptest.ResponseRecorder {
		p := map[string]any{"extensions": pqExt(sha256Hex(q)), "variables": map[string]any{"in": map[string]any{
			"idempotencyKey": "h" + strconv.Itoa(i), "paymentToken": "tok_visa", "items": items("CARD", 1)}}}
		if withText {
			p["query"] = q
		}
		b, _ := json.Marshal(p)
		return postAs(api.Handler, tok, string(b))
	}
	if w := send(0, true); w.Code != http.StatusOK {
		t.Fatalf("register: %d %s", w.Code, w.Body.String())
	}
	var last *httptest.ResponseRecorder
	for i := 1; i <= 10; i++ {
		if last = send(i, false); last.Code != http.StatusOK {
			break
		}
	}
	if last.Code != http.StatusTooManyRequests || last.Header().Get("Retry-After") == "" || !strings.Contains(last.Body.String(), gqlhttp.CodeRateLimited) {
		t.Fatalf("checkouts by hash past the checkout burst: %d %q %s", last.Code, last.Header().Get("Retry-After"), last.Body.String())
	}
	if n := api.Count(t, "SELECT count(*)::int FROM orders"); n > 5 {
		t.Errorf("%d orders by hash; the checkout burst is 5", n)
	}

	two := `mutation { a: checkout(input: {idempotencyKey: "x1", paymentToken: "tok_visa", items: [{sku: "CARD", quantity: 1}]}) { order { id } }
		... on Mutation { b: checkout(input: {idempotencyKey: "x2", paymentToken: "tok_visa", items: [{sku: "CARD", quantity: 1}]}) { order { id } } } }`
	b, _ := json.Marshal(map[string]any{"query": two})
	w := postAs(api.Handler, testutil.Token(t, "two-at-once"), string(b))
	if !strings.Contains(w.Body.String(), gqlhttp.CodeTooManyCheckouts) || strings.Contains(w.Body.String(), `"data"`) {
		t.Errorf("two checkouts in one operation: %d %s", w.Code, w.Body.String())
	}
}
