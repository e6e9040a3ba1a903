package graph_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/checkout-backend/checkout/graph"
	"github.com/checkout-backend/checkout/graph/generated"
	"github.com/checkout-backend/checkout/graph/gqlhttp"
	"github.com/checkout-backend/checkout/internal/testutil"
)

func repeatAliases(n int) string {
	var b strings.Builder
	for i := range n {
		fmt.Fprintf(&b, "a%d: __typename ", i)
	}
	return b.String()
}

// nested is a query whose fields nest depth deep.
func nested(depth int) string {
	return "{ " + strings.Repeat("products { edges { node { ", (depth-1)/3) + strings.Repeat("a { ", (depth-1)%3) + "sku" +
		strings.Repeat(" }", (depth-1)%3) + strings.Repeat(" } } }", (depth-1)/3) + " }"
}

// fragmentBomb expands to 2^levels fields.
func fragmentBomb(levels int) string {
	var b strings.Builder
	b.WriteString("query Bomb { products(first: 1) { edges { node { ...F0 } } } }\n")
	for i := range levels {
		fmt.Fprintf(&b, "fragment F%d on Product { ...F%d ...F%d }\n", i, i+1, i+1)
	}
	fmt.Fprintf(&b, "fragment F%d on Product { sku }\n", levels)
	return b.String()
}

const expensiveQuery = `{ myOrders(first: 100) { edges { node { id items { sku product { sku name priceCents currency available } } } } } }`

func TestLimits_RefusedWithTheirCode_ThenServiceAnswers(t *testing.T) {
	t.Parallel()
	api := newTransportAPI(t)
	var rootFields []string
	for i := range 11 {
		rootFields = append(rootFields, fmt.Sprintf("p%d: product(sku: \"TEE\") { sku }", i))
	}
	for _, tc := range []struct {
		name, query, code string
		limit, actual     int
	}{
		{"50 levels deep", nested(50), gqlhttp.CodeQueryTooDeep, 12, 50},
		{"500 aliases", "{ " + repeatAliases(500) + "}", gqlhttp.CodeTooManyAliases, 30, 500},
		{"11 root fields", "{ " + strings.Join(rootFields, " ") + " }", gqlhttp.CodeTooManyRootFields, 10, 11},
		{"over the complexity budget", expensiveQuery, gqlhttp.CodeComplexityLimitExceeded, 5000, 0},
		{"fragment bomb", fragmentBomb(40), gqlhttp.CodeComplexityLimitExceeded, 5000, 0},
	} {
		for _, accept := range []string{mediaGR, mediaJSON} {
			start := time.Now()
			r := post(t, api.Handler, map[string]any{"query": tc.query}, "Accept", accept)
			want := map[string]int{mediaGR: 400, mediaJSON: 200}[accept]
			if r.Status != want || r.Code() != tc.code || r.HasData {
				t.Fatalf("%s, Accept %s: %d %.500s", tc.name, accept, r.Status, r.Body)
			}
			ext := r.Errors[0].Extensions
			if ext["limit"] != float64(tc.limit) || (tc.actual > 0 && ext["actual"] != float64(tc.actual)) || ext["actual"] == nil {
				t.Errorf("%s: extensions %v, want limit %d actual %d", tc.name, ext, tc.limit, tc.actual)
			}
			if d := time.Since(start); d > 2*time.Second {
				t.Errorf("%s took %v to refuse", tc.name, d)
			}
			wantProducts(t, post(t, api.Handler, map[string]any{"query": productsQuery}, "Accept", accept), accept)
		}
	}
}

func TestLimits_DepthAtTheLimitRuns(t *testing.T) {
	t.Parallel()
	api := newTransportAPI(t)
	tok := testutil.Token(t, "deep")
	// myOrders > edges > node > items > product > sku: 6 levels, the deepest the schema has.
	q := `{ myOrders(first: 5) { edges { node { items { product { sku } } } } } }`
	if r := post(t, api.Handler, map[string]any{"query": q}, "Accept", mediaGR, "Authorization", "Bearer "+tok); r.Status != 200 || len(r.Errors) > 0 {
		t.Fatalf("%d %s", r.Status, r.Body)
	}
	strict := newTransportAPI(t, testutil.APIOptions{HTTP: gqlhttp.Options{Limits: gqlhttp.Limits{MaxDepth: 5}}})
	if r := post(t, strict.Handler, map[string]any{"query": q}, "Accept", mediaGR, "Authorization", "Bearer "+tok); r.Code() != gqlhttp.CodeQueryTooDeep {
		t.Fatalf("MaxDepth 5: %d %s", r.Status, r.Body)
	}
}

