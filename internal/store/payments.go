package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/uptrace/bun"

	"github.com/checkout-backend/checkout/internal/checkout"
	"github.com/checkout-backend/checkout/internal/event"
	"github.com/checkout-backend/checkout/outbox"
)

// Payment is an order's payment record: the provider's id, amount, status and failure
// reason; never card data.
type Payment struct {
	OrderID           string  `bun:"order_id"`
	Provider          string  `bun:"provider"`
	ProviderPaymentID *string `bun:"provider_payment_id"`
	AmountCents       int64   `bun:"amount_cents"`
	Currency          string  `bun:"currency"`
	Status            string  `bun:"status"`
	FailureReason     *string `bun:"failure_reason"`
	ProviderRefundID  *string `bun:"provider_refund_id"`
}

// Payments stores payment records and applies payment results to orders.
type Payments struct {
	db     *bun.DB
	orders *Orders
}

// NewPayments returns the payments adapter.
func NewPayments(db *bun.DB, orders *Orders) *Payments { return &Payments{db: db, orders: orders} }

// MarkProcessed records that consumer processed eventID, in the caller's transaction;
// false means it was processed before (the caller must change nothing).
func MarkProcessed(ctx context.Context, db bun.IDB, consumer, eventID string) (bool, error) {
	res, err := db.ExecContext(ctx, "INSERT INTO inbox (consumer, event_id) VALUES (?, ?) ON CONFLICT DO NOTHING", consumer, eventID)
	if err != nil {
		return false, fmt.Errorf("inbox: %w", err)
	}
	n, _ := res.RowsAffected()
	return n == 1, nil
}

// Due is what the payment worker needs to charge an order, read in one query.
type Due struct {
	Status     checkout.Status `bun:"status"`
	TotalCents int64           `bun:"total_cents"`
	Currency   string          `bun:"currency"`
	ExpiresAt  *time.Time      `bun:"reservation_expires_at"`
	// Token is the provider token; "" once the payment has an outcome.
	Token string `bun:"token"`
}

// Due returns what an order's charge needs, or nil when the order does not exist.
func (p *Payments) Due(ctx context.Context, orderID string) (*Due, error) {
	var d Due
	err := p.db.NewRaw(`SELECT status, total_cents, currency, reservation_expires_at, COALESCE(payment_token, '') AS token
		FROM orders WHERE id = ?`, orderID).Scan(ctx, &d)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("payment due: %w", err)
	}
	return &d, nil
}

// Get returns an order's payment, or nil.
func (p *Payments) Get(ctx context.Context, orderID string) (*Payment, error) {
	return getPayment(ctx, p.db, orderID, false)
}

func getPayment(ctx context.Context, db bun.IDB, orderID string, lock bool) (*Payment, error) {
	var pay Payment
	q := "SELECT order_id, provider, provider_payment_id, amount_cents, currency, status, failure_reason, provider_refund_id FROM payments WHERE order_id = ?"
	if lock {
		q += " FOR UPDATE"
	}
	err := db.NewRaw(q, orderID).Scan(ctx, &pay)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("payment: %w", err)
	}
	return &pay, nil
}

// OrderForPayment finds the order of a provider payment id ("" when unknown).
func (p *Payments) OrderForPayment(ctx context.Context, provider, providerPaymentID string) (string, error) {
	var id string
	err := p.db.NewRaw("SELECT order_id FROM payments WHERE provider = ? AND provider_payment_id = ?", provider, providerPaymentID).Scan(ctx, &id)
	if errors.Is(err, sql.ErrNoRows) {
		return "", nil
	}
	return id, err
}

// Apply records a payment result and moves the order, in one transaction with the
// consumer's inbox row (consumer, eventID): success -> PAID (stock sold), decline ->
// PAYMENT_FAILED (stock released), requires_action -> waits; a success for an order
// that left PENDING_PAYMENT is refunded. A repeated eventID changes nothing.
func (p *Payments) Apply(ctx context.Context, consumer, eventID string, pay Payment, r checkout.PaymentResult) (checkout.Order, error) {
	var out checkout.Order
	err := InTx(ctx, p.db, func(ctx context.Context, tx bun.Tx) error {
		first, err := MarkProcessed(ctx, tx, consumer, eventID)
		if err != nil {
			return err
		}
		var decision checkout.PaymentDecision
		o, err := p.orders.Transition(ctx, pay.OrderID, func(o *checkout.Order) (checkout.Change, error) {
			if !first {
				return checkout.Change{}, nil
			}
			decision = checkout.DecidePayment(o, r)
			return decision.Change, nil
		})
		if err != nil {
			return err
		}
		out = o
		if !first {
			return nil
		}
		if pay.Currency == "" {
			pay.AmountCents, pay.Currency = o.TotalCents, o.Currency
		}
		prev, err := getPayment(ctx, tx, pay.OrderID, true)
		if err != nil {
			return err
		}
		if prev != nil && (prev.Status == "refund_pending" || prev.Status == "refunded" || prev.Status == "succeeded" && r.Status != checkout.PaymentSucceeded) {
			return nil // a later report never undoes a success or a refund
		}
		pay.Status = r.Status
		if r.Status == checkout.PaymentDeclined {
			pay.FailureReason = &r.Reason
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO payments (order_id, provider, provider_payment_id, amount_cents, currency, status, failure_reason)
			VALUES (?, ?, ?, ?, ?, ?, ?)
			ON CONFLICT (order_id) DO UPDATE SET provider_payment_id = COALESCE(EXCLUDED.provider_payment_id, payments.provider_payment_id),
			status = EXCLUDED.status, failure_reason = EXCLUDED.failure_reason, updated_at = now()`,
			pay.OrderID, pay.Provider, pay.ProviderPaymentID, pay.AmountCents, pay.Currency, pay.Status, pay.FailureReason); err != nil {
			return fmt.Errorf("record payment: %w", err)
		}
		if decision.Refund {
			if _, err := tx.ExecContext(ctx, "UPDATE orders SET payment_failure_reason = ?, updated_at = now() WHERE id = ?", decision.Note, pay.OrderID); err != nil {
				return err
			}
			out.PaymentFailureReason = &decision.Note
			return RequestRefund(ctx, tx, pay.OrderID, decision.Note)
		}
		return nil
	})
	return out, err
}

// RequestRefund marks an order's successful payment refund_pending and writes the
// payment.refund_requested event for the refund worker, in the caller's transaction.
// Without a successful payment there is nothing to refund.
func RequestRefund(ctx context.Context, tx bun.IDB, orderID, reason string) error {
	res, err := tx.ExecContext(ctx, "UPDATE payments SET status = 'refund_pending', updated_at = now() WHERE order_id = ? AND status = 'succeeded'", orderID)
	if err != nil {
		return fmt.Errorf("refund pending: %w", err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return nil
	}
	env, err := event.New(event.PaymentRefundRequested, orderID, nowUTC(), event.RefundPayload{OrderID: orderID, Reason: reason})
	if err != nil {
		return err
	}
	return outbox.Insert(ctx, tx, env)
}

// MarkRefunded records a completed refund with the consumer's inbox row.
func (p *Payments) MarkRefunded(ctx context.Context, consumer, eventID, orderID, refundID string) error {
	return InTx(ctx, p.db, func(ctx context.Context, tx bun.Tx) error {
		if first, err := MarkProcessed(ctx, tx, consumer, eventID); err != nil || !first {
			return err
		}
		_, err := tx.ExecContext(ctx, "UPDATE payments SET status = 'refunded', provider_refund_id = ?, updated_at = now() WHERE order_id = ?", refundID, orderID)
		return err
	})
}
