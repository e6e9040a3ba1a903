package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/uptrace/bun"

	"github.com/checkout-backend/checkout/internal/checkout"
	"github.com/checkout-backend/checkout/internal/event"
	"github.com/checkout-backend/checkout/outbox"
)

// Payments implements checkout.PaymentStore: payment records, and the transactions that
// apply a provider's reports to orders.
type Payments struct {
	db     *bun.DB
	orders *Orders
	now    func() time.Time
}

// NewPayments returns the payments adapter; it moves orders through orders.
func NewPayments(db *bun.DB, orders *Orders) *Payments {
	return &Payments{db: db, orders: orders, now: orders.now}
}

var _ checkout.PaymentStore = (*Payments)(nil)

type paymentRow struct {
	OrderID           string  `bun:"order_id"`
	Provider          string  `bun:"provider"`
	ProviderPaymentID *string `bun:"provider_payment_id"`
	AmountCents       int64   `bun:"amount_cents"`
	Currency          string  `bun:"currency"`
	Status            string  `bun:"status"`
	FailureReason     *string `bun:"failure_reason"`
	ProviderRefundID  *string `bun:"provider_refund_id"`
}

const paymentCols = "order_id, provider, provider_payment_id, amount_cents, currency, status, failure_reason, provider_refund_id"

// MarkProcessed records that consumer processed eventID, in the caller's transaction;
// false means it was processed before (the caller must change nothing).
func MarkProcessed(ctx context.Context, db bun.IDB, consumer, eventID string, now time.Time) (bool, error) {
	res, err := db.ExecContext(ctx, "INSERT INTO inbox (consumer, event_id, processed_at) VALUES (?, ?, ?) ON CONFLICT DO NOTHING", consumer, eventID, now)
	if err != nil {
		return false, fmt.Errorf("inbox: %w", err)
	}
	n, _ := res.RowsAffected()
	return n == 1, nil
}

// ChargeOf returns what an order's charge needs, or nil when the order does not exist.
func (p *Payments) ChargeOf(ctx context.Context, orderID string) (*checkout.Charge, error) {
	var r struct {
		Status    string     `bun:"status"`
		Total     int64      `bun:"total_cents"`
		Currency  string     `bun:"currency"`
		ExpiresAt *time.Time `bun:"reservation_expires_at"`
		Token     string     `bun:"token"`
	}
	err := p.db.NewRaw(`SELECT status, total_cents, currency, reservation_expires_at, COALESCE(payment_token, '') AS token
		FROM orders WHERE id = ?`, orderID).Scan(ctx, &r)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, mapErr(fmt.Errorf("charge of %s: %w", orderID, err))
	}
	return &checkout.Charge{OrderID: orderID, Status: checkout.Status(r.Status), AmountCents: r.Total, Currency: r.Currency,
		ExpiresAt: r.ExpiresAt, Token: r.Token}, nil
}

// RecordAttempt implements checkout.PaymentStore: a payment row in status attempted,
// unless one exists already.
func (p *Payments) RecordAttempt(ctx context.Context, orderID, provider string, amountCents int64, currency string) error {
	now := p.now()
	_, err := p.db.ExecContext(ctx, `INSERT INTO payments (order_id, provider, amount_cents, currency, status, created_at, updated_at)
		VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (order_id) DO NOTHING`, orderID, provider, amountCents, currency, checkout.PaymentAttempted, now, now)
	if err != nil {
		return mapErr(fmt.Errorf("record charge attempt: %w", err))
	}
	return nil
}

// Payment returns an order's payment, or nil.
func (p *Payments) Payment(ctx context.Context, orderID string) (*checkout.Payment, error) {
	pay, err := getPayment(ctx, p.db, "order_id = ?", false, orderID)
	return pay, mapErr(err)
}

// PaymentByProviderID returns the payment the provider knows by providerPaymentID, or nil.
func (p *Payments) PaymentByProviderID(ctx context.Context, provider, providerPaymentID string) (*checkout.Payment, error) {
	pay, err := getPayment(ctx, p.db, "provider = ? AND provider_payment_id = ?", false, provider, providerPaymentID)
	return pay, mapErr(err)
}

func getPayment(ctx context.Context, db bun.IDB, where string, lock bool, args ...any) (*checkout.Payment, error) {
	var r paymentRow
	q := "SELECT " + paymentCols + " FROM payments WHERE " + where
	if lock {
		q += " FOR UPDATE"
	}
	err := db.NewRaw(q, args...).Scan(ctx, &r)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("payment: %w", err)
	}
	pay := checkout.Payment(r)
	return &pay, nil
}

// settleRow is what a settlement reads in its first round trip: whether the event is
// new for the consumer (the inbox row it wrote), the order under its row lock with its
// items, and the recorded payment.
type settleRow struct {
	First bool `bun:"first"`
	orderRow
	Items     []byte  `bun:"items"`
	PayStatus *string `bun:"pay_status"`
}

