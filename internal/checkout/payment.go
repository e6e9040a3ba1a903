package checkout

import (
	"context"
	"time"
)

// PaymentResult is what the payment provider said of an order's charge.
type PaymentResult struct {
	Status string // succeeded, declined or requires_action
	Reason string // the decline code or message, for declined
}

// Payment statuses: the first three are provider results, the rest what became of a
// successful payment.
const (
	PaymentSucceeded      = "succeeded"
	PaymentDeclined       = "declined"
	PaymentRequiresAction = "requires_action"
	// PaymentAttempted is recorded before the provider is called, so a provider report
	// that arrives before (or instead of) the call's answer finds the charge it belongs
	// to, with its amount and currency.
	PaymentAttempted     = "attempted"
	PaymentRefundPending = "refund_pending"
	PaymentRefunded      = "refunded"
)

// Payment is an order's payment as the provider reported it: its id, the amount and
// currency charged, the outcome; never card data.
type Payment struct {
	OrderID           string
	Provider          string
	ProviderPaymentID *string
	AmountCents       int64
	Currency          string
	Status            string
	FailureReason     *string
	ProviderRefundID  *string
}

// Accepts reports whether a new provider report may replace the recorded outcome: a
// later report never undoes a success or a refund.
func (p *Payment) Accepts(r PaymentResult) bool {
	if p == nil {
		return true
	}
	switch p.Status {
	case PaymentRefundPending, PaymentRefunded:
		return false
	case PaymentSucceeded:
		return r.Status == PaymentSucceeded
	}
	return true
}

// Matches reports whether a provider's report of amount and currency is the charge
// that was asked for (currency compared case-insensitively, as providers lower-case it).
func (p *Payment) Matches(amountCents int64, currency string) bool {
	return p != nil && p.AmountCents == amountCents && equalFold(p.Currency, currency)
}

func equalFold(a, b string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := 0; i < len(a); i++ {
		x, y := a[i]|0x20, b[i]|0x20
		if x != y {
			return false
		}
	}
	return true
}

// PaymentReport is one report of a provider about an order's charge: the answer of the
// charge call, or a provider webhook.
type PaymentReport struct {
	OrderID           string
	Provider          string
	ProviderPaymentID string
	AmountCents       int64
	Currency          string
	Result            PaymentResult
}

// PaymentDecision is what a payment result does to an order.
type PaymentDecision struct {
	// Change moves the order (To is empty when it stays as it is).
	Change Change
	// Refund is set when money was taken for an order that can no longer be paid
	// (it expired or was cancelled meanwhile): a refund of the payment is requested.
	Refund bool
	// Note, with Refund, is what the order says about it.
	Note string
	// AwaitsCustomer is set when a pending order's payment needs the customer (3-D
	// Secure): the order keeps its stock only for the shorter action hold.
	AwaitsCustomer bool
}

// DecidePayment applies the saga's rules: a success pays a pending order; a decline
// fails it and releases its stock; requires_action waits for the webhook (with the
// order's hold shortened to the action hold: AwaitsCustomer); and a success
// that arrives after the order left PENDING_PAYMENT (expired, cancelled, failed) asks
// for a refund, so no charge stands for stock that was given back.
func DecidePayment(o *Order, r PaymentResult) PaymentDecision {
	switch {
	case o.Status == StatusPendingPayment && r.Status == PaymentSucceeded:
		return PaymentDecision{Change: Change{To: StatusPaid}}
	case o.Status == StatusPendingPayment && r.Status == PaymentDeclined:
		reason := r.Reason
		if reason == "" {
			reason = "declined"
		}
		return PaymentDecision{Change: Change{To: StatusPaymentFailed, PaymentFailureReason: &reason}}
	case o.Status == StatusPendingPayment && r.Status == PaymentRequiresAction:
		return PaymentDecision{AwaitsCustomer: true}
	case r.Status == PaymentSucceeded && (o.Status == StatusExpired || o.Status == StatusCancelled || o.Status == StatusPaymentFailed):
		return PaymentDecision{Refund: true, Note: "payment arrived after the order was " + string(o.Status) + "; a refund was requested"}
	}
	return PaymentDecision{}
}

// Charge is what the payment worker needs to charge an order.
type Charge struct {
	OrderID     string
	Status      Status
	AmountCents int64
	Currency    string
	// ExpiresAt is when the order's reservation runs out.
	ExpiresAt *time.Time
	// Token is the provider token; "" once the payment has an outcome.
	Token string
}

// Chargeable reports whether the charge may be made at now: the order still waits for
// its payment, has a token, and its reservation has not run out (past it, the sweeper
// expires the order and gives the stock back).
func (c *Charge) Chargeable(now time.Time) bool {
	return c.Status == StatusPendingPayment && c.Token != "" && (c.ExpiresAt == nil || !now.After(*c.ExpiresAt))
}

// PaymentStore is the persistence port of the payment saga.
type PaymentStore interface {
	// BeginCharge returns what an order's charge needs (nil when the order is unknown)
	// and, when the order can be charged at now (Chargeable), records the attempt for
	// its total as RecordAttempt does, in one statement: what the payment worker asks
	// first.
	BeginCharge(ctx context.Context, orderID, provider string, now time.Time) (*Charge, error)
	// RecordAttempt notes, before the provider is called, that the order's charge is
	// being attempted for amount and currency (a report arriving first finds it).
	RecordAttempt(ctx context.Context, orderID, provider string, amountCents int64, currency string) error
	// Payment returns an order's payment, or nil.
	Payment(ctx context.Context, orderID string) (*Payment, error)
	// PaymentByProviderID returns the payment with the provider's id, or nil.
	PaymentByProviderID(ctx context.Context, provider, providerPaymentID string) (*Payment, error)
	// Settle applies a provider report to its order in one transaction with the
	// consumer's inbox row (consumer, eventID): the payment is recorded, the order moves
	// as DecidePayment says, and a refund is requested when money came too late. A
	// repeated eventID changes nothing; processed is false then.
	Settle(ctx context.Context, consumer, eventID string, rep PaymentReport) (o Order, processed bool, err error)
	// MarkRefunded records a completed refund with the consumer's inbox row.
	MarkRefunded(ctx context.Context, consumer, eventID, orderID, refundID string) error
}