func TestLimits_BodySize(t *testing.T) {
	t.Parallel()
	api := newTransportAPI(t)
	big := `{"query": "{ __typename }", "variables": {"pad": "` + strings.Repeat("x", 5<<20) + `"}}`
	for _, knownLength := range []bool{true, false} {
		req := httptest.NewRequest(http.MethodPost, "/graphql", strings.NewReader(big))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Accept", mediaGR)
		if !knownLength {
			req.ContentLength = -1
		}
		r := serve(t, api.Handler, req)
		if r.Status != http.StatusRequestEntityTooLarge || r.Code() != gqlhttp.CodeRequestTooLarge || r.Errors[0].Extensions["limit"] != float64(1<<20) {
			t.Fatalf("5 MB body (known length %v): %d %.300s", knownLength, r.Status, r.Body)
		}
	}
	wantProducts(t, post(t, api.Handler, map[string]any{"query": productsQuery}, "Accept", mediaGR), mediaGR)

	// Over a real connection too: the client gets the 413, and the server goes on.
	srv := httptest.NewServer(api.Handler)
	defer srv.Close()
	resp, err := http.Post(srv.URL+"/graphql", "application/json", strings.NewReader(big))
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestEntityTooLarge {
		t.Fatalf("over HTTP: %d", resp.StatusCode)
	}
	resp, err = http.Post(srv.URL+"/graphql", "application/json", bytes.NewReader([]byte(`{"query": "{ __typename }"}`)))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(b) != `{"data":{"__typename":"Query"}}` {
		t.Fatalf("after the 413: %d %s", resp.StatusCode, b)
	}

	small := newTransportAPI(t, testutil.APIOptions{HTTP: gqlhttp.Options{Limits: gqlhttp.Limits{MaxBodyBytes: 100}}})
	if r := post(t, small.Handler, map[string]any{"query": productsQuery}); r.Status != http.StatusRequestEntityTooLarge {
		t.Fatalf("GRAPHQL_MAX_BODY_BYTES=100: %d %s", r.Status, r.Body)
	}
}

func TestLimits_Configurable(t *testing.T) {
	t.Parallel()
	api := newTransportAPI(t, testutil.APIOptions{HTTP: gqlhttp.Options{Limits: gqlhttp.Limits{MaxAliases: 1, MaxRootFields: 1, MaxComplexity: 20}}})
	for q, code := range map[string]string{
		`{ a: product(sku: "TEE") { b: sku } }`:                         gqlhttp.CodeTooManyAliases,
		`{ product(sku: "TEE") { sku } products { edges { cursor } } }`: gqlhttp.CodeTooManyRootFields,
		`{ products(first: 10) { edges { node { sku name } } } }`:       gqlhttp.CodeComplexityLimitExceeded,
	} {
		if r := post(t, api.Handler, map[string]any{"query": q}, "Accept", mediaGR); r.Code() != code {
			t.Errorf("%s: %d %s, want %s", q, r.Status, r.Body, code)
		}
	}
	if r := post(t, api.Handler, map[string]any{"query": `{ products(first: 2) { edges { node { sku } } } }`}, "Accept", mediaGR); r.Status != 200 || len(r.Errors) > 0 {
		t.Fatalf("within the limits: %d %s", r.Status, r.Body)
	}
}

