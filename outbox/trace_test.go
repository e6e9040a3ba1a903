package outbox_test

import (
	"context"
	"testing"

	"github.com/checkout-backend/checkout/internal/platform/telemetry"
	"github.com/checkout-backend/checkout/internal/platform/telemetry/telemetrytest"
	"github.com/checkout-backend/checkout/outbox"
)

// Not parallel: it installs the process's tracer provider and propagator.
//
// An event written on behalf of a traced request carries that request's trace (through
// the propagator telemetry installs), and its correlation id.
func TestContextHeaders_CarryTheCallersTrace(t *testing.T) {
	if h := outbox.ContextHeaders(context.Background()); len(h) != 0 {
		t.Fatalf("headers %v from a context with no trace and no correlation id", h)
	}
	telemetrytest.Record(t)
	ctx, span := telemetry.Tracer().Start(clogContext("req-7"), "checkout")
	defer span.End()
	h := outbox.ContextHeaders(ctx)
	sc := span.SpanContext()
	if want := "00-" + sc.TraceID().String() + "-" + sc.SpanID().String() + "-01"; h["traceparent"] != want {
		t.Errorf("traceparent %q, want %q", h["traceparent"], want)
	}
	if h[outbox.CorrelationHeader] != "req-7" {
		t.Errorf("correlation id %q, want req-7", h[outbox.CorrelationHeader])
	}
}
