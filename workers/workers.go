// Package workers holds the RabbitMQ consumers of the payment saga (charge on
// order.placed, refund on payment.refund_requested), the reservation expiry sweeper and
// the Stripe webhook endpoint. Each consumer is idempotent: it records the event ids it
// processed in the inbox table in the same transaction as its effects.
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
	"github.com/checkout-backend/checkout/internal/store"
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

// Payments charges placed orders and refunds what must be given back.
type Payments struct {
	orders   *store.Orders
	payments *store.Payments
	gateway  payment.Gateway
	logger   *slog.Logger
	now      func() time.Time
}

// NewPayments returns the payment and refund handlers.
func NewPayments(orders *store.Orders, payments *store.Payments, gw payment.Gateway, logger *slog.Logger, now func() time.Time) (*Payments, error) {
	if orders == nil || payments == nil || gw == nil {
		return nil, errors.New("workers: nil dependency")
	}
	if logger == nil {
		logger = slog.Default()
	}
	if now == nil {
		now = time.Now
	}
	return &Payments{orders: orders, payments: payments, gateway: gw, logger: logger, now: now}, nil
}

// ChargeKey is the provider idempotency key of an order's charge: every attempt, by any
// worker, after any crash, is the same charge.
func ChargeKey(orderID string) string { return "order-" + orderID + "-charge" }

// RefundKey is the provider idempotency key of an order's refund.
func RefundKey(orderID string) string { return "order-" + orderID + "-refund" }

// HandleOrderPlaced charges an order placed event's order.
func (w *Payments) HandleOrderPlaced(ctx context.Context, env event.Envelope) error {
	if env.Type != event.OrderPlaced {
		return nil
	}
	var p event.OrderPayload
	if err := json.Unmarshal(env.Payload, &p); err != nil {
		return broker.Permanent(fmt.Errorf("decode %s: %w", env.ID, err))
	}
	id := p.Order.ID
	due, err := w.payments.Due(ctx, id)
	if err != nil {
		return err
	}
	if due == nil {
		return broker.Permanent(fmt.Errorf("order %s of event %s not found", id, env.ID))
	}
	if due.Status != checkout.StatusPendingPayment || due.Token == "" {
		return nil // cancelled or expired before we got to it: nothing to charge
	}
	if due.ExpiresAt != nil && w.now().After(*due.ExpiresAt) {
		return nil // too late to charge: the sweeper expires it and gives the stock back
	}
	ch, err := w.gateway.Charge(ctx, payment.ChargeRequest{OrderID: id, AmountCents: due.TotalCents,
		Currency: due.Currency, Token: due.Token, IdempotencyKey: ChargeKey(id)})
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
	pay := store.Payment{OrderID: id, Provider: w.gateway.Name(), AmountCents: due.TotalCents, Currency: due.Currency}
	if ch.ProviderPaymentID != "" {
		pay.ProviderPaymentID = &ch.ProviderPaymentID
	}
	after, err := w.payments.Apply(ctx, PaymentConsumer, env.ID, pay, result)
	if err != nil {
		return err
	}
	w.logger.InfoContext(ctx, "payment applied", "orderId", id, "payment", result.Status, "status", string(after.Status))
	return nil
}

// HandleRefundRequested refunds an order's payment.
func (w *Payments) HandleRefundRequested(ctx context.Context, env event.Envelope) error {
	var p event.RefundPayload
	if err := json.Unmarshal(env.Payload, &p); err != nil {
		return broker.Permanent(fmt.Errorf("decode %s: %w", env.ID, err))
	}
	pay, err := w.payments.Get(ctx, p.OrderID)
	if err != nil {
		return err
	}
	if pay == nil || pay.Status != "refund_pending" || pay.ProviderPaymentID == nil {
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
func (w *Payments) Run(ctx context.Context, b *broker.Broker, opt broker.ConsumeOptions) error {
	errc := make(chan error, 2)
	go func() { errc <- b.Consume(ctx, PaymentConsumer, opt, w.HandleOrderPlaced) }()
	go func() { errc <- b.Consume(ctx, RefundConsumer, opt, w.HandleRefundRequested) }()
	return errors.Join(<-errc, <-errc)
}
