package graph_test

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/coder/websocket/wsjson"

	"github.com/checkout-backend/checkout/graph/gqlhttp"
	"github.com/checkout-backend/checkout/internal/testutil"
)

const (
	mediaGR   = "application/graphql-response+json"
	mediaJSON = "application/json"
)

// httpResult is a raw HTTP answer of the GraphQL endpoint, decoded.
type httpResult struct {
	Status  int
	Header  http.Header
	Body    string
	Data    json.RawMessage
	HasData bool
	Errors  []struct {
		Message    string         `json:"message"`
		Extensions map[string]any `json:"extensions"`
	}
}

func (r *httpResult) Code() string {
	if len(r.Errors) == 0 {
		return ""
	}
	c, _ := r.Errors[0].Extensions["code"].(string)
	return c
}

// mediaType is the response's media type without parameters.
func (r *httpResult) mediaType() string {
	mt, _, _ := strings.Cut(r.Header.Get("Content-Type"), ";")
	return strings.TrimSpace(mt)
}

func serve(t testing.TB, h http.Handler, req *http.Request) *httpResult {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	r := &httpResult{Status: rec.Code, Header: rec.Header(), Body: rec.Body.String()}
	var raw map[string]json.RawMessage
	if json.Unmarshal(rec.Body.Bytes(), &raw) == nil {
		r.Data, r.HasData = raw["data"]
		if e, ok := raw["errors"]; ok {
			if err := json.Unmarshal(e, &r.Errors); err != nil {
				t.Fatalf("errors entry: %v: %s", err, e)
			}
		}
	}
	return r
}

// headers are name, value pairs.
func withHeaders(req *http.Request, headers ...string) *http.Request {
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	return req
}

