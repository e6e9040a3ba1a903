// Package telemetry sets up OpenTelemetry tracing and the pieces every boundary shares:
// the W3C propagator, map carriers for trace context that travels in an event's
// headers, the HTTP server span (otelhttp) and a log handler that adds trace ids.
// Tracing of each adapter lives beside it (SQL: store.TraceHook; RabbitMQ: broker;
// GraphQL: graph/gqlhttp.Tracing), so one trace follows an order from the request to
// the payment and back to subscribers.
//
// Tracing is off unless OTEL_TRACES_EXPORTER says otlp (configured by the standard
// OTEL_EXPORTER_OTLP_* variables) or console. Trace context is propagated either way.
package telemetry

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"sync/atomic"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/exporters/stdout/stdouttrace"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
)

// TracerName is the instrumentation scope of the service's own spans.
const TracerName = "github.com/checkout-backend/checkout"

// Tracer returns the service's tracer from the current global provider (looked up at
// each call, so tests can swap providers).
func Tracer() trace.Tracer { return otel.Tracer(TracerName) }

// Propagator is the W3C trace-context and baggage propagator every boundary uses.
var Propagator propagation.TextMapPropagator = propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{})

// enabled says spans are being recorded (a provider is installed); LogHandler adds
// trace ids only then.
var enabled atomic.Bool

// Install makes tp the process's tracer provider (with Propagator) and marks tracing on;
// restore puts back what was there. telemetrytest.Record uses it.
func Install(tp trace.TracerProvider) (restore func()) {
	prevTP, prevProp, prevOn := otel.GetTracerProvider(), otel.GetTextMapPropagator(), enabled.Load()
	otel.SetTracerProvider(tp)
	otel.SetTextMapPropagator(Propagator)
	enabled.Store(true)
	return func() {
		otel.SetTracerProvider(prevTP)
		otel.SetTextMapPropagator(prevProp)
		enabled.Store(prevOn)
	}
}

// Console is where OTEL_TRACES_EXPORTER=console writes spans: standard error, because
// standard output holds only JSON log lines.
var Console io.Writer = os.Stderr

// Options are what Setup needs from the configuration (config.Telemetry).
type Options struct {
	// ServiceName names the resource; OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES,
	// read by the SDK, override it.
	ServiceName string
	// Exporter is none (or empty: no spans recorded), otlp (OTLP over HTTP/protobuf,
	// configured by the SDK's OTEL_EXPORTER_OTLP_* variables) or console/stdout (pretty
	// JSON spans on Console).
	Exporter string
	// Disabled turns tracing off whatever the exporter (OTEL_SDK_DISABLED).
	Disabled bool
}

// Setup installs the propagator and, as opt.Exporter asks, a tracer provider. Sampling
// follows OTEL_TRACES_SAMPLER(_ARG), read by the SDK (default: parent-based always-on).
// shutdown flushes buffered spans.
func Setup(ctx context.Context, opt Options) (shutdown func(context.Context) error, err error) {
	otel.SetTextMapPropagator(Propagator)
	otel.SetErrorHandler(otel.ErrorHandlerFunc(func(err error) {
		slog.Warn("opentelemetry", "error", err)
	}))
	enabled.Store(false)
	noop := func(context.Context) error { return nil }
	if opt.Disabled {
		return noop, nil
	}
	var exp sdktrace.SpanExporter
	switch name := strings.ToLower(strings.TrimSpace(opt.Exporter)); name {
	case "", "none":
		return noop, nil
	case "otlp":
		if exp, err = otlptracehttp.New(ctx); err != nil {
			return nil, fmt.Errorf("telemetry: otlp exporter: %w", err)
		}
	case "console", "stdout":
		if exp, err = stdouttrace.New(stdouttrace.WithWriter(Console)); err != nil {
			return nil, fmt.Errorf("telemetry: console exporter: %w", err)
		}
	default:
		return nil, fmt.Errorf("telemetry: OTEL_TRACES_EXPORTER %q is not supported (none, otlp, console)", name)
	}
	res, err := resource.New(ctx,
		resource.WithAttributes(attribute.String("service.name", opt.ServiceName)),
		resource.WithFromEnv(), resource.WithTelemetrySDK(), resource.WithHost())
	if err != nil {
		return nil, fmt.Errorf("telemetry: resource: %w", err)
	}
	tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(exp), sdktrace.WithResource(res))
	otel.SetTracerProvider(tp)
	enabled.Store(true)
	return func(ctx context.Context) error {
		enabled.Store(false)
		return tp.Shutdown(ctx)
	}, nil
}

// InjectMap writes ctx's trace context into headers (a map carried by an event).
func InjectMap(ctx context.Context, headers map[string]string) {
	Propagator.Inject(ctx, propagation.MapCarrier(headers))
}

// ExtractMap returns ctx continuing the trace context in headers.
func ExtractMap(ctx context.Context, headers map[string]string) context.Context {
	return Propagator.Extract(ctx, propagation.MapCarrier(headers))
}

// End ends span, marking it failed when err is not nil.
func End(span trace.Span, err error) {
	if err != nil {
		span.RecordError(err)
		span.SetStatus(codes.Error, err.Error())
	}
	span.End()
}

// TraceID returns the id of ctx's trace, or "" when there is none.
func TraceID(ctx context.Context) string {
	if sc := trace.SpanContextFromContext(ctx); sc.HasTraceID() {
		return sc.TraceID().String()
	}
	return ""
}

// LogHandler adds traceId and spanId to every record logged with a context in a
// sampled trace, when tracing is on: slog.New(telemetry.LogHandler(logger.Handler())).
func LogHandler(h slog.Handler) slog.Handler { return logHandler{h} }

type logHandler struct{ slog.Handler }

func (h logHandler) Handle(ctx context.Context, r slog.Record) error {
	if sc := trace.SpanContextFromContext(ctx); enabled.Load() && sc.IsValid() && sc.IsSampled() {
		r.AddAttrs(slog.String("traceId", sc.TraceID().String()), slog.String("spanId", sc.SpanID().String()))
	}
	return h.Handler.Handle(ctx, r)
}

func (h logHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return logHandler{h.Handler.WithAttrs(as)}
}

func (h logHandler) WithGroup(name string) slog.Handler { return logHandler{h.Handler.WithGroup(name)} }
