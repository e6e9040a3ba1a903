package stripe_test

import (
	"testing"
	"time"

	"github.com/checkout-backend/checkout/internal/payment"
	"github.com/checkout-backend/checkout/internal/payment/paymenttest"
)

// fakeOutcomes are Stripe's test payment methods the fake answers as Stripe does: the
// decline reasons are Stripe's decline_code (generic_decline, not card_declined).
var fakeOutcomes = []paymenttest.Outcome{
	{Token: "pm_card_visa", Status: payment.StatusSucceeded},
	{Token: "tok_visa", Status: payment.StatusSucceeded},
	{Token: "pm_card_mastercard", Status: payment.StatusSucceeded},
	{Token: "tok_amex", Status: payment.StatusSucceeded},
	{Token: "pm_card_threeDSecure2Required", Status: payment.StatusRequiresAction},
	{Token: "pm_card_chargeDeclined", Status: payment.StatusDeclined, DeclineCode: "generic_decline", Message: "Your card was declined."},
	{Token: "pm_card_requiresPaymentMethod", Status: payment.StatusDeclined, DeclineCode: "do_not_honor", Message: "Your card was declined."},
	{Token: "tok_chargeDeclinedInsufficientFunds", Status: payment.StatusDeclined, DeclineCode: "insufficient_funds", Message: "Your card has insufficient funds."},
	{Token: "tok_chargeDeclinedExpiredCard", Status: payment.StatusDeclined, DeclineCode: "expired_card", Message: "Your card has expired."},
	// Stripe answers an unknown payment method with resource_missing, quoting it back.
	{Token: "pm_card_nonsense"},
	// The adapter takes pm_ and tok_ tokens only and refuses others before sending.
	{Token: "src_legacy"},
}

// The payment.Gateway contract, with the adapter speaking to a fake of Stripe's wire
// protocol that decides outcomes by token and remembers charges and refunds (what
// stripe-mock cannot do: see TestStripeMock).
func TestGatewayContract_FakeStripe(t *testing.T) {
	t.Parallel()
	paymenttest.RunGatewaySuite(t, paymenttest.Harness{
		New: func(t *testing.T) paymenttest.Instance {
			f := newFake(t, nil)
			return paymenttest.Instance{Gateway: newGateway(t, f.URL, time.Second), Charges: f.Charges}
		},
		Outcomes: fakeOutcomes,
	})
}