// postRaw posts body as application/json (unless headers say otherwise).
func postRaw(t testing.TB, h http.Handler, body string, headers ...string) *httpResult {
	t.Helper()
	req := httptest.NewRequest(http.MethodPost, "/graphql", strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	return serve(t, h, withHeaders(req, headers...))
}

func post(t testing.TB, h http.Handler, params map[string]any, headers ...string) *httpResult {
	t.Helper()
	b, _ := json.Marshal(params)
	return postRaw(t, h, string(b), headers...)
}

func get(t testing.TB, h http.Handler, params url.Values, headers ...string) *httpResult {
	t.Helper()
	req := httptest.NewRequest(http.MethodGet, "/graphql?"+params.Encode(), nil)
	return serve(t, h, withHeaders(req, headers...))
}

const productsQuery = `query Products($first: Int) { products(first: $first) { edges { node { sku name priceCents available } } } }`

func newTransportAPI(t *testing.T, opts ...testutil.APIOptions) *testutil.API {
	t.Helper()
	api := testutil.NewAPI(t, testutil.NewDB(t), opts...)
	api.Product(t, "TEE", 2500, map[string]int{"main": 5})
	return api
}

// wantProducts checks a successful answer carrying the TEE product.
func wantProducts(t *testing.T, r *httpResult, media string) {
	t.Helper()
	if r.Status != http.StatusOK || r.mediaType() != media || len(r.Errors) > 0 || !strings.Contains(string(r.Data), `"sku":"TEE"`) {
		t.Fatalf("want 200 %s with the products, got %d %q: %s", media, r.Status, r.Header.Get("Content-Type"), r.Body)
	}
}

func TestTransport_MediaTypes(t *testing.T) {
	t.Parallel()
	api := newTransportAPI(t)
	q := map[string]any{"query": productsQuery}
	for _, tc := range []struct {
		accept string
		want   string
	}{
		{"", mediaJSON},
		{"*/*", mediaJSON},
		{"application/json", mediaJSON},
		{"application/graphql-response+json", mediaGR},
		{"application/graphql-response+json, application/json;q=0.9", mediaGR},
		{"application/json, application/graphql-response+json;q=0.5", mediaJSON},
	} {
		r := post(t, api.Handler, q, "Accept", tc.accept)
		wantProducts(t, r, tc.want)
		if !strings.Contains(r.Header.Get("Content-Type"), "charset=utf-8") {
			t.Errorf("Accept %q: Content-Type %q has no charset", tc.accept, r.Header.Get("Content-Type"))
		}
	}
	r := post(t, api.Handler, q, "Accept", "text/html")
	if r.Status != http.StatusNotAcceptable || r.Code() != gqlhttp.CodeNotAcceptable {
		t.Fatalf("Accept text/html: %d %s", r.Status, r.Body)
	}
}

func TestTransport_RequestErrors(t *testing.T) {
	t.Parallel()
	api := newTransportAPI(t)
	for _, tc := range []struct {
		name       string
		body       string
		headers    []string
		statusGR   int // with Accept: application/graphql-response+json
		statusJSON int // with Accept: application/json
		code       string
	}{
		{"parse error", `{"query": "{"}`, nil, 400, 200, "GRAPHQL_PARSE_FAILED"},
		{"validation error", `{"query": "{ noSuchField }"}`, nil, 400, 200, "GRAPHQL_VALIDATION_FAILED"},
		{"unknown operation", `{"query": "query A { __typename }", "operationName": "B"}`, nil, 400, 200, "GRAPHQL_VALIDATION_FAILED"},
		{"variable coercion", `{"query": "query($n: Int!) { products(first: $n) { edges { cursor } } }", "variables": {"n": "ten"}}`, nil, 400, 200, "GRAPHQL_VALIDATION_FAILED"},
		{"missing query", `{}`, nil, 400, 400, gqlhttp.CodeBadRequest},
		{"query typo", `{"qeury": "{ __typename }"}`, nil, 400, 400, gqlhttp.CodeBadRequest},
		{"query not a string", `{"query": {"a": 1}}`, nil, 400, 400, gqlhttp.CodeBadRequest},
		{"operationName not a string", `{"query": "{ __typename }", "operationName": 7}`, nil, 400, 400, gqlhttp.CodeBadRequest},
		{"variables not an object", `{"query": "{ __typename }", "variables": [7]}`, nil, 400, 400, gqlhttp.CodeBadRequest},
		{"extensions not an object", `{"query": "{ __typename }", "extensions": "x"}`, nil, 400, 400, gqlhttp.CodeBadRequest},
		{"malformed JSON", `{"query": "{ __typename }", "variables": {"card": "4242424242424242"`, nil, 400, 400, gqlhttp.CodeBadRequest},
		{"trailing data", `{"query": "{ __typename }"} {}`, nil, 400, 400, gqlhttp.CodeBadRequest},
		{"empty body", ``, nil, 400, 400, gqlhttp.CodeBadRequest},
		{"batch", `[{"query": "{ __typename }"}, {"query": "{ __typename }"}]`, nil, 400, 400, gqlhttp.CodeBatchingNotSupported},
		{"text/plain", `{"query": "{ __typename }"}`, []string{"Content-Type", "text/plain"}, 415, 415, gqlhttp.CodeUnsupportedMediaType},
		{"no content type", `{"query": "{ __typename }"}`, []string{"Content-Type", ""}, 415, 415, gqlhttp.CodeUnsupportedMediaType},
		{"form", `query=%7B__typename%7D`, []string{"Content-Type", "application/x-www-form-urlencoded"}, 415, 415, gqlhttp.CodeUnsupportedMediaType},
		{"latin1", `{"query": "{ __typename }"}`, []string{"Content-Type", "application/json; charset=latin1"}, 415, 415, gqlhttp.CodeUnsupportedMediaType},
	} {
		for _, accept := range []string{mediaGR, mediaJSON} {
			r := postRaw(t, api.Handler, tc.body, append([]string{"Accept", accept}, tc.headers...)...)
			want := tc.statusJSON
			if accept == mediaGR {
				want = tc.statusGR
			}
			if r.Status != want || r.Code() != tc.code || r.mediaType() != accept {
				t.Errorf("%s, Accept %s: got %d %q %s, want %d %s", tc.name, accept, r.Status, r.Header.Get("Content-Type"), r.Body, want, tc.code)
				continue
			}
			if r.HasData {
				t.Errorf("%s, Accept %s: a request error has a data entry: %s", tc.name, accept, r.Body)
			}
			if strings.Contains(r.Body, "4242424242424242") {
				t.Errorf("%s: the body is echoed: %s", tc.name, r.Body)
			}
		}
	}
	// The service answers normally right after.
	wantProducts(t, post(t, api.Handler, map[string]any{"query": productsQuery}, "Accept", mediaGR), mediaGR)
}

func TestTransport_FieldErrorIs200WithData(t *testing.T) {
	t.Parallel()
	api := newTransportAPI(t)
	// order needs a customer: a field error, so data {"order": null} and status 200.
	r := post(t, api.Handler, map[string]any{"query": `{ order(id: "x") { id } }`}, "Accept", mediaGR)
	if r.Status != http.StatusOK || r.Code() != "UNAUTHENTICATED" || !r.HasData || string(r.Data) != `{"order":null}` {
		t.Fatalf("got %d %s", r.Status, r.Body)
	}
}

func TestTransport_GET(t *testing.T) {
	t.Parallel()
	api := newTransportAPI(t)
	wantProducts(t, get(t, api.Handler, url.Values{"query": {productsQuery}, "variables": {`{"first": 5}`}, "operationName": {"Products"}}, "Accept", mediaGR), mediaGR)
	wantProducts(t, get(t, api.Handler, url.Values{"query": {productsQuery}}), mediaJSON)

	for name, params := range map[string]url.Values{
		"missing query":     {},
		"bad variables":     {"query": {productsQuery}, "variables": {"{"}},
		"variables array":   {"query": {productsQuery}, "variables": {"[1]"}},
		"bad extensions":    {"query": {productsQuery}, "extensions": {"nope"}},
		"parse error":       {"query": {"{"}},
		"unknown field":     {"query": {"{ nope }"}},
		"wrong operationNm": {"query": {productsQuery}, "operationName": {"Other"}},
	} {
		r := get(t, api.Handler, params, "Accept", mediaGR)
		if r.Status != http.StatusBadRequest || r.Code() == "" || r.HasData {
			t.Errorf("GET %s: %d %s", name, r.Status, r.Body)
		}
	}
}

func TestTransport_MutationOverGETRefused(t *testing.T) {
	t.Parallel()
	api := newTransportAPI(t)
	tok := testutil.Token(t, "getter")
	for _, accept := range []string{mediaGR, mediaJSON} {
		r := get(t, api.Handler, url.Values{"query": {`mutation { createCart { id } }`}}, "Accept", accept, "Authorization", "Bearer "+tok)
		if r.Status != http.StatusMethodNotAllowed || r.Header.Get("Allow") != "POST" || r.Code() != gqlhttp.CodeMethodNotAllowed {
			t.Fatalf("Accept %s: %d Allow=%q %s", accept, r.Status, r.Header.Get("Allow"), r.Body)
		}
	}
	if n := api.Count(t, "SELECT count(*)::int FROM carts"); n != 0 {
		t.Fatalf("a GET mutation ran: %d carts", n)
	}
	// The same mutation over POST runs.
	r := post(t, api.Handler, map[string]any{"query": `mutation { createCart { id } }`}, "Accept", mediaGR, "Authorization", "Bearer "+tok)
	if r.Status != http.StatusOK || len(r.Errors) > 0 {
		t.Fatalf("POST mutation: %d %s", r.Status, r.Body)
	}
}

func TestTransport_Methods(t *testing.T) {
	t.Parallel()
	api := newTransportAPI(t)
	for _, m := range []string{http.MethodPut, http.MethodDelete, http.MethodPatch, http.MethodHead} {
		r := serve(t, api.Handler, httptest.NewRequest(m, "/graphql", nil))
		if r.Status != http.StatusMethodNotAllowed || r.Header.Get("Allow") != "GET, POST, OPTIONS" {
			t.Errorf("%s: %d Allow=%q", m, r.Status, r.Header.Get("Allow"))
		}
	}
	r := serve(t, api.Handler, httptest.NewRequest(http.MethodOptions, "/graphql", nil))
	if r.Status != http.StatusNoContent || r.Header.Get("Allow") != "GET, POST, OPTIONS" {
		t.Errorf("OPTIONS: %d Allow=%q", r.Status, r.Header.Get("Allow"))
	}
	sub := post(t, api.Handler, map[string]any{"query": `subscription { orderStatusChanged(orderId: "x") { id } }`}, "Accept", mediaGR)
	if sub.Status != http.StatusBadRequest || sub.Code() != gqlhttp.CodeBadRequest || !strings.Contains(sub.Errors[0].Message, "WebSocket") {
		t.Errorf("subscription over POST: %d %s", sub.Status, sub.Body)
	}
}

func TestTransport_WebSocketStillServed(t *testing.T) {
	t.Parallel()
	api := newTransportAPI(t)
	srv := httptest.NewServer(api.Handler)
	defer srv.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, _, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(srv.URL, "http")+"/graphql", &websocket.DialOptions{Subprotocols: []string{"graphql-transport-ws"}})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.CloseNow()
	tok := testutil.Token(t, "ws-user")
	if err := wsjson.Write(ctx, conn, map[string]any{"type": "connection_init", "payload": map[string]any{"Authorization": "Bearer " + tok}}); err != nil {
		t.Fatal(err)
	}
	var m struct{ Type string }
	if err := wsjson.Read(ctx, conn, &m); err != nil || m.Type != "connection_ack" {
		t.Fatalf("connection_init: %+v %v", m, err)
	}
}

