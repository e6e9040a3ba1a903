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
	groups paymentGroups
}

// paymentGroups commit concurrent calls together: the payment workers handle many
// orders at once, and each kind of call of theirs costs one round trip and one commit
// per batch instead of per order.
type paymentGroups struct {
	begin    *batched[beginIn, *checkout.Charge]
	attempts *batched[attempt, struct{}]
	settle   *batched[settleIn, settleOut]
}

type beginIn struct {
	orderID, provider string
	now               time.Time
}

type attempt struct {
	orderID, provider string
	amountCents       int64
	currency          string
}

// NewPayments returns the payments adapter; it moves orders through orders. Close
// stops its groups.
func NewPayments(db *bun.DB, orders *Orders) *Payments {
	p := &Payments{db: db, orders: orders, now: orders.now}
	opt := func(name string) groupOptions {
		return groupOptions{name: name, maxSize: 64, maxWait: time.Millisecond, workers: 4}
	}
	p.groups = paymentGroups{
		begin:    newBatched(opt("payments.begin"), func(in beginIn) []string { return []string{in.orderID} }, p.beginCharges),
		attempts: newBatched(opt("payments.attempts"), func(a attempt) []string { return []string{a.orderID} }, p.recordAttempts),
		settle:   newBatched(opt("payments.settle"), func(in settleIn) []string { return []string{in.rep.OrderID} }, p.runSettles),
	}
	return p
}

// Close answers what is queued and waits for the batches in flight.
func (p *Payments) Close() {
	p.groups.begin.close()
	p.groups.attempts.close()
	p.groups.settle.close()
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
	res, err := db.ExecContext(ctx, hotMarkProcessed.For(db), consumer, eventID, now)
	if err != nil {
		return false, fmt.Errorf("inbox: %w", err)
	}
	n, _ := res.RowsAffected()
	return n == 1, nil
}

// BeginCharge implements checkout.PaymentStore: the order's charge, and its attempt
// recorded (as RecordAttempt, without waiting for the flush) when it is chargeable at
// now, in one statement for a group of orders.
func (p *Payments) BeginCharge(ctx context.Context, orderID, provider string, now time.Time) (*checkout.Charge, error) {
	return p.groups.begin.do(ctx, beginIn{orderID: orderID, provider: provider, now: now})
}

func (p *Payments) beginCharges(ctx context.Context, ins []beginIn) ([]*checkout.Charge, []error, error) {
	ids, provs, nows := make([]string, len(ins)), make([]string, len(ins)), make([]time.Time, len(ins))
	for i, in := range ins {
		ids[i], provs[i], nows[i] = in.orderID, in.provider, in.now
	}
	var rows []struct {
		ID        string     `bun:"id"`
		Status    string     `bun:"status"`
		Total     int64      `bun:"total_cents"`
		Currency  string     `bun:"currency"`
		ExpiresAt *time.Time `bun:"reservation_expires_at"`
		Token     string     `bun:"token"`
	}
	// The INSERT's condition is checkout.Charge.Chargeable, at each caller's now.
	err := p.db.NewRaw(hotBeginCharges.For(p.db), pgArray(ids), checkout.PaymentAttempted, pgArray(ids), pgArray(provs), pgArray(nows),
		checkout.StatusPendingPayment).Scan(ctx, &rows)
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return nil, nil, mapErr(fmt.Errorf("begin charges of %d orders: %w", len(ids), err))
	}
	byID := make(map[string]*checkout.Charge, len(rows))
	for _, r := range rows {
		byID[r.ID] = &checkout.Charge{OrderID: r.ID, Status: checkout.Status(r.Status), AmountCents: r.Total, Currency: r.Currency,
			ExpiresAt: r.ExpiresAt, Token: r.Token}
	}
	out := make([]*checkout.Charge, len(ids))
	for i, id := range ids {
		out[i] = byID[id]
	}
	return out, make([]error, len(ids)), nil
}

