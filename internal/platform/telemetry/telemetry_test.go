package telemetry_test

// These tests swap the process-wide tracer provider (telemetry.Record), so none runs in
// parallel.

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

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
		shutdown, err := telemetry.Setup(ctx, telemetry.Options{ServiceName: "checkout"})
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
		if _, err := telemetry.Setup(ctx, telemetry.Options{ServiceName: "checkout", Exporter: "zipkin"}); err == nil {
			t.Fatal("an unknown exporter was accepted")
		}
	})
	t.Run("Console", func(t *testing.T) {
		var buf bytes.Buffer
		prev := telemetry.Console
		telemetry.Console = &buf
		defer func() { telemetry.Console = prev }()
		shutdown, err := telemetry.Setup(ctx, telemetry.Options{ServiceName: "checkout-test", Exporter: "console"})
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
		t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", collector.URL)
		t.Setenv("OTEL_EXPORTER_OTLP_HEADERS", "X-Tenant=shop")
		shutdown, err := telemetry.Setup(ctx, telemetry.Options{ServiceName: "checkout", Exporter: "otlp"})
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
	t.Run("Disabled", func(t *testing.T) {
		shutdown, err := telemetry.Setup(ctx, telemetry.Options{ServiceName: "checkout", Exporter: "console", Disabled: true})
		if err != nil {
			t.Fatal(err)
		}
		_, span := telemetry.Tracer().Start(ctx, "x")
		if span.IsRecording() {
			t.Error("spans are recorded with OTEL_SDK_DISABLED")
		}
		span.End()
		shutdown(ctx)
	})
}

// TestL9_Handler_TrustsTraceHeadersOnlyFromCertificatePeers: a caller whose connection
// presented a verified client certificate continues its trace; any other starts a new one
// linked to it; nobody's baggage reaches the request's context.
func TestL9_Handler_TrustsTraceHeadersOnlyFromCertificatePeers(t *testing.T) {
	exp := telemetrytest.Record(t)
	const caller = "4bf92f3577b34da6a3ce929d0e0e4736"
	var got []map[string]string
	h := telemetry.Handler(http.HandlerFunc(func(_ http.ResponseWriter, r *http.Request) {
		m := map[string]string{}
		telemetry.InjectMap(r.Context(), m)
		got = append(got, m)
	}))
	for _, peer := range []bool{false, true} {
		r := httptest.NewRequest(http.MethodPost, "/graphql", nil)
		r.Header.Set("traceparent", "00-"+caller+"-00f067aa0ba902b7-01")
		r.Header.Set("tracestate", "vendor=x")
		r.Header.Set("baggage", "user=alice")
		if peer {
			r.TLS = &tls.ConnectionState{VerifiedChains: [][]*x509.Certificate{{{}}}}
		}
		h.ServeHTTP(httptest.NewRecorder(), r)
		if r.Header.Get("baggage") == "" || r.Header.Get("tracestate") == "" {
			t.Fatal("the caller's request headers were changed")
		}
	}
	spans := exp.GetSpans()
	if len(got) != 2 || len(spans) != 2 {
		t.Fatalf("headers %v, %d spans", got, len(spans))
	}
	if strings.Contains(got[0]["traceparent"], caller) || got[0]["tracestate"] != "" || got[0]["baggage"] != "" {
		t.Errorf("a public caller's trace headers went on: %v", got[0])
	}
	if len(spans[0].Links) != 1 || spans[0].Links[0].SpanContext.TraceID().String() != caller {
		t.Errorf("the public caller's span is not linked: %v", spans[0].Links)
	}
	if !strings.Contains(got[1]["traceparent"], caller) || got[1]["tracestate"] != "vendor=x" || got[1]["baggage"] != "" {
		t.Errorf("a certificate peer's trace did not go on, or its baggage did: %v", got[1])
	}
}