func TestTransport_CORS(t *testing.T) {
	t.Parallel()
	api := newTransportAPI(t, testutil.APIOptions{HTTP: gqlhttp.Options{CORS: gqlhttp.CORS{AllowedOrigins: []string{"https://shop.example.com"}}}})
	pre := withHeaders(httptest.NewRequest(http.MethodOptions, "/graphql", nil),
		"Origin", "https://shop.example.com", "Access-Control-Request-Method", "POST", "Access-Control-Request-Headers", "content-type, authorization")
	r := serve(t, api.Handler, pre)
	if r.Status != http.StatusNoContent || r.Header.Get("Access-Control-Allow-Origin") != "https://shop.example.com" ||
		!strings.Contains(r.Header.Get("Access-Control-Allow-Headers"), "Authorization") {
		t.Fatalf("preflight: %d %v", r.Status, r.Header)
	}
	other := withHeaders(httptest.NewRequest(http.MethodOptions, "/graphql", nil), "Origin", "https://evil.example", "Access-Control-Request-Method", "POST")
	if r := serve(t, api.Handler, other); r.Status != http.StatusForbidden || r.Header.Get("Access-Control-Allow-Origin") != "" {
		t.Fatalf("preflight from another origin: %d %v", r.Status, r.Header)
	}
	r = post(t, api.Handler, map[string]any{"query": productsQuery}, "Origin", "https://shop.example.com", "Accept", mediaGR)
	wantProducts(t, r, mediaGR)
	if r.Header.Get("Access-Control-Allow-Origin") != "https://shop.example.com" || r.Header.Get("Access-Control-Expose-Headers") != "X-Request-ID" {
		t.Fatalf("CORS headers on the answer: %v", r.Header)
	}
	// A GET (a "simple" request, no preflight) gets them too.
	r = get(t, api.Handler, url.Values{"query": {productsQuery}}, "Origin", "https://shop.example.com")
	if r.Header.Get("Access-Control-Allow-Origin") != "https://shop.example.com" {
		t.Fatalf("CORS headers on a GET: %v", r.Header)
	}
}

