package telemetry_test

// These tests swap the process-wide tracer provider (telemetry.Record), so none runs in
// parallel.

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/99designs/gqlgen/graphql"
	"github.com/99designs/gqlgen/graphql/handler"
	"github.com/99designs/gqlgen/graphql/handler/transport"
	"github.com/vektah/gqlparser/v2"
	"github.com/vektah/gqlparser/v2/ast"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/checkout-backend/checkout/internal/platform/telemetry"
	"github.com/checkout-backend/checkout/internal/platform/telemetry/telemetrytest"
)

func byName(t *testing.T, spans tracetest.SpanStubs, name string) tracetest.SpanStub {
	t.Helper()
	for _, s := range spans {
		if s.Name == name {
			return s
		}
	}
	var names []string
	for _, s := range spans {
		names = append(names, s.Name)
	}
	t.Fatalf("no span %q among %q", name, names)
	return tracetest.SpanStub{}
}

func TestMap_ExtractedContextContinuesTheTrace(t *testing.T) {
	exp := telemetrytest.Record(t)
	ctx, span := telemetry.Tracer().Start(context.Background(), "resolver")
	headers := map[string]string{"x-other": "kept"}
	telemetry.InjectMap(ctx, headers)
	span.End()
	if !strings.HasPrefix(headers["traceparent"], "00-"+span.SpanContext().TraceID().String()) {
		t.Fatalf("headers %v lack the traceparent of %s", headers, span.SpanContext().TraceID())
	}

	// The other side: a relay, hours later, from a fresh context.
	other := telemetry.ExtractMap(context.Background(), headers)
	_, child := telemetry.Tracer().Start(other, "relay")
	child.End()
	got := byName(t, exp.GetSpans(), "relay")
	if got.SpanContext.TraceID() != span.SpanContext().TraceID() {
		t.Fatalf("trace %s, want %s", got.SpanContext.TraceID(), span.SpanContext().TraceID())
	}
	if got.Parent.SpanID() != span.SpanContext().SpanID() {
		t.Fatalf("parent %s, want %s", got.Parent.SpanID(), span.SpanContext().SpanID())
	}
	if telemetry.TraceID(other) != span.SpanContext().TraceID().String() {
		t.Fatal("TraceID of the extracted context differs")
	}
}

// graphQLServer is a gqlgen server over a mock schema whose one resolver, checkout,
// writes an outbox row's headers from its context.
func graphQLServer(outbox map[string]string) http.Handler {
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
	srv.Use(telemetry.GraphQL{})
	return srv
}

func TestHTTPAndGraphQL_RequestResolverAndOutboxShareTheCallersTrace(t *testing.T) {
	exp := telemetrytest.Record(t)
	outbox := map[string]string{}
	srv := httptest.NewServer(telemetry.Handler(graphQLServer(outbox)))
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
	httpSpan, op, field := byName(t, spans, "POST /graphql"), byName(t, spans, "graphql mutation Place"), byName(t, spans, "Mutation.checkout")
	for _, s := range []tracetest.SpanStub{httpSpan, op, field} {
		if s.SpanContext.TraceID().String() != callerTrace {
			t.Errorf("span %q in trace %s; want the caller's %s", s.Name, s.SpanContext.TraceID(), callerTrace)
		}
	}
	if op.Parent.SpanID() != httpSpan.SpanContext.SpanID() || field.Parent.SpanID() != op.SpanContext.SpanID() {
		t.Error("spans are not chained http -> operation -> resolver")
	}
	if want := "00-" + callerTrace + "-" + field.SpanContext.SpanID().String() + "-01"; outbox["traceparent"] != want {
		t.Errorf("outbox traceparent %q; want %q (the resolver's span)", outbox["traceparent"], want)
	}

	// Probes are not traced.
	exp.Reset()
	http.Get(srv.URL + "/healthz")
	if n := len(exp.GetSpans()); n != 0 {
		t.Errorf("/healthz made %d spans", n)
	}
}

