package gqlhttp_test

import (
	"context"
	"crypto/sha256"
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

	"github.com/checkout-backend/checkout/graph/gqlhttp"
	"github.com/checkout-backend/checkout/internal/platform/metrics"
	"github.com/checkout-backend/checkout/internal/platform/metrics/metricstest"
)

// measuredServer is a gqlgen server over a mock schema: checkout answers a userError,
// fail answers a GraphQL error, name answers data. manifest lists its trusted documents.
func measuredServer(m *metrics.Metrics, manifest *gqlhttp.Manifest) http.Handler {
	schema := gqlparser.MustLoadSchema(&ast.Source{Input: `
		type Query { name: String! fail: String }
		type UserError { message: String! }
		type Payload { userErrors: [UserError!]! }
		type Mutation { checkout: Payload! }`})
	srv := handler.New(&graphql.ExecutableSchemaMock{
		SchemaFunc: func() *ast.Schema { return schema },
		ComplexityFunc: func(context.Context, string, string, int, map[string]any) (int, bool) {
			return 1, true
		},
		ExecFunc: func(ctx context.Context) graphql.ResponseHandler {
			oc := graphql.GetOperationContext(ctx)
			return graphql.OneShot(func() *graphql.Response {
				switch {
				case oc.Operation.Operation == ast.Mutation:
					return &graphql.Response{Data: []byte(`{"checkout":{"userErrors":[{"message":"out of stock"}]}}`)}
				case strings.Contains(oc.RawQuery, "fail"):
					return graphql.ErrorResponse(ctx, "boom")
				}
				return &graphql.Response{Data: []byte(`{"name":"x"}`)}
			}())
		},
	})
	srv.AddTransport(transport.POST{})
	srv.Use(gqlhttp.Metrics(m, manifest))
	return srv
}

func TestMetrics_GraphQLExtension(t *testing.T) {
	t.Parallel()
	m := metrics.New(metrics.Options{})
	h := measuredServer(m, nil)
	for _, q := range []string{
		`{"query":"mutation { checkout { userErrors { message } } }"}`,
		`{"query":"mutation Checkout { checkout { userErrors { message } } }","operationName":"Checkout"}`,
		`{"query":"query Names { name }"}`,
		`{"query":"{ fail }"}`,
		`{"query":"{ nope }"}`,
		`not json`,
	} {
		req := httptest.NewRequest(http.MethodPost, "/graphql", strings.NewReader(q))
		req.Header.Set("Content-Type", "application/json")
		h.ServeHTTP(httptest.NewRecorder(), req)
	}
	metricstest.WantLines(t, metricstest.Scrape(t, m),
		`graphql_request_duration_seconds_count{operation="checkout",outcome="user_error"} 2`,
		`graphql_request_duration_seconds_count{operation="name",outcome="ok"} 1`,
		`graphql_request_duration_seconds_count{operation="fail",outcome="error"} 1`,
		`graphql_request_duration_seconds_count{operation="anonymous",outcome="error"} 2`,
	)
}

// TestL6_OperationLabelOnlyTakesKnownNames (L6): a client named its operations as it
// pleased and filled the 200 slots of the operation label, so the service's own
// operations were counted as "other". A name labels an operation only when its document is
// a trusted document of the manifest; any other operation is labelled by its first root
// field, a name of the schema.
func TestL6_OperationLabelOnlyTakesKnownNames(t *testing.T) {
	t.Parallel()
	const trusted = "query Names { name }"
	manifest, err := gqlhttp.ParseManifest([]byte(`{"` + fmt.Sprintf("%x", sha256.Sum256([]byte(trusted))) + `": "` + trusted + `"}`))
	if err != nil {
		t.Fatal(err)
	}
	m := metrics.New(metrics.Options{})
	h := measuredServer(m, manifest)
	send := func(body string) {
		req := httptest.NewRequest(http.MethodPost, "/graphql", strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		h.ServeHTTP(httptest.NewRecorder(), req)
	}
	for i := range 250 {
		send(fmt.Sprintf(`{"query":"query Junk%d { name }"}`, i))
	}
	send(`{"query":"` + trusted + `"}`)
	send(`{"query":"query Names { name }   "}`) // not the trusted text
	scrape := metricstest.Scrape(t, m)
	metricstest.WantLines(t, scrape,
		`graphql_request_duration_seconds_count{operation="name",outcome="ok"} 251`,
		`graphql_request_duration_seconds_count{operation="Names",outcome="ok"} 1`,
	)
	if strings.Contains(scrape, "Junk") || strings.Contains(scrape, `operation="other"`) {
		t.Fatalf("client-chosen names became labels:\n%s", scrape)
	}
}