// syncBuffer collects log lines written concurrently.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func TestTransport_InternalErrorHidesDetailsAndLogsCorrelationID(t *testing.T) {
	t.Parallel()
	var logs syncBuffer
	api := newTransportAPI(t, testutil.APIOptions{Log: &logs})
	// Break the database under the resolver: the products query fails in SQL.
	if _, err := api.DB.ExecContext(context.Background(), "DROP TABLE inventory CASCADE"); err != nil {
		t.Fatal(err)
	}
	r := post(t, api.Handler, map[string]any{"query": productsQuery}, "Accept", mediaGR, "X-Request-ID", "req-internal-1")
	if r.Status != http.StatusOK || r.Code() != "INTERNAL_SERVER_ERROR" {
		t.Fatalf("got %d %s", r.Status, r.Body)
	}
	if id := r.Errors[0].Extensions["correlationId"]; id != "req-internal-1" || r.Header.Get("X-Request-ID") != "req-internal-1" {
		t.Fatalf("correlationId %v, X-Request-ID %q", id, r.Header.Get("X-Request-ID"))
	}
	for _, leak := range []string{"inventory", "SELECT", `relation "`, "SQLSTATE", "does not exist", "goroutine", ".go:"} {
		if strings.Contains(r.Body, leak) {
			t.Errorf("the answer leaks %q: %s", leak, r.Body)
		}
	}
	var logged bool
	for _, line := range strings.Split(logs.String(), "\n") {
		var l map[string]any
		if json.Unmarshal([]byte(line), &l) == nil && l["level"] == "ERROR" && l["correlationId"] == "req-internal-1" &&
			strings.Contains(line, "does not exist") {
			logged = true
		}
	}
	if !logged {
		t.Fatalf("no ERROR log line with the correlation id and the cause:\n%s", logs.String())
	}
}

