// Package workers holds the RabbitMQ consumers of the payment saga (charge on
// order.placed, refund on payment.refund_requested), the partner webhook consumers and
// the reservation expiry sweeper. Each consumer is idempotent: the store records the
// event ids it processed in the inbox table in the same transaction as its effects.
// Workers use the domain's ports; they run no SQL.
//
// The clock is a dependency: each constructor takes it as its now argument, next to
// the other dependencies, and never defaults it (a nil clock is refused).
package workers

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/checkout-backend/checkout/internal/broker"
	"github.com/checkout-backend/checkout/internal/checkout"
	"github.com/checkout-backend/checkout/internal/event"
	"github.com/checkout-backend/checkout/internal/payment"
)

// Consumer names.
const (
	PaymentConsumer = "payment"
	RefundConsumer  = "refund"
)

// Consumers is the saga's part of the broker topology.
var Consumers = []broker.Consumer{
	// A provider outage never drops a charge: the payment worker retries until the
	// provider answers or the reservation expires (then it stops by itself).
	{Name: PaymentConsumer, Types: []string{event.OrderPlaced}, RetryForever: true},
	// A refund is owed money: retried until the provider takes it.
	{Name: RefundConsumer, Types: []string{event.PaymentRefundRequested}, RetryForever: true},
}

// PaymentWorker charges placed orders and refunds what must be given back.
type PaymentWorker struct {
	payments checkout.PaymentStore
	gateway  payment.Gateway
	logger   *slog.Logger
	now      func() time.Time
}

// NewPaymentWorker returns the payment and refund handlers; now is their clock (a
// charge past its reservation's expiry is not made). A nil store, gateway or clock is
// refused.
func NewPaymentWorker(payments checkout.PaymentStore, gw payment.Gateway, logger *slog.Logger, now func() time.Time) (*PaymentWorker, error) {
	if payments == nil || gw == nil || now == nil {
		return nil, errors.New("workers: nil dependency")
	}
	if logger == nil {
		logger = slog.Default()
	}
	return &PaymentWorker{payments: payments, gateway: gw, logger: logger, now: now}, nil
}

// mustClock refuses a nil clock: constructor was called without its dependency.
func mustClock(constructor string, now func() time.Time) {
	if now == nil {
		panic("workers: " + constructor + " with a nil clock")
	}
}

// ChargeKey is the provider idempotency key of an order's charge: every attempt, by any
// worker, after any crash, is the same charge.
func ChargeKey(orderID string) string { return "order-" + orderID + "-charge" }

// RefundKey is the provider idempotency key of an order's refund.
func RefundKey(orderID string) string { return "order-" + orderID + "-refund" }

// HandleOrderPlaced charges the order of an order.placed event.
func (w *PaymentWorker) HandleOrderPlaced(ctx context.Context, env event.Envelope) error {
	if env.Type != event.OrderPlaced {
		return nil
	}
	var p event.OrderPayload
	if err := json.Unmarshal(env.Payload, &p); err != nil {
		return broker.Permanent(fmt.Errorf("decode %s: %w", env.ID, err))
	}
	id := p.Order.ID
	// One statement reads the order and, if it can be charged, records the attempt.
	now := w.now()
	c, err := w.payments.BeginCharge(ctx, id, w.gateway.Name(), now)
	if err != nil {
		return err
	}
	if c == nil {
		return broker.Permanent(fmt.Errorf("order %s of event %s not found", id, env.ID))
	}
	if !c.Chargeable(now) {
		// Cancelled or expired before we got to it, or too late to charge (the sweeper
		// expires it and gives the stock back): nothing to charge.
		return nil
	}
	ch, err := w.gateway.Charge(ctx, payment.ChargeRequest{OrderID: id, AmountCents: c.AmountCents,
		Currency: c.Currency, Token: c.Token, IdempotencyKey: ChargeKey(id)})
	var result checkout.PaymentResult
	switch {
	case err == nil:
		result = checkout.PaymentResult{Status: string(ch.Status), Reason: ch.DeclineCode}
		if result.Reason == "" {
			result.Reason = ch.Message
		}
	case errors.Is(err, payment.ErrPending):
		result = checkout.PaymentResult{Status: checkout.PaymentRequiresAction}
	case payment.IsPermanent(err):
		// The provider refused the request itself (an unusable token, say): the order
		// fails rather than waiting for ever.
		result = checkout.PaymentResult{Status: checkout.PaymentDeclined, Reason: "processing_error"}
		w.logger.WarnContext(ctx, "charge refused by provider", "orderId", id, "error", err)
	default:
		return fmt.Errorf("charge order %s: %w", id, err) // transient: retried later
	}
	rep := checkout.PaymentReport{OrderID: id, Provider: w.gateway.Name(), ProviderPaymentID: ch.ProviderPaymentID,
		AmountCents: c.AmountCents, Currency: c.Currency, Result: result}
	if ch.AmountCents != 0 {
		rep.AmountCents = ch.AmountCents
	}
	if ch.Currency != "" {
		rep.Currency = ch.Currency
	}
	after, _, err := w.payments.Settle(ctx, PaymentConsumer, env.ID, rep)
	if err != nil {
		return err
	}
	w.logger.InfoContext(ctx, "payment applied", "orderId", id, "payment", result.Status, "status", string(after.Status))
	return nil
}

// HandleRefundRequested refunds an order's payment.
func (w *PaymentWorker) HandleRefundRequested(ctx context.Context, env event.Envelope) error {
	var p event.RefundPayload
	if err := json.Unmarshal(env.Payload, &p); err != nil {
		return broker.Permanent(fmt.Errorf("decode %s: %w", env.ID, err))
	}
	pay, err := w.payments.Payment(ctx, p.OrderID)
	if err != nil {
		return err
	}
	if pay == nil || pay.Status != checkout.PaymentRefundPending || pay.ProviderPaymentID == nil {
		return nil
	}
	ref, err := w.gateway.Refund(ctx, payment.RefundRequest{OrderID: p.OrderID, ProviderPaymentID: *pay.ProviderPaymentID,
		IdempotencyKey: RefundKey(p.OrderID), Reason: p.Reason})
	if err != nil {
		if payment.IsPermanent(err) {
			return broker.Permanent(err)
		}
		return err
	}
	w.logger.InfoContext(ctx, "payment refunded", "orderId", p.OrderID)
	return w.payments.MarkRefunded(ctx, RefundConsumer, env.ID, p.OrderID, ref.ProviderRefundID)
}

// Run consumes the saga's queues until ctx ends.
func (w *PaymentWorker) Run(ctx context.Context, b *broker.Broker, opt broker.ConsumeOptions) error {
	errc := make(chan error, 2)
	go func() { errc <- b.Consume(ctx, PaymentConsumer, opt, w.HandleOrderPlaced) }()
	go func() { errc <- b.Consume(ctx, RefundConsumer, opt, w.HandleRefundRequested) }()
	return errors.Join(<-errc, <-errc)
}
