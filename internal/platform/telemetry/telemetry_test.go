package telemetry_test

// These tests swap the process-wide tracer provider (telemetry.Record), so none runs in
// parallel.

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/99designs/gqlgen/graphql"
	"github.com/99designs/gqlgen/graphql/handler"
	"github.com/99designs/gqlgen/graphql/handler/transport"
	"github.com/jackc/pgx/v5/stdlib"
	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/uptrace/bun"
	"github.com/uptrace/bun/dialect/pgdialect"
	"github.com/vektah/gqlparser/v2"
	"github.com/vektah/gqlparser/v2/ast"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/checkout-backend/checkout/internal/event"
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

func TestAMQP_PublishAndConsumeSpansShareTheTrace(t *testing.T) {
	exp := telemetrytest.Record(t)
	ctx, root := telemetry.Tracer().Start(context.Background(), "checkout")
	row := map[string]string{}
	telemetry.InjectMap(ctx, row) // as outbox.Insert does through the global propagator
	root.End()

	// The relay restamps the event's headers with its producer span; the broker copies
	// them onto the message.
	env := event.Envelope{ID: "e1", Type: "order.placed", AggregateID: "o1", Headers: row}
	pub := telemetry.StartPublish(context.Background(), &env)
	telemetry.End(pub, nil)
	if env.Headers["traceparent"] == row["traceparent"] {
		t.Fatal("the publish span was not stamped on the event's headers")
	}

	// Over the wire header values may come back as []byte.
	wire := amqp.Table{}
	for k, v := range env.Headers {
		wire[k] = []byte(v)
	}
	hctx, consume := telemetry.StartConsume(context.Background(), "payment", amqp.Delivery{Type: env.Type, MessageId: env.ID, Headers: wire})
	_, charge := telemetry.Tracer().Start(hctx, "charge")
	charge.End()
	telemetry.End(consume, errors.New("provider down"))

	spans := exp.GetSpans()
	p, c, ch := byName(t, spans, "publish order.placed"), byName(t, spans, "process order.placed"), byName(t, spans, "charge")
	for _, s := range []tracetest.SpanStub{p, c, ch} {
		if s.SpanContext.TraceID() != root.SpanContext().TraceID() {
			t.Errorf("span %q in trace %s, want %s", s.Name, s.SpanContext.TraceID(), root.SpanContext().TraceID())
		}
	}
	if p.Parent.SpanID() != root.SpanContext().SpanID() || c.Parent.SpanID() != p.SpanContext.SpanID() || ch.Parent.SpanID() != c.SpanContext.SpanID() {
		t.Error("spans are not chained checkout -> publish -> process -> charge")
	}
	if p.SpanKind != trace.SpanKindProducer || c.SpanKind != trace.SpanKindConsumer {
		t.Errorf("kinds %v, %v; want producer, consumer", p.SpanKind, c.SpanKind)
	}
	if c.Status.Description != "provider down" {
		t.Errorf("consume span status %+v; want the handler's error", c.Status)
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

func TestQueryHook_SQLSpanIsAChildAndHoldsNoBoundValues(t *testing.T) {
	exp := telemetrytest.Record(t)
	url := os.Getenv("TEST_DATABASE_URL")
	if url == "" {
		url = "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"
	}
	sqldb, err := sql.Open("pgx", url)
	if err != nil {
		t.Fatal(err)
	}
	db := bun.NewDB(sqldb, pgdialect.New())
	defer db.Close()
	db.AddQueryHook(telemetry.QueryHook("checkout"))
	ctx, parent := telemetry.Tracer().Start(context.Background(), "resolver")
	var got string
	const secret = "tok_visa_do_not_record"
	if err := db.NewRaw("SELECT ?::text", secret).Scan(ctx, &got); err != nil {
		t.Fatalf("PostgreSQL at TEST_DATABASE_URL (%s): %v", url, err)
	}
	parent.End()
	var sqlSpan *tracetest.SpanStub
	for _, s := range exp.GetSpans() {
		if s.Name == "SELECT" {
			sqlSpan = &s
		}
	}
	if sqlSpan == nil {
		t.Fatalf("no SELECT span among %d", len(exp.GetSpans()))
	}
	if sqlSpan.Parent.SpanID() != parent.SpanContext().SpanID() || sqlSpan.SpanKind != trace.SpanKindClient {
		t.Error("the SQL span is not a client child of the caller's span")
	}
	var stmt string
	for _, a := range sqlSpan.Attributes {
		if a.Key == attribute.Key("db.statement") {
			stmt = a.Value.AsString()
		}
		if strings.Contains(a.Value.Emit(), secret) {
			t.Errorf("attribute %s holds the bound value: %s", a.Key, a.Value.Emit())
		}
	}
	if stmt != "SELECT ?::text" {
		t.Errorf("db.statement %q; want the placeholder form", stmt)
	}
}

var _ = stdlib.GetDefaultDriver // registers the pgx driver

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

type recordingPublisher struct{ got []event.Envelope }

func (r *recordingPublisher) Publish(_ context.Context, envs []event.Envelope) error {
	r.got = append(r.got, envs...)
	return nil
}

func TestTracePublisherAndHandler_RelayToWorkerStayInTheTrace(t *testing.T) {
	exp := telemetrytest.Record(t)
	ctx, root := telemetry.Tracer().Start(context.Background(), "checkout")
	env := event.Envelope{ID: "e1", Type: event.OrderPlaced, Headers: map[string]string{}}
	telemetry.InjectMap(ctx, env.Headers) // as outbox.Insert does through the global propagator
	root.End()

	var pub recordingPublisher
	if err := telemetry.TracePublisher(&pub).Publish(context.Background(), []event.Envelope{env}); err != nil {
		t.Fatal(err)
	}
	if env.Headers["traceparent"] == pub.got[0].Headers["traceparent"] {
		t.Fatal("the published event does not carry the publish span")
	}
	// A consumer that gets the envelope alone (the feed) continues from its headers.
	var handlerTrace string
	h := telemetry.TraceHandler("feed", func(ctx context.Context, env event.Envelope) error {
		handlerTrace = telemetry.TraceID(ctx)
		return nil
	})
	if err := h(context.Background(), pub.got[0]); err != nil {
		t.Fatal(err)
	}
	spans := exp.GetSpans()
	p, c := byName(t, spans, "publish order.placed"), byName(t, spans, "process order.placed")
	if handlerTrace != root.SpanContext().TraceID().String() || c.Parent.SpanID() != p.SpanContext.SpanID() || p.Parent.SpanID() != root.SpanContext().SpanID() {
		t.Errorf("not chained checkout -> publish -> process in one trace (handler saw %s)", handlerTrace)
	}
}