// Every connection (a field with a first argument) must count its page size, or a page of
// 100 would cost as much as a page of 1.
func TestComplexity_EveryPagedFieldCountsFirst(t *testing.T) {
	t.Parallel()
	es := generated.NewExecutableSchema(generated.Config{Complexity: graph.Complexity()})
	ctx := context.Background()
	seen := 0
	for _, typ := range es.Schema().Types {
		for _, f := range typ.Fields {
			if f.Arguments.ForName("first") == nil {
				continue
			}
			seen++
			one, ok1 := es.Complexity(ctx, typ.Name, f.Name, 10, map[string]any{"first": 1})
			hundred, ok100 := es.Complexity(ctx, typ.Name, f.Name, 10, map[string]any{"first": 100})
			if !ok1 || !ok100 || hundred < 50*one {
				t.Errorf("%s.%s: complexity with first 1: %d (%v), with first 100: %d (%v); set it in graph.Complexity", typ.Name, f.Name, one, ok1, hundred, ok100)
			}
		}
	}
	if seen < 2 {
		t.Fatalf("found %d paged fields", seen)
	}
}

func TestCheckDocument(t *testing.T) {
	t.Parallel()
	reports, errs := graph.CheckDocument(productsQuery, gqlhttp.Limits{}, false)
	if len(errs) > 0 || len(reports) != 1 || reports[0].Name != "Products" || reports[0].Type != "query" || reports[0].Complexity <= 20 {
		t.Fatalf("%+v %v", reports, errs)
	}
	for q, want := range map[string]string{
		`{ nope }`:                        "Cannot query field",
		expensiveQuery:                    "complexity",
		`{ __schema { types { name } } }`: "introspection",
	} {
		if _, errs := graph.CheckDocument(q, gqlhttp.Limits{}, false); len(errs) == 0 || !strings.Contains(errs[0].Message, want) {
			t.Errorf("%s: %v, want %q", q, errs, want)
		}
	}
}

// Documents built to make validation work quadratically (it compares same-named fields
// and fragments pairwise) are refused before validation, in milliseconds.
func TestLimits_AdversarialDocumentsRefusedCheaply(t *testing.T) {
	t.Parallel()
	api := newTransportAPI(t)
	const n = 4000
	spreads, defs, inline := make([]string, n), make([]string, n), make([]string, n)
	for i := range n {
		spreads[i] = fmt.Sprintf("...F%d", i)
		defs[i] = fmt.Sprintf("fragment F%d on Product { sku }", i)
		inline[i] = "... on Product { sku }"
	}
	node := func(sel string) string { return "{ products(first: 1) { edges { node { " + sel + " } } } }" }
	// Past the token limit, a document is refused before it is even parsed; within it,
	// the fragment and repetition limits refuse it before validation.
	for name, tc := range map[string]struct{ query, code string }{
		"4000 fragments":        {node(strings.Join(spreads, " ")) + " " + strings.Join(defs, " "), gqlhttp.CodeTooManyTokens},
		"201 fragments":         {node(strings.Join(spreads[:201], " ")) + " " + strings.Join(defs[:201], " "), gqlhttp.CodeComplexityLimitExceeded},
		"one field 4000 times":  {node(strings.Repeat("sku ", n)), gqlhttp.CodeComplexityLimitExceeded},
		"4000 inline fragments": {node(strings.Join(inline, " ")), gqlhttp.CodeTooManyTokens},
		"101 inline fragments":  {node(strings.Join(inline[:101], " ")), gqlhttp.CodeComplexityLimitExceeded},
		"__typename 4000 times": {node(strings.Repeat("__typename ", n)), gqlhttp.CodeComplexityLimitExceeded},
	} {
		start := time.Now()
		r := post(t, api.Handler, map[string]any{"query": tc.query}, "Accept", mediaGR)
		if r.Status != http.StatusBadRequest || r.Code() != tc.code {
			t.Errorf("%s: %d %.300s, want %s", name, r.Status, r.Body, tc.code)
		}
		if d := time.Since(start); d > 500*time.Millisecond {
			t.Errorf("%s took %v to refuse", name, d)
		}
	}
	wantProducts(t, post(t, api.Handler, map[string]any{"query": productsQuery}, "Accept", mediaGR), mediaGR)
}