// RecordAttempt implements checkout.PaymentStore: a payment row in status attempted,
// unless one exists already. Its commit does not wait for its flush
// (outbox.NoFlushWait): the row only lets a provider report that comes before the
// charge's answer find its order. Lost in a crash, it was lost before the settlement or
// the scheduled retry that follows it committed (WAL is one sequence, and their
// synchronous commits flush it), so the order.placed message was not acknowledged either: it is delivered again,
// and the worker records the attempt again and repeats the charge under the same
// provider idempotency key, which the provider answers with the first charge.
func (p *Payments) RecordAttempt(ctx context.Context, orderID, provider string, amountCents int64, currency string) error {
	_, err := p.groups.attempts.do(ctx, attempt{orderID: orderID, provider: provider, amountCents: amountCents, currency: currency})
	return err
}

func (p *Payments) recordAttempts(ctx context.Context, as []attempt) ([]struct{}, []error, error) {
	now := p.now()
	ids, provs, amounts, curs := make([]string, len(as)), make([]string, len(as)), make([]int64, len(as)), make([]string, len(as))
	for i, a := range as {
		ids[i], provs[i], amounts[i], curs[i] = a.orderID, a.provider, a.amountCents, a.currency
	}
	_, err := p.db.ExecContext(ctx, hotRecordAttempts.For(p.db), checkout.PaymentAttempted, now, now, pgArray(ids), pgArray(provs), pgArray(amounts), pgArray(curs))
	if err != nil {
		return nil, nil, mapErr(fmt.Errorf("record charge attempts: %w", err))
	}
	return make([]struct{}, len(as)), make([]error, len(as)), nil
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

// Settle implements checkout.PaymentStore: the inbox row, the order under its lock, its
// items and the recorded payment in one round trip; the order's change, its stock move
// and event, the payment record and any refund request in another. Concurrent
// settlements are committed together (see settleGroup).
func (p *Payments) Settle(ctx context.Context, consumer, eventID string, rep checkout.PaymentReport) (checkout.Order, bool, error) {
	r, err := p.groups.settle.do(ctx, settleIn{consumer: consumer, eventID: eventID, rep: rep, headers: outbox.ContextHeaders(ctx)})
	return r.order, r.first, err
}

type settleIn struct {
	consumer, eventID string
	rep               checkout.PaymentReport
	headers           map[string]string // of the caller's context, for its events
}

type settleOut struct {
	order   checkout.Order
	first   bool
	changed bool
	eff     checkout.Effects
}

// settleBatchRow is settleRow with the index of its request.
type settleBatchRow struct {
	N int `bun:"n"`
	settleRow
}

// settle settles ins in tx in two round trips however many they are: the inbox rows and
// the orders (locked in id order, so two batches never deadlock); then every change in
// one script. A request that cannot be applied gets its error and leaves nothing behind
// (its inbox row is deleted); the others go on. The error return is the transaction's.
func (p *Payments) settle(ctx context.Context, tx bun.Tx, ins []settleIn) ([]settleOut, []error, error) {
	n := len(ins)
	out, errs := make([]settleOut, n), make([]error, n)
	cons, evs, ids := make([]string, n), make([]string, n), make([]string, n)
	for i, in := range ins {
		cons[i], evs[i], ids[i] = in.consumer, in.eventID, in.rep.OrderID
	}
	now := p.now().UTC().Truncate(time.Microsecond)
	var rows []settleBatchRow
	err := tx.NewRaw(hotSettle.For(tx),
		pgArray(cons), pgArray(evs), pgArray(ids), now, pgArray(ids), pgArray(ids)).Scan(ctx, &rows)
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return nil, nil, fmt.Errorf("settle: %w", err)
	}
	found := make([]bool, n)
	var c changes
	var dropInbox []int
	for _, r := range rows {
		i, rep := r.N, ins[r.N].rep
		found[i] = true
		o := r.order()
		if len(r.Items) > 0 {
			var items []itemRow
			if err := json.Unmarshal(r.Items, &items); err != nil {
				return nil, nil, fmt.Errorf("settle %s: items: %w", rep.OrderID, err)
			}
			for _, it := range items {
				o.Items = append(o.Items, checkout.OrderItem{SKU: it.SKU, Quantity: it.Quantity, UnitPriceCents: it.UnitPriceCents})
			}
		}
		out[i] = settleOut{order: o, first: r.First}
		if !r.First {
			continue // processed before: nothing changes
		}
		var prev *checkout.Payment
		if r.PayStatus != nil {
			prev = &checkout.Payment{Status: *r.PayStatus}
		}
		d := checkout.DecidePayment(&o, rep.Result)
		var part changes
		eff, changed, err := p.orders.stage(&part, &o, d.Change, ins[i].headers)
		if err == nil && d.Refund {
			part.after.add("UPDATE orders SET payment_failure_reason = ?, updated_at = ? WHERE id = ?", d.Note, now, o.ID)
			err = addRefundRequest(&part.after, o.ID, d.Note, now, ins[i].headers)
		}
		if err == nil && d.AwaitsCustomer {
			p.shortenHold(&part.after, &o, now)
		}
		if err != nil {
			errs[i] = fmt.Errorf("settle %s: %w", rep.OrderID, err)
			dropInbox = append(dropInbox, i)
			continue
		}
		if prev.Accepts(rep.Result) {
			part.payments = append(part.payments, paymentRecord{rep: rep, at: now})
		}
		c.add(part)
		if d.Refund {
			o.PaymentFailureReason = &d.Note
		}
		out[i] = settleOut{order: o, first: true, changed: changed, eff: eff}
	}
	for i := range ins {
		if !found[i] {
			errs[i] = checkout.Errorf(checkout.NotFound, []string{"orderId"}, "order %s not found", ins[i].rep.OrderID)
		}
	}
	sc, err := c.script(ctx)
	if err != nil {
		return nil, nil, err
	}
	for _, i := range dropInbox {
		sc.add("DELETE FROM inbox WHERE consumer = ? AND event_id = ?", ins[i].consumer, ins[i].eventID)
	}
	if err := sc.exec(ctx, tx); err != nil {
		return nil, nil, fmt.Errorf("settle: %w", err)
	}
	return out, errs, nil
}