func TestLogHandler_AddsTraceIDOnlyWhenTracing(t *testing.T) {
	var buf bytes.Buffer
	logger := slog.New(telemetry.LogHandler(slog.NewJSONHandler(&buf, nil)))
	sc := trace.NewSpanContext(trace.SpanContextConfig{TraceID: trace.TraceID{1}, SpanID: trace.SpanID{2}, TraceFlags: trace.FlagsSampled})
	ctx := trace.ContextWithSpanContext(context.Background(), sc)

	logger.InfoContext(ctx, "off")
	if strings.Contains(buf.String(), "traceId") {
		t.Fatalf("traceId logged with tracing off: %s", buf.String())
	}
	telemetrytest.Record(t)
	buf.Reset()
	logger.With("k", "v").InfoContext(ctx, "on")
	if !strings.Contains(buf.String(), `"traceId":"`+sc.TraceID().String()+`"`) {
		t.Fatalf("no traceId: %s", buf.String())
	}
}

func TestSetup_Exporters(t *testing.T) {
	ctx := context.Background()
	t.Run("NoneByDefault", func(t *testing.T) {
		t.Setenv("OTEL_TRACES_EXPORTER", "")
		shutdown, err := telemetry.Setup(ctx, "checkout")
		if err != nil {
			t.Fatal(err)
		}
		_, span := telemetry.Tracer().Start(ctx, "x")
		if span.IsRecording() {
			t.Error("spans are recorded with no exporter configured")
		}
		span.End()
		shutdown(ctx)
	})
	t.Run("Unknown_Refused", func(t *testing.T) {
		t.Setenv("OTEL_TRACES_EXPORTER", "zipkin")
		if _, err := telemetry.Setup(ctx, "checkout"); err == nil {
			t.Fatal("an unknown exporter was accepted")
		}
	})
	t.Run("Console", func(t *testing.T) {
		t.Setenv("OTEL_TRACES_EXPORTER", "console")
		var buf bytes.Buffer
		prev := telemetry.Console
		telemetry.Console = &buf
		defer func() { telemetry.Console = prev }()
		shutdown, err := telemetry.Setup(ctx, "checkout-test")
		if err != nil {
			t.Fatal(err)
		}
		_, span := telemetry.Tracer().Start(ctx, "console-span")
		span.End()
		if err := shutdown(ctx); err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(buf.String(), "console-span") || !strings.Contains(buf.String(), "checkout-test") {
			t.Fatalf("console output lacks the span or service name:\n%s", buf.String())
		}
	})
	t.Run("OTLPFromStandardEnv", func(t *testing.T) {
		var posts atomic.Int32
		collector := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path == "/v1/traces" && r.Header.Get("X-Tenant") == "shop" {
				posts.Add(1)
			}
			w.Header().Set("Content-Type", "application/x-protobuf")
		}))
		defer collector.Close()
		t.Setenv("OTEL_TRACES_EXPORTER", "otlp")
		t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", collector.URL)
		t.Setenv("OTEL_EXPORTER_OTLP_HEADERS", "X-Tenant=shop")
		shutdown, err := telemetry.Setup(ctx, "checkout")
		if err != nil {
			t.Fatal(err)
		}
		_, span := telemetry.Tracer().Start(ctx, "otlp-span")
		span.End()
		sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		if err := shutdown(sctx); err != nil {
			t.Fatal(err)
		}
		if posts.Load() == 0 {
			t.Fatal("no spans reached the OTLP endpoint named by OTEL_EXPORTER_OTLP_ENDPOINT")
		}
	})
	t.Run("GRPCProtocol_Refused", func(t *testing.T) {
		t.Setenv("OTEL_TRACES_EXPORTER", "otlp")
		t.Setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")
		if _, err := telemetry.Setup(ctx, "checkout"); err == nil {
			t.Fatal("grpc accepted")
		}
	})
}