// The limits hold the whole document to account, not only the operation that runs: every
// operation and every fragment is measured before gqlgen validates any of it (validation
// walks them all). Operation B also holds an unknown field, so a refusal that came after
// validation would say GRAPHQL_VALIDATION_FAILED instead.
func TestLimits_WholeDocumentMeasured_BeforeValidation(t *testing.T) {
	t.Parallel()
	api := newTransportAPI(t)
	const n = 4000
	many := strings.Repeat("__typename ", n)
	for _, tc := range []struct {
		name, query, code string
	}{
		{"unselected operation", "query A { __typename } query B { " + many + "}", gqlhttp.CodeComplexityLimitExceeded},
		{"unselected invalid operation", "query A { __typename } query B { nope " + many + "}", gqlhttp.CodeComplexityLimitExceeded},
		{"unused fragment", "query A { __typename } fragment F on Query { nope " + many + "}", gqlhttp.CodeComplexityLimitExceeded},
		{"deep unselected operation", "query A { __typename } query B " + nested(50), gqlhttp.CodeQueryTooDeep},
		{"aliases in an unselected operation", "query A { __typename } query B { " + repeatAliases(500) + "}", gqlhttp.CodeTooManyAliases},
	} {
		r := post(t, api.Handler, map[string]any{"query": tc.query, "operationName": "A"}, "Accept", mediaGR)
		if r.Status != http.StatusBadRequest || r.Code() != tc.code || r.HasData {
			t.Errorf("%s: %d %.300s, want 400 %s", tc.name, r.Status, r.Body, tc.code)
		}
	}
	// A document of several small operations still runs the one named.
	r := post(t, api.Handler, map[string]any{"query": "query A { __typename } query B { products(first: 1) { edges { cursor } } }", "operationName": "A"}, "Accept", mediaGR)
	if r.Status != http.StatusOK || string(r.Data) != `{"__typename":"Query"}` {
		t.Fatalf("two small operations: %d %s", r.Status, r.Body)
	}
}

// A document is refused on its token count before it is parsed: this one is not even
// valid GraphQL (it never closes), so a refusal after parsing would be a parse error.
func TestLimits_TokenLimitBeforeParsing(t *testing.T) {
	t.Parallel()
	api := newTransportAPI(t)
	// Just under the 1 MiB body limit: half a million tokens.
	doc := "{ " + strings.Repeat("a ", (1<<20-200)/2)
	r := post(t, api.Handler, map[string]any{"query": doc}, "Accept", mediaGR)
	if r.Status != http.StatusBadRequest || r.Code() != gqlhttp.CodeTooManyTokens || r.Errors[0].Extensions["limit"] != float64(gqlhttp.DefaultMaxTokens) {
		t.Fatalf("1 MiB of tokens: %d %.300s", r.Status, r.Body)
	}
	strict := newTransportAPI(t, testutil.APIOptions{HTTP: gqlhttp.Options{Limits: gqlhttp.Limits{MaxTokens: 20}}})
	if r := post(t, strict.Handler, map[string]any{"query": productsQuery}, "Accept", mediaGR); r.Code() != gqlhttp.CodeTooManyTokens {
		t.Fatalf("MaxTokens 20: %d %s", r.Status, r.Body)
	}
	wantProducts(t, post(t, api.Handler, map[string]any{"query": productsQuery}, "Accept", mediaGR), mediaGR)
}

// Introspection fields nest as deep as a client asks (__Type.ofType is a __Type): the depth
// limit holds for them too, with room for the introspection query tools send.
func TestLimits_DepthThroughIntrospection(t *testing.T) {
	t.Parallel()
	api := newTransportAPI(t) // introspection on, as in development
	deep := "{ __schema { types { " + strings.Repeat("ofType { ", 48) + "name" + strings.Repeat(" }", 48) + " } } }"
	r := post(t, api.Handler, map[string]any{"query": deep}, "Accept", mediaGR)
	if r.Status != http.StatusBadRequest || r.Code() != gqlhttp.CodeQueryTooDeep || r.HasData {
		t.Fatalf("50 levels of introspection: %d %.300s", r.Status, r.Body)
	}
	if r := post(t, api.Handler, map[string]any{"query": "{ __type(name: \"Product\") { " + strings.Repeat("ofType { ", 40) + "name" + strings.Repeat(" }", 40) + " } }"}, "Accept", mediaGR); r.Code() != gqlhttp.CodeQueryTooDeep {
		t.Fatalf("40 levels under __type: %d %.300s", r.Status, r.Body)
	}
}
