package gqlhttp_test

import (
	"context"
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
// fail answers a GraphQL error, name answers data.
func measuredServer(m *metrics.Metrics) http.Handler {
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
	srv.Use(gqlhttp.Metrics(m))
	return srv
}

func TestMetrics_GraphQLExtension(t *testing.T) {
	t.Parallel()
	m := metrics.New(metrics.Options{})
	h := measuredServer(m)
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
		`graphql_request_duration_seconds_count{operation="checkout",outcome="user_error"} 1`,
		`graphql_request_duration_seconds_count{operation="Checkout",outcome="user_error"} 1`,
		`graphql_request_duration_seconds_count{operation="Names",outcome="ok"} 1`,
		`graphql_request_duration_seconds_count{operation="fail",outcome="error"} 1`,
		`graphql_request_duration_seconds_count{operation="anonymous",outcome="error"} 2`,
	)
}