func TestTransport_Introspection(t *testing.T) {
	t.Parallel()
	intro := `query IntrospectionQuery { __schema { queryType { name } types { ...FullType } } }
		fragment FullType on __Type { kind name fields(includeDeprecated: true) { name args { ...InputValue } type { ...TypeRef } } }
		fragment InputValue on __InputValue { name type { ...TypeRef } defaultValue }
		fragment TypeRef on __Type { kind name ofType { kind name ofType { kind name ofType { kind name ofType { kind name
			ofType { kind name ofType { kind name ofType { kind name ofType { kind name } } } } } } } } }`

	dev := newTransportAPI(t)
	r := post(t, dev.Handler, map[string]any{"query": intro}, "Accept", mediaGR)
	if r.Status != http.StatusOK || len(r.Errors) > 0 || !strings.Contains(string(r.Data), `"Product"`) {
		t.Fatalf("introspection in development: %d %.300s", r.Status, r.Body)
	}

	prod := newTransportAPI(t, testutil.APIOptions{NoIntrospection: true})
	for _, q := range []string{intro, `{ __type(name: "Product") { name } }`} {
		r := post(t, prod.Handler, map[string]any{"query": q}, "Accept", mediaGR)
		if r.Status != http.StatusBadRequest || r.Code() != gqlhttp.CodeIntrospectionDisabled {
			t.Fatalf("introspection in production: %d %s", r.Status, r.Body)
		}
	}
	r = post(t, prod.Handler, map[string]any{"query": `{ __typename products(first: 1) { edges { node { __typename sku } } } }`}, "Accept", mediaGR)
	if r.Status != http.StatusOK || len(r.Errors) > 0 {
		t.Fatalf("__typename in production: %d %s", r.Status, r.Body)
	}
}

// With introspection off, validation errors do not spell out the schema: no "Did you
// mean" naming fields, arguments or types.
func TestTransport_NoSuggestionsWithoutIntrospection(t *testing.T) {
	t.Parallel()
	queries := []string{
		`{ productz(first: 1) { edges { cursor } } }`,
		`{ products(frist: 1) { edges { cursor } } }`,
		`{ products(first: 1) { edges { node { skux } } } }`,
		`query($i: ProductInputt!) { __typename }`,
	}
	prod := newTransportAPI(t, testutil.APIOptions{NoIntrospection: true})
	for _, q := range queries {
		r := post(t, prod.Handler, map[string]any{"query": q}, "Accept", mediaGR)
		if r.Status != http.StatusBadRequest || r.Code() != "GRAPHQL_VALIDATION_FAILED" {
			t.Fatalf("%s: %d %s", q, r.Status, r.Body)
		}
		for _, leak := range []string{"Did you mean", `"products"`, `"first"`, `"sku"`, `"ProductInput"`} {
			if strings.Contains(r.Body, leak) {
				t.Errorf("%s: the answer names the schema (%s): %s", q, leak, r.Body)
			}
		}
	}
	// In development the suggestions stay: they help.
	dev := newTransportAPI(t)
	if r := post(t, dev.Handler, map[string]any{"query": queries[0]}, "Accept", mediaGR); !strings.Contains(r.Body, "Did you mean") {
		t.Errorf("development lost its suggestions: %s", r.Body)
	}
}