// Settle implements checkout.PaymentStore, in two round trips: the inbox row, the order
// under its lock, its items and the recorded payment; then the order's change, its stock
// move and event, the payment record and any refund request.
func (p *Payments) Settle(ctx context.Context, consumer, eventID string, rep checkout.PaymentReport) (checkout.Order, bool, error) {
	var out checkout.Order
	var first, changed bool
	var eff checkout.Effects
	err := InTx(ctx, p.db, func(ctx context.Context, tx bun.Tx) error {
		now := p.now().UTC().Truncate(time.Microsecond)
		var r settleRow
		err := tx.NewRaw(`WITH ins AS (INSERT INTO inbox (consumer, event_id, processed_at) VALUES (?, ?, ?) ON CONFLICT DO NOTHING RETURNING 1)
			SELECT EXISTS (SELECT 1 FROM ins) AS first, o.id, o.customer_id, o.status, o.total_cents, o.currency, o.reservation_expires_at,
				o.tracking_number, o.payment_failure_reason, o.event_seq, o.created_at, o.updated_at,
				(SELECT json_agg(json_build_object('sku', i.sku, 'quantity', i.quantity, 'unitPriceCents', i.unit_price_cents) ORDER BY i.line_no)
				 FROM order_items i WHERE i.order_id = o.id) AS items,
				(SELECT pay.status FROM payments pay WHERE pay.order_id = o.id) AS pay_status
			FROM orders o WHERE o.id = ? FOR UPDATE OF o`, consumer, eventID, now, rep.OrderID).Scan(ctx, &r)
		if errors.Is(err, sql.ErrNoRows) {
			return checkout.Errorf(checkout.NotFound, []string{"orderId"}, "order %s not found", rep.OrderID)
		}
		if err != nil {
			return fmt.Errorf("settle %s: %w", rep.OrderID, err)
		}
		o := r.order()
		if len(r.Items) > 0 {
			var items []itemRow
			if err := json.Unmarshal(r.Items, &items); err != nil {
				return fmt.Errorf("settle %s: items: %w", rep.OrderID, err)
			}
			for _, it := range items {
				o.Items = append(o.Items, checkout.OrderItem{SKU: it.SKU, Quantity: it.Quantity, UnitPriceCents: it.UnitPriceCents})
			}
		}
		out, first = o, r.First
		if !first {
			return nil // processed before: nothing changes
		}
		var prev *checkout.Payment
		if r.PayStatus != nil {
			prev = &checkout.Payment{Status: *r.PayStatus}
		}
		d := checkout.DecidePayment(&o, rep.Result)
		eff, changed, err = p.orders.apply(ctx, tx, &o, d.Change, func(sc *script) error {
			if prev.Accepts(rep.Result) {
				addPaymentRecord(sc, rep, now)
			}
			if d.Refund {
				sc.add("UPDATE orders SET payment_failure_reason = ?, updated_at = ? WHERE id = ?", d.Note, now, o.ID)
				return addRefundRequest(ctx, sc, o.ID, d.Note, now)
			}
			return nil
		})
		if d.Refund {
			o.PaymentFailureReason = &d.Note
		}
		out = o
		return err
	})
	if err != nil {
		return checkout.Order{}, false, err
	}
	if changed {
		p.orders.afterCommit(out, eff)
	} else if first {
		p.orders.wakeRelays() // a refund request may have been written
	}
	return out, first, nil
}

// addPaymentRecord adds the statement writing what the provider reported.
func addPaymentRecord(sc *script, rep checkout.PaymentReport, now time.Time) {
	var providerID, reason *string
	if rep.ProviderPaymentID != "" {
		providerID = &rep.ProviderPaymentID
	}
	if rep.Result.Status == checkout.PaymentDeclined {
		reason = &rep.Result.Reason
	}
	sc.add(`INSERT INTO payments (order_id, provider, provider_payment_id, amount_cents, currency, status, failure_reason, created_at, updated_at)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
		ON CONFLICT (order_id) DO UPDATE SET provider_payment_id = COALESCE(EXCLUDED.provider_payment_id, payments.provider_payment_id),
		amount_cents = EXCLUDED.amount_cents, currency = EXCLUDED.currency,
		status = EXCLUDED.status, failure_reason = EXCLUDED.failure_reason, updated_at = EXCLUDED.updated_at`,
		rep.OrderID, rep.Provider, providerID, rep.AmountCents, rep.Currency, rep.Result.Status, reason, now, now)
}

// addRefundRequest adds the statement that marks an order's successful payment
// refund_pending and writes the payment.refund_requested event for the refund worker,
// both only when there is a successful payment to refund.
func addRefundRequest(ctx context.Context, sc *script, orderID, reason string, now time.Time) error {
	env, err := event.New(event.PaymentRefundRequested, orderID, now, event.RefundPayload{OrderID: orderID, Reason: reason})
	if err != nil {
		return err
	}
	q, args, err := outbox.InsertStatement(ctx, []event.Envelope{env})
	if err != nil {
		return err
	}
	sc.add(`WITH r AS (UPDATE payments SET status = ?, updated_at = ? WHERE order_id = ? AND status = ? RETURNING 1) `+q+` WHERE EXISTS (SELECT 1 FROM r)`,
		append([]any{checkout.PaymentRefundPending, now, orderID, checkout.PaymentSucceeded}, args...)...)
	return nil
}

// MarkRefunded records a completed refund with the consumer's inbox row.
func (p *Payments) MarkRefunded(ctx context.Context, consumer, eventID, orderID, refundID string) error {
	return InTx(ctx, p.db, func(ctx context.Context, tx bun.Tx) error {
		now := p.now()
		if first, err := MarkProcessed(ctx, tx, consumer, eventID, now); err != nil || !first {
			return err
		}
		_, err := tx.ExecContext(ctx, "UPDATE payments SET status = ?, provider_refund_id = ?, updated_at = ? WHERE order_id = ?",
			checkout.PaymentRefunded, refundID, now, orderID)
		return err
	})
}
