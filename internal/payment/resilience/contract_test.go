package resilience_test

import (
	"testing"

	"github.com/checkout-backend/checkout/internal/payment"
	"github.com/checkout-backend/checkout/internal/payment/paymenttest"
	"github.com/checkout-backend/checkout/internal/payment/resilience"
	"github.com/checkout-backend/checkout/internal/payment/sandbox"
)

// The wrappers are gateways too: around a sandbox, each keeps the payment.Gateway
// contract (a retry never charges twice, a decline passes through as a result).
func TestGatewayContract_Wrappers(t *testing.T) {
	t.Parallel()
	outcomes := []paymenttest.Outcome{
		{Token: "tok_visa", Status: payment.StatusSucceeded},
		{Token: "pm_card_threeDSecure2Required", Status: payment.StatusRequiresAction},
		{Token: "tok_chargeDeclinedInsufficientFunds", Status: payment.StatusDeclined, DeclineCode: "insufficient_funds", Message: sandbox.MsgInsufficientFunds},
	}
	for name, wrap := range map[string]func(payment.Gateway) payment.Gateway{
		"Resilient": func(g payment.Gateway) payment.Gateway { return resilience.New(g, resilience.Options{}) },
		"Traced":    resilience.Traced,
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			paymenttest.RunGatewaySuite(t, paymenttest.Harness{
				New: func(t *testing.T) paymenttest.Instance {
					g := sandbox.New()
					return paymenttest.Instance{Gateway: wrap(g), Charges: g.ChargeCount}
				},
				Outcomes: outcomes,
			})
		})
	}
}
