package checkout

// PaymentResult is what the payment provider said of an order's charge.
type PaymentResult struct {
	Status string // succeeded, declined or requires_action
	Reason string // the decline code or message, for declined
}

// Payment result statuses.
const (
	PaymentSucceeded      = "succeeded"
	PaymentDeclined       = "declined"
	PaymentRequiresAction = "requires_action"
)

// PaymentDecision is what a payment result does to an order.
type PaymentDecision struct {
	// Change moves the order (To is empty when it stays as it is).
	Change Change
	// Refund is set when money was taken for an order that can no longer be paid
	// (it expired or was cancelled meanwhile): the payment must be given back.
	Refund bool
	// Note, with Refund, is what the order says about it.
	Note string
}

// DecidePayment applies the saga's rules: a success pays a pending order; a decline
// fails it and releases its stock; requires_action waits for the webhook; and a success
// that arrives after the order left PENDING_PAYMENT (expired, cancelled) is refunded, so
// no charge stands for stock that was given back.
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
	case r.Status == PaymentSucceeded && (o.Status == StatusExpired || o.Status == StatusCancelled || o.Status == StatusPaymentFailed):
		return PaymentDecision{Refund: true, Note: "payment arrived after the order was " + string(o.Status) + "; it was refunded"}
	}
	return PaymentDecision{}
}
