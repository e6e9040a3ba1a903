package resilience

import (
	"context"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/checkout-backend/checkout/internal/payment"
)

// Traced wraps g so each call is a client span in the caller's trace (payment.charge,
// payment.refund) with the provider, order, amount and outcome, never the token. Put it
// under Gateway, New(Traced(g), ...), to see every attempt.
func Traced(g payment.Gateway) payment.Gateway { return traced{g} }

type traced struct{ g payment.Gateway }

func (t traced) Name() string { return t.g.Name() }

func (t traced) start(ctx context.Context, op, orderID string) (context.Context, trace.Span) {
	return otel.Tracer("github.com/checkout-backend/checkout/internal/payment").Start(ctx, "payment."+op,
		trace.WithSpanKind(trace.SpanKindClient),
		trace.WithAttributes(attribute.String("payment.provider", t.g.Name()), attribute.String("order.id", orderID)))
}

func end(span trace.Span, err error) {
	if err != nil {
		span.RecordError(err)
		span.SetStatus(codes.Error, err.Error())
		span.SetAttributes(attribute.Bool("payment.transient", payment.IsTransient(err)))
	}
	span.End()
}

func (t traced) Charge(ctx context.Context, r payment.ChargeRequest) (payment.Charge, error) {
	ctx, span := t.start(ctx, "charge", r.OrderID)
	span.SetAttributes(attribute.Int64("payment.amount_cents", r.AmountCents), attribute.String("payment.currency", r.Currency))
	c, err := t.g.Charge(ctx, r)
	if err == nil {
		span.SetAttributes(attribute.String("payment.status", string(c.Status)))
		if c.DeclineCode != "" {
			span.SetAttributes(attribute.String("payment.decline_code", c.DeclineCode))
		}
	}
	end(span, err)
	return c, err
}

func (t traced) Refund(ctx context.Context, r payment.RefundRequest) (payment.Refund, error) {
	ctx, span := t.start(ctx, "refund", r.OrderID)
	ref, err := t.g.Refund(ctx, r)
	if err == nil {
		span.SetAttributes(attribute.String("payment.status", ref.Status))
	}
	end(span, err)
	return ref, err
}
