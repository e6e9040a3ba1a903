package sandbox_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/checkout-backend/checkout/internal/payment"
	"github.com/checkout-backend/checkout/internal/payment/sandbox"
)

func charge(token, key string) payment.ChargeRequest {
	return payment.ChargeRequest{OrderID: "order-1", AmountCents: 2599, Currency: "EUR", Token: token, IdempotencyKey: key}
}

func TestTokens(t *testing.T) {
	t.Parallel()
	tests := []struct {
		token  string
		status payment.Status
		code   string
		msg    string
	}{
		{"tok_visa", payment.StatusSucceeded, "", ""},
		{"pm_card_visa", payment.StatusSucceeded, "", ""},
		{"tok_visa_debit", payment.StatusSucceeded, "", ""},
		{"tok_mastercard", payment.StatusSucceeded, "", ""},
		{"pm_card_mastercard_prepaid", payment.StatusSucceeded, "", ""},
		{"tok_amex", payment.StatusSucceeded, "", ""},
		{"pm_card_amex", payment.StatusSucceeded, "", ""},
		{"tok_chargeDeclined", payment.StatusDeclined, "card_declined", sandbox.MsgDeclined},
		{"pm_card_chargeDeclined", payment.StatusDeclined, "card_declined", sandbox.MsgDeclined},
		{"tok_chargeDeclinedInsufficientFunds", payment.StatusDeclined, "insufficient_funds", sandbox.MsgInsufficientFunds},
		{"pm_card_chargeDeclinedInsufficientFunds", payment.StatusDeclined, "insufficient_funds", sandbox.MsgInsufficientFunds},
		{"tok_chargeDeclinedExpiredCard", payment.StatusDeclined, "expired_card", "Your card has expired."},
		{"pm_card_chargeDeclinedIncorrectCvc", payment.StatusDeclined, "incorrect_cvc", "Your card's security code is incorrect."},
		{"tok_chargeDeclinedFraudulent", payment.StatusDeclined, "fraudulent", sandbox.MsgDeclined},
		{"tok_threeDSecure2Required", payment.StatusRequiresAction, "", ""},
		{"pm_card_threeDSecure2Required", payment.StatusRequiresAction, "", ""},
		{"tok_nonsense", payment.StatusDeclined, "card_declined", sandbox.MsgUnknownToken},
		{"pm_card_nonsense", payment.StatusDeclined, "card_declined", sandbox.MsgUnknownToken},
		{"pm_1OtherKindOfID", payment.StatusDeclined, "card_declined", sandbox.MsgUnknownToken},
		{"visa", payment.StatusDeclined, "card_declined", sandbox.MsgUnknownToken},
	}
	g := sandbox.New()
	for _, tc := range tests {
		t.Run(tc.token, func(t *testing.T) {
			t.Parallel()
			c, err := g.Charge(context.Background(), charge(tc.token, "key-"+tc.token))
			if err != nil {
				t.Fatalf("Charge: %v", err)
			}
			if c.Status != tc.status || c.DeclineCode != tc.code || c.Message != tc.msg {
				t.Fatalf("Charge = %+v, want status %q code %q message %q", c, tc.status, tc.code, tc.msg)
			}
			if !strings.HasPrefix(c.ProviderPaymentID, "pi_") || c.AmountCents != 2599 {
				t.Fatalf("Charge = %+v, want a pi_ id and the amount", c)
			}
			if strings.Contains(c.Message, tc.token) {
				t.Fatalf("message %q contains the token", c.Message)
			}
		})
	}
}

