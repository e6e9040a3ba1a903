package gqlhttp_test

// Not parallel: these tests swap the process-wide tracer provider (telemetrytest.Record).

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/99designs/gqlgen/graphql"
	"github.com/99designs/gqlgen/graphql/handler"
	"github.com/99designs/gqlgen/graphql/handler/transport"
	"github.com/vektah/gqlparser/v2"
	"github.com/vektah/gqlparser/v2/ast"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/checkout-backend/checkout/graph/gqlhttp"
	"github.com/checkout-backend/checkout/internal/platform/telemetry"
	"github.com/checkout-backend/checkout/internal/platform/telemetry/telemetrytest"
)

func spanNamed(t *testing.T, spans tracetest.SpanStubs, name string) tracetest.SpanStub {
	t.Helper()
	var names []string
	for _, s := range spans {
		if s.Name == name {
			return s
		}
		names = append(names, s.Name)
	}
	t.Fatalf("no span %q among %q", name, names)
	return tracetest.SpanStub{}
}

// tracedServer is a gqlgen server over a mock schema whose one resolver, checkout,
// writes an outbox row's headers from its context.
func tracedServer(outbox map[string]string) http.Handler {
	schema := gqlparser.MustLoadSchema(&ast.Source{Input: `
		type Query { name: String! }
		type Mutation { checkout: String! }`})
	srv := handler.New(&graphql.ExecutableSchemaMock{
		SchemaFunc: func() *ast.Schema { return schema },
		ComplexityFunc: func(context.Context, string, string, int, map[string]any) (int, bool) {
			return 1, true
		},
		ExecFunc: func(ctx context.Context) graphql.ResponseHandler {
			return func(ctx context.Context) *graphql.Response {
				ctx = graphql.WithFieldContext(ctx, &graphql.FieldContext{Object: "Mutation", IsResolver: true,
					Field: graphql.CollectedField{Field: &ast.Field{Name: "checkout", Alias: "checkout",
						Definition: schema.Mutation.Fields.ForName("checkout")}}})
				res, err := graphql.GetOperationContext(ctx).ResolverMiddleware(ctx, func(ctx context.Context) (any, error) {
					telemetry.InjectMap(ctx, outbox)
					return "ok", nil
				})
				if err != nil {
					return graphql.ErrorResponse(ctx, "%v", err)
				}
				return &graphql.Response{Data: []byte(`{"checkout":"` + res.(string) + `"}`)}
			}
		},
	})
	srv.AddTransport(transport.POST{})
	srv.Use(gqlhttp.Tracing{})
	return srv
}

func TestHTTPAndGraphQL_RequestResolverAndOutboxShareOneTrace_LinkedToThePublicCallers(t *testing.T) {
	exp := telemetrytest.Record(t)
	outbox := map[string]string{}
	srv := httptest.NewServer(telemetry.Handler(tracedServer(outbox)))
	defer srv.Close()

	const callerTrace = "4bf92f3577b34da6a3ce929d0e0e4736"
	req, _ := http.NewRequest(http.MethodPost, srv.URL+"/graphql", strings.NewReader(`{"query":"mutation Place { checkout }"}`))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("traceparent", "00-"+callerTrace+"-00f067aa0ba902b7-01")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(body), `"ok"`) {
		t.Fatalf("response %s", body)
	}
	spans := exp.GetSpans()
	httpSpan, op, field := spanNamed(t, spans, "POST /graphql"), spanNamed(t, spans, "graphql mutation Place"), spanNamed(t, spans, "Mutation.checkout")
	// A public caller starts a new trace, linked to its span (telemetry.Handler).
	trace := httpSpan.SpanContext.TraceID().String()
	if trace == callerTrace || len(httpSpan.Links) != 1 || httpSpan.Links[0].SpanContext.TraceID().String() != callerTrace {
		t.Errorf("the request's span is in trace %s with links %v; want a new trace linked to the caller's %s", trace, httpSpan.Links, callerTrace)
	}
	for _, s := range []tracetest.SpanStub{httpSpan, op, field} {
		if s.SpanContext.TraceID().String() != trace {
			t.Errorf("span %q in trace %s; want the request's %s", s.Name, s.SpanContext.TraceID(), trace)
		}
	}
	if op.Parent.SpanID() != httpSpan.SpanContext.SpanID() || field.Parent.SpanID() != op.SpanContext.SpanID() {
		t.Error("spans are not chained http -> operation -> resolver")
	}
	if want := "00-" + trace + "-" + field.SpanContext.SpanID().String() + "-01"; outbox["traceparent"] != want {
		t.Errorf("outbox traceparent %q; want %q (the resolver's span)", outbox["traceparent"], want)
	}

	// Probes are not traced.
	exp.Reset()
	http.Get(srv.URL + "/healthz")
	if n := len(exp.GetSpans()); n != 0 {
		t.Errorf("/healthz made %d spans", n)
	}
}