// shortenHold moves the expiry of o, whose payment awaits its customer (3-D Secure),
// to the action hold from now when that is earlier: an order nobody can pay without the
// customer holds its stock for ACTION_HOLD_TTL, not the whole reservation. It runs in
// the settlement's transaction, under the order's row lock, as the sweeper's expiry and
// every payment do, so it is ordered with them: an expiry that came first left the
// order EXPIRED (nothing to shorten), and a payment after it finds the new expiry. The
// expiry only ever moves earlier, so a repeated requires_action report changes nothing.
func (p *Payments) shortenHold(sc *script, o *checkout.Order, now time.Time) {
	hold := p.orders.actionHold
	if hold <= 0 || o.ReservationExpiresAt == nil {
		return
	}
	until := now.Add(hold)
	if !until.Before(*o.ReservationExpiresAt) {
		return
	}
	sc.add(`UPDATE orders SET reservation_expires_at = ? WHERE id = ? AND status = 'PENDING_PAYMENT' AND reservation_expires_at > ?`, until, o.ID, until)
	sc.add(`UPDATE reservations SET expires_at = ?, updated_at = ? WHERE order_id = ? AND status = 'HELD' AND expires_at > ?`, until, now, o.ID, until)
	o.ReservationExpiresAt = &until
}

// runSettles is the settle group's batch: one transaction for all; after the commit,
// the committed hooks (metrics, feed, relays) of every order that changed.
func (p *Payments) runSettles(ctx context.Context, ins []settleIn) ([]settleOut, []error, error) {
	var out []settleOut
	var errs []error
	err := InTx(ctx, p.db, func(ctx context.Context, tx bun.Tx) error {
		var err error
		out, errs, err = p.settle(ctx, tx, ins)
		return err
	})
	if err != nil {
		return nil, nil, err
	}
	wake := false
	for i, o := range out {
		switch {
		case errs[i] != nil:
		case o.changed:
			p.orders.afterCommit(o.order, o.eff)
		case o.first:
			wake = true // a refund request may have been written
		}
	}
	if wake {
		p.orders.wakeRelays()
	}
	return out, errs, nil
}

// addRefundRequest adds the statement that marks an order's successful payment
// refund_pending and writes the payment.refund_requested event for the refund worker,
// both only when there is a successful payment to refund.
func addRefundRequest(sc *script, orderID, reason string, now time.Time, headers map[string]string) error {
	env, err := event.New(event.PaymentRefundRequested, orderID, now, event.RefundPayload{OrderID: orderID, Reason: reason})
	if err != nil {
		return err
	}
	for k, v := range headers {
		env.Headers[k] = v
	}
	q, args, err := outbox.InsertStatement(context.Background(), []event.Envelope{env})
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
