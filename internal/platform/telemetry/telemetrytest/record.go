// Package telemetrytest records spans in memory for tests; it stays out of the binary.
package telemetrytest

import (
	"context"
	"testing"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/checkout-backend/checkout/internal/platform/telemetry"
)

// Record installs, for the rest of t, a global tracer provider that keeps every span in
// memory (sampling all), and returns the exporter holding them. It changes process-wide
// state: tests using it must not run in parallel with each other.
func Record(t testing.TB) *tracetest.InMemoryExporter {
	t.Helper()
	exp := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp), sdktrace.WithSampler(sdktrace.AlwaysSample()))
	restore := telemetry.Install(tp)
	t.Cleanup(func() {
		tp.Shutdown(context.Background())
		restore()
	})
	return exp
}
