package sandbox_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/checkout-backend/checkout/internal/payment"
	"github.com/checkout-backend/checkout/internal/payment/paymenttest"
	"github.com/checkout-backend/checkout/internal/payment/sandbox"
)

// outcomes are the sandbox's answers to Stripe's documented test tokens, in both forms
// (tok_ and pm_card_); anything else is declined as an unknown token.
var outcomes = []paymenttest.Outcome{
	{Token: "tok_visa", Status: payment.StatusSucceeded},
	{Token: "pm_card_visa", Status: payment.StatusSucceeded},
	{Token: "tok_visa_debit", Status: payment.StatusSucceeded},
	{Token: "tok_mastercard", Status: payment.StatusSucceeded},
	{Token: "pm_card_mastercard_prepaid", Status: payment.StatusSucceeded},
	{Token: "tok_amex", Status: payment.StatusSucceeded},
	{Token: "pm_card_amex", Status: payment.StatusSucceeded},
	{Token: "tok_chargeDeclined", Status: payment.StatusDeclined, DeclineCode: "card_declined", Message: sandbox.MsgDeclined},
	{Token: "pm_card_chargeDeclined", Status: payment.StatusDeclined, DeclineCode: "card_declined", Message: sandbox.MsgDeclined},
	{Token: "tok_chargeDeclinedInsufficientFunds", Status: payment.StatusDeclined, DeclineCode: "insufficient_funds", Message: sandbox.MsgInsufficientFunds},
	{Token: "pm_card_chargeDeclinedInsufficientFunds", Status: payment.StatusDeclined, DeclineCode: "insufficient_funds", Message: sandbox.MsgInsufficientFunds},
	{Token: "tok_chargeDeclinedExpiredCard", Status: payment.StatusDeclined, DeclineCode: "expired_card", Message: "Your card has expired."},
	{Token: "pm_card_chargeDeclinedIncorrectCvc", Status: payment.StatusDeclined, DeclineCode: "incorrect_cvc", Message: "Your card's security code is incorrect."},
	{Token: "tok_chargeDeclinedFraudulent", Status: payment.StatusDeclined, DeclineCode: "fraudulent", Message: sandbox.MsgDeclined},
	{Token: "tok_threeDSecure2Required", Status: payment.StatusRequiresAction},
	{Token: "pm_card_threeDSecure2Required", Status: payment.StatusRequiresAction},
	{Token: "tok_nonsense", Status: payment.StatusDeclined, DeclineCode: "card_declined", Message: sandbox.MsgUnknownToken},
	{Token: "pm_card_nonsense", Status: payment.StatusDeclined, DeclineCode: "card_declined", Message: sandbox.MsgUnknownToken},
	{Token: "pm_1OtherKindOfID", Status: payment.StatusDeclined, DeclineCode: "card_declined", Message: sandbox.MsgUnknownToken},
	{Token: "visa", Status: payment.StatusDeclined, DeclineCode: "card_declined", Message: sandbox.MsgUnknownToken},
}

// The payment.Gateway contract, on a fresh sandbox per case.
func TestGatewayContract(t *testing.T) {
	t.Parallel()
	paymenttest.RunGatewaySuite(t, paymenttest.Harness{
		New: func(t *testing.T) paymenttest.Instance {
			g := sandbox.New()
			return paymenttest.Instance{Gateway: g, Charges: g.ChargeCount}
		},
		Outcomes: outcomes,
	})
}

func charge(token, key string) payment.ChargeRequest {
	return payment.ChargeRequest{OrderID: "order-1", AmountCents: 2599, Currency: "EUR", Token: token, IdempotencyKey: key}
}

// Ids derive from the idempotency key: another sandbox (a restarted service) answers a
// retried charge with the same payment id.
func TestProviderPaymentID_DerivesFromTheKey(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	first, err := sandbox.New().Charge(ctx, charge("tok_visa", "order-1/charge"))
	if err != nil {
		t.Fatal(err)
	}
	if other, _ := sandbox.New().Charge(ctx, charge("tok_visa", "order-1/charge")); other.ProviderPaymentID != first.ProviderPaymentID {
		t.Fatalf("ids differ across sandboxes: %q, %q", other.ProviderPaymentID, first.ProviderPaymentID)
	}
}

// Charges and Refunds list what the sandbox did, once per key, in order.
func TestChargesAndRefunds_ListedOncePerKey(t *testing.T) {
	t.Parallel()
	g := sandbox.New()
	ctx := context.Background()
	c, _ := g.Charge(ctx, charge("tok_visa", "c1"))
	g.Charge(ctx, charge("tok_visa", "c1"))
	d, _ := g.Charge(ctx, charge("tok_chargeDeclined", "c2"))
	if got := g.Charges(); len(got) != 2 || got[0] != c || got[1] != d {
		t.Fatalf("Charges = %+v, want the charge then the decline", got)
	}
	rr := payment.RefundRequest{ProviderPaymentID: c.ProviderPaymentID, AmountCents: 1000, IdempotencyKey: "r1"}
	ref, _ := g.Refund(ctx, rr)
	g.Refund(ctx, rr)
	if got := g.Refunds(); g.RefundCount() != 1 || len(got) != 1 || got[0] != ref {
		t.Fatalf("Refunds = %+v (count %d), want the one refund", got, g.RefundCount())
	}
}

func TestInvalidRequestsAndInjectedFailures(t *testing.T) {
	t.Parallel()
	g := sandbox.New()
	ctx := context.Background()
	if _, err := g.Charge(ctx, charge("4242424242424242", "k")); !payment.IsPermanent(err) {
		t.Fatalf("card number: err = %v", err)
	}
	if g.ChargeCount() != 0 || g.Calls() != 0 {
		t.Fatal("an invalid request was recorded")
	}

	g.FailNext(1)
	if _, err := g.Charge(ctx, charge("tok_visa", "k")); !payment.IsTransient(err) {
		t.Fatalf("FailNext: err = %v, want transient", err)
	}
	if g.ChargeCount() != 0 {
		t.Fatal("FailNext must fail before charging")
	}
	g.DropNextResponses(1)
	if _, err := g.Charge(ctx, charge("tok_visa", "k")); !payment.IsTransient(err) {
		t.Fatalf("DropNextResponses: err = %v, want transient", err)
	}
	if g.ChargeCount() != 1 {
		t.Fatal("DropNextResponses must charge")
	}
	if c, err := g.Charge(ctx, charge("tok_visa", "k")); err != nil || c.Status != payment.StatusSucceeded || g.ChargeCount() != 1 {
		t.Fatalf("retry = %+v, %v, count %d", c, err, g.ChargeCount())
	}
}

func ExampleGateway() {
	g := sandbox.New()
	c, _ := g.Charge(context.Background(), payment.ChargeRequest{
		OrderID: "o-42", AmountCents: 1999, Currency: "USD",
		Token: "tok_chargeDeclinedInsufficientFunds", IdempotencyKey: "o-42/charge/1",
	})
	fmt.Println(c.Status, c.DeclineCode)
	// Output: declined insufficient_funds
}
