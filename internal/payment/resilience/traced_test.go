package resilience_test

import (
	"context"
	"strings"
	"testing"

	"go.opentelemetry.io/otel/codes"

	"github.com/checkout-backend/checkout/internal/payment"
	"github.com/checkout-backend/checkout/internal/payment/resilience"
	"github.com/checkout-backend/checkout/internal/payment/sandbox"
	"github.com/checkout-backend/checkout/internal/platform/telemetry"
	"github.com/checkout-backend/checkout/internal/platform/telemetry/telemetrytest"
)

// Not parallel: telemetry.Record swaps the process-wide tracer provider.
func TestTraced_ChargeIsAChildSpanWithOutcomeAndNoToken(t *testing.T) {
	exp := telemetrytest.Record(t)
	gw := resilience.Traced(sandbox.New())
	if gw.Name() != "sandbox" {
		t.Fatalf("name %q", gw.Name())
	}
	ctx, parent := telemetry.Tracer().Start(context.Background(), "process order.placed")
	const token = "tok_chargeDeclined"
	c, err := gw.Charge(ctx, payment.ChargeRequest{OrderID: "o1", AmountCents: 1200, Currency: "USD", Token: token, IdempotencyKey: "order-o1-charge"})
	if err != nil || c.Status != payment.StatusDeclined {
		t.Fatalf("charge: %+v, %v", c, err)
	}
	if _, err := gw.Refund(ctx, payment.RefundRequest{OrderID: "o2", ProviderPaymentID: "pi_unknown", IdempotencyKey: "order-o2-refund"}); err == nil {
		t.Fatal("refund of an unknown payment succeeded")
	}
	parent.End()
	spans := exp.GetSpans()
	if len(spans) != 3 {
		t.Fatalf("%d spans, want charge, refund and the parent", len(spans))
	}
	charge, refund := spans[0], spans[1]
	if charge.Name != "payment.charge" || charge.Parent.SpanID() != parent.SpanContext().SpanID() {
		t.Errorf("charge span %q under %s", charge.Name, charge.Parent.SpanID())
	}
	attrs := map[string]string{}
	for _, a := range charge.Attributes {
		attrs[string(a.Key)] = a.Value.String()
		if strings.Contains(a.Value.String(), token) {
			t.Errorf("attribute %s holds the token", a.Key)
		}
	}
	if attrs["payment.status"] != "declined" || attrs["payment.decline_code"] != "card_declined" || attrs["order.id"] != "o1" {
		t.Errorf("charge attributes %v", attrs)
	}
	if refund.Name != "payment.refund" || refund.Status.Code != codes.Error {
		t.Errorf("refund span %q status %v; want an error", refund.Name, refund.Status)
	}
}
