package store_test

import (
	"context"
	"strings"
	"testing"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/checkout-backend/checkout/internal/platform/telemetry"
	"github.com/checkout-backend/checkout/internal/platform/telemetry/telemetrytest"
	"github.com/checkout-backend/checkout/internal/store"
	"github.com/checkout-backend/checkout/internal/testutil"
)

// Not parallel: it installs the process's tracer provider.
func TestTraceHook_SQLSpanIsAChildAndHoldsNoBoundValues(t *testing.T) {
	db := testutil.NewDB(t, store.Options{MaxOpenConns: 2, QueryHook: store.TraceHook("checkout")})
	exp := telemetrytest.Record(t)
	ctx, parent := telemetry.Tracer().Start(context.Background(), "resolver")
	var got string
	const secret = "tok_visa_do_not_record"
	if err := db.NewRaw("SELECT ?::text", secret).Scan(ctx, &got); err != nil {
		t.Fatal(err)
	}
	parent.End()
	var sqlSpan *tracetest.SpanStub
	for _, s := range exp.GetSpans() {
		if s.Parent.SpanID() == parent.SpanContext().SpanID() {
			sqlSpan = &s
		}
	}
	if sqlSpan == nil {
		t.Fatalf("no span under the caller's among %d", len(exp.GetSpans()))
	}
	if sqlSpan.Name != "SELECT" || sqlSpan.SpanKind != trace.SpanKindClient {
		t.Errorf("the SQL span is %q (%v), want a client span SELECT", sqlSpan.Name, sqlSpan.SpanKind)
	}
	var stmt string
	for _, a := range sqlSpan.Attributes {
		if a.Key == attribute.Key("db.statement") {
			stmt = a.Value.AsString()
		}
		if strings.Contains(a.Value.String(), secret) {
			t.Errorf("attribute %s holds the bound value: %s", a.Key, a.Value.String())
		}
	}
	if stmt != "SELECT ?::text" {
		t.Errorf("db.statement %q; want the placeholder form", stmt)
	}
}
