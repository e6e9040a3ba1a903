package gqlhttp_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/99designs/gqlgen/graphql"
	"github.com/99designs/gqlgen/graphql/handler"
	"github.com/99designs/gqlgen/graphql/handler/transport"
	"github.com/vektah/gqlparser/v2"
	"github.com/vektah/gqlparser/v2/ast"
	"github.com/vektah/gqlparser/v2/parser"

	"github.com/checkout-backend/checkout/graph/gqlhttp"
)

// A failure is remembered only when the document's text decides it: parse and
// validation errors, not a variable's value or an operation name another request may
// get right. Errors past MaxErrors are cut, with TOO_MANY_ERRORS last.
func TestValidation_RemembersOnlyWhatTheTextDecides(t *testing.T) {
	t.Parallel()
	schema := gqlparser.MustLoadSchema(&ast.Source{Input: `type Query { name(x: Int): String! }`})
	srv := handler.New(&graphql.ExecutableSchemaMock{
		SchemaFunc:     func() *ast.Schema { return schema },
		ComplexityFunc: func(context.Context, string, string, int, map[string]any) (int, bool) { return 1, true },
		ExecFunc: func(ctx context.Context) graphql.ResponseHandler {
			return graphql.OneShot(&graphql.Response{Data: []byte(`{"name":"x"}`)})
		},
	})
	v := gqlhttp.NewValidation(gqlhttp.ValidationOptions{MaxErrors: 3})
	srv.SetValidationRulesFn(v.Rules)
	srv.AddTransport(v.Transport(transport.POST{}))
	send := func(body string) (codes []string) {
		req := httptest.NewRequest(http.MethodPost, "/graphql", strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		rec := httptest.NewRecorder()
		srv.ServeHTTP(rec, req)
		var r struct {
			Errors []struct{ Extensions map[string]any }
		}
		json.Unmarshal(rec.Body.Bytes(), &r)
		for _, e := range r.Errors {
			c, _ := e.Extensions["code"].(string)
			codes = append(codes, c)
		}
		return codes
	}
	for _, tc := range []struct {
		name, body string
		codes      int
		remembered bool
	}{
		{"a validation error", `{"query":"{ nope }"}`, 1, true},
		{"a parse error", `{"query":"{ name"}`, 1, true},
		{"errors past the cap", fmt.Sprintf(`{"query":"{ %s }"}`, strings.Repeat("nope ", 10)), 4, true},
		{"a missing variable", `{"query":"query($x: Int!) { name(x: $x) }"}`, 1, false},
		{"an unknown operation name", `{"query":"query A { name }","operationName":"B"}`, 1, false},
	} {
		for i := range 2 {
			validations, hits := v.Validations(), v.FailedHits()
			codes := send(tc.body)
			if len(codes) != tc.codes {
				t.Fatalf("%s, try %d: codes %v", tc.name, i, codes)
			}
			if tc.codes == 4 && codes[3] != gqlhttp.CodeTooManyErrors {
				t.Fatalf("%s: codes %v", tc.name, codes)
			}
			remembered := v.FailedHits() == hits+1 && v.Validations() == validations
			if i == 1 && remembered != tc.remembered {
				t.Fatalf("%s: answered from the failed documents %v, want %v", tc.name, remembered, tc.remembered)
			}
		}
	}
}

// Conflicts counts the pairs of fields under one response name that differ in field or
// arguments, over the whole document; aliases and equal arguments are no conflict.
func TestMeasureDocument_Conflicts(t *testing.T) {
	t.Parallel()
	for doc, want := range map[string]int{
		`{ a: product(sku: "1") { sku } b: product(sku: "2") { sku } }`:                                   0,
		`{ product(sku: "1") { sku } product(sku: "1") { name } }`:                                        0,
		`{ product(sku: "1") { sku } product(sku: "2") { sku } product(sku: "3") { sku } }`:               3,
		`{ x: name x: sku } fragment F on Query { x: sku }`:                                               2,
		`query Q($s: ID!) { product(sku: $s) { sku } } fragment F on Query { product(sku: "a") { sku } }`: 1,
	} {
		parsed, err := parser.ParseQuery(&ast.Source{Input: doc})
		if err != nil {
			t.Fatal(err)
		}
		if got := gqlhttp.MeasureDocument(parsed).Conflicts; got != want {
			t.Errorf("%s: %d conflicts, want %d", doc, got, want)
		}
	}
}