func TestIdempotentCharge(t *testing.T) {
	t.Parallel()
	g := sandbox.New()
	ctx := context.Background()
	first, err := g.Charge(ctx, charge("tok_visa", "order-1/charge"))
	if err != nil {
		t.Fatal(err)
	}
	again, err := g.Charge(ctx, charge("tok_visa", "order-1/charge"))
	if err != nil || again != first {
		t.Fatalf("repeat = %+v, %v; want the first result %+v", again, err, first)
	}
	if g.ChargeCount() != 1 || len(g.Charges()) != 1 || g.Charges()[0] != first {
		t.Fatalf("charges = %+v, want exactly the first", g.Charges())
	}
	// Ids derive from the key: another sandbox gives the same id.
	if other, _ := sandbox.New().Charge(ctx, charge("tok_visa", "order-1/charge")); other.ProviderPaymentID != first.ProviderPaymentID {
		t.Fatalf("ids differ across sandboxes: %q, %q", other.ProviderPaymentID, first.ProviderPaymentID)
	}
	second, err := g.Charge(ctx, charge("tok_visa", "order-2/charge"))
	if err != nil || second.ProviderPaymentID == first.ProviderPaymentID || g.ChargeCount() != 2 {
		t.Fatalf("a new key must be a new charge: %+v, %v, count %d", second, err, g.ChargeCount())
	}
	// Same key, different request: Stripe's idempotency_error.
	changed := charge("tok_visa", "order-1/charge")
	changed.AmountCents++
	if _, err := g.Charge(ctx, changed); !payment.IsPermanent(err) {
		t.Fatalf("reused key with other parameters: err = %v, want *PermanentError", err)
	}
}

func TestConcurrentSameKeyChargesOnce(t *testing.T) {
	t.Parallel()
	g := sandbox.New()
	var wg sync.WaitGroup
	ids := make([]string, 20)
	for i := range ids {
		wg.Go(func() {
			c, err := g.Charge(context.Background(), charge("pm_card_visa", "same"))
			if err != nil {
				t.Error(err)
			}
			ids[i] = c.ProviderPaymentID
		})
	}
	wg.Wait()
	for _, id := range ids {
		if id != ids[0] {
			t.Fatalf("ids differ: %v", ids)
		}
	}
	if g.ChargeCount() != 1 {
		t.Fatalf("ChargeCount = %d, want 1", g.ChargeCount())
	}
}

func TestRefund(t *testing.T) {
	t.Parallel()
	g := sandbox.New()
	ctx := context.Background()
	c, err := g.Charge(ctx, charge("tok_visa", "c1"))
	if err != nil {
		t.Fatal(err)
	}
	rr := payment.RefundRequest{OrderID: "order-1", ProviderPaymentID: c.ProviderPaymentID, AmountCents: 1000, IdempotencyKey: "r1", Reason: "requested_by_customer"}
	ref, err := g.Refund(ctx, rr)
	if err != nil || !strings.HasPrefix(ref.ProviderRefundID, "re_") || ref.Status != "succeeded" {
		t.Fatalf("Refund = %+v, %v", ref, err)
	}
	if again, err := g.Refund(ctx, rr); err != nil || again != ref || g.RefundCount() != 1 {
		t.Fatalf("repeat = %+v, %v, count %d; want the first refund once", again, err, g.RefundCount())
	}
	// The rest (1599) in full, then nothing is left.
	if _, err := g.Refund(ctx, payment.RefundRequest{ProviderPaymentID: c.ProviderPaymentID, IdempotencyKey: "r2"}); err != nil {
		t.Fatalf("refund rest: %v", err)
	}
	if len(g.Refunds()) != 2 {
		t.Fatalf("Refunds = %+v", g.Refunds())
	}
	for _, bad := range []payment.RefundRequest{
		{ProviderPaymentID: c.ProviderPaymentID, AmountCents: 1, IdempotencyKey: "r3"},
		{ProviderPaymentID: "pi_unknown", IdempotencyKey: "r4"},
		{ProviderPaymentID: c.ProviderPaymentID, IdempotencyKey: ""},
	} {
		if _, err := g.Refund(ctx, bad); !payment.IsPermanent(err) {
			t.Errorf("Refund(%+v) = %v, want *PermanentError", bad, err)
		}
	}
	d, _ := g.Charge(ctx, charge("tok_chargeDeclined", "c2"))
	if _, err := g.Refund(ctx, payment.RefundRequest{ProviderPaymentID: d.ProviderPaymentID, IdempotencyKey: "r5"}); !payment.IsPermanent(err) {
		t.Errorf("refund of a declined charge: %v", err)
	}
}

func TestInvalidRequestsAndInjectedFailures(t *testing.T) {
	t.Parallel()
	g := sandbox.New()
	ctx := context.Background()
	pan := charge("4242424242424242", "k")
	if _, err := g.Charge(ctx, pan); !payment.IsPermanent(err) || strings.Contains(err.Error(), "4242") {
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
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := g.Charge(cctx, charge("tok_visa", "k2")); err != context.Canceled {
		t.Fatalf("canceled ctx: %v", err)
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
