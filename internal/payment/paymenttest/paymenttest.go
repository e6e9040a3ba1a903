// Package paymenttest is the contract of payment.Gateway as one suite, run against every
// adapter: the sandbox, Stripe's adapter over a fake of Stripe's wire protocol and over
// stripe-mock (Stripe's OpenAPI validator), and the wrappers (Resilient, Traced). A new
// adapter passes RunGatewaySuite before it is wired anywhere.
package paymenttest

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/checkout-backend/checkout/internal/cardnum"
	"github.com/checkout-backend/checkout/internal/payment"
)

// Outcome is what a provider answers a charge with one of its test tokens.
type Outcome struct {
	Token string
	// Status is the charge's outcome; "" when the provider refuses the token itself with a
	// *payment.PermanentError (an unknown payment method, a kind of token it does not take).
	Status payment.Status
	// DeclineCode is the reason of a decline (StatusDeclined).
	DeclineCode string
	// Message, when not empty, is the decline's message.
	Message string
}

// Instance is one fresh gateway for one subtest, and what the suite can see of its
// provider.
type Instance struct {
	Gateway payment.Gateway
	// Charges counts the distinct charges the provider made (declines included); nil when
	// the provider cannot tell.
	Charges func() int
}

// Harness describes one adapter to the suite.
type Harness struct {
	// New returns a fresh gateway, with a provider of its own where the provider keeps
	// state, for one subtest.
	New func(t *testing.T) Instance
	// Outcomes are the provider's test tokens and what it answers each with: at least one
	// StatusSucceeded (the first is the one idempotency and refunds are checked with).
	Outcomes []Outcome
	// Fixtures says the provider answers from canned fixtures (stripe-mock): it checks
	// every request against its specification but neither decides outcomes by token nor
	// remembers charges. The suite then checks the shape of each answer and skips, with
	// that reason, the cases that need a provider that decides or remembers.
	Fixtures bool
}

// Amount and currency of the suite's charges.
const (
	amount   = 2599
	currency = "EUR"
)

func chargeReq(token, key string) payment.ChargeRequest {
	return payment.ChargeRequest{OrderID: "order-" + key, AmountCents: amount, Currency: currency, Token: token, IdempotencyKey: key}
}

// RunGatewaySuite checks the payment.Gateway contract (internal/payment's package
// documentation) on the adapter h describes, each case a parallel subtest.
func RunGatewaySuite(t *testing.T, h Harness) {
	t.Helper()
	visa := ""
	var decline *Outcome
	for i, o := range h.Outcomes {
		if o.Status == payment.StatusSucceeded && visa == "" {
			visa = o.Token
		}
		if o.Status == payment.StatusDeclined && decline == nil {
			decline = &h.Outcomes[i]
		}
	}
	if visa == "" {
		t.Fatal("paymenttest: the harness names no token that succeeds")
	}
	stateful := func(t *testing.T) {
		t.Helper()
		if h.Fixtures {
			t.Skip("the provider answers from fixtures: it neither decides outcomes by token nor remembers charges")
		}
	}
	charges := func(in Instance) int {
		if in.Charges == nil {
			return -1
		}
		return in.Charges()
	}
	ctx := context.Background()

	t.Run("Name", func(t *testing.T) {
		t.Parallel()
		name := h.New(t).Gateway.Name()
		if other := h.New(t).Gateway.Name(); name == "" || other != name {
			t.Fatalf("Name() = %q, then %q: want one non-empty provider name", name, other)
		}
	})

	t.Run("Outcomes", func(t *testing.T) {
		t.Parallel()
		for _, o := range h.Outcomes {
			t.Run(o.Token, func(t *testing.T) {
				t.Parallel()
				in := h.New(t)
				before := charges(in)
				c, err := in.Gateway.Charge(ctx, chargeReq(o.Token, "outcome-"+o.Token))
				if o.Status == "" {
					if !payment.IsPermanent(err) {
						t.Fatalf("Charge = %+v, %v; want a *payment.PermanentError for a token the provider refuses", c, err)
					}
					noSecret(t, err.Error(), o.Token)
					if after := charges(in); after != before {
						t.Fatalf("a refused token made a charge (%d -> %d)", before, after)
					}
					return
				}
				if err != nil {
					t.Fatalf("Charge: %v; a decline is a result, not an error", err)
				}
				checkShape(t, c, o.Token)
				if h.Fixtures {
					return
				}
				if c.Status != o.Status || c.DeclineCode != o.DeclineCode || (o.Message != "" && c.Message != o.Message) {
					t.Fatalf("Charge = %+v, want status %q, decline code %q, message %q", c, o.Status, o.DeclineCode, o.Message)
				}
			})
		}
	})

	t.Run("SameKeyTwice_SameChargeChargedOnce", func(t *testing.T) {
		t.Parallel()
		stateful(t)
		in := h.New(t)
		first, err := in.Gateway.Charge(ctx, chargeReq(visa, "twice"))
		if err != nil {
			t.Fatal(err)
		}
		again, err := in.Gateway.Charge(ctx, chargeReq(visa, "twice"))
		if err != nil || again != first {
			t.Fatalf("the same request again = %+v, %v; want the first result %+v", again, err, first)
		}
		if n := charges(in); n != -1 && n != 1 {
			t.Fatalf("%d charges for one idempotency key, want 1", n)
		}
		other, err := in.Gateway.Charge(ctx, chargeReq(visa, "another"))
		if err != nil || other.ProviderPaymentID == first.ProviderPaymentID {
			t.Fatalf("another key = %+v, %v; want a charge of its own (not %s)", other, err, first.ProviderPaymentID)
		}
		if n := charges(in); n != -1 && n != 2 {
			t.Fatalf("%d charges for two idempotency keys, want 2", n)
		}
	})

	t.Run("SameKeyConcurrently_ChargedOnce", func(t *testing.T) {
		t.Parallel()
		stateful(t)
		in := h.New(t)
		const callers = 10
		results := make([]payment.Charge, callers)
		var wg sync.WaitGroup
		start := make(chan struct{})
		for i := range callers {
			wg.Go(func() {
				<-start
				c, err := in.Gateway.Charge(ctx, chargeReq(visa, "concurrent"))
				if err != nil {
					t.Errorf("caller %d: %v", i, err)
				}
				results[i] = c
			})
		}
		close(start)
		wg.Wait()
		for _, c := range results {
			if c != results[0] {
				t.Fatalf("callers of one key got different charges: %+v", results)
			}
		}
		if n := charges(in); n != -1 && n != 1 {
			t.Fatalf("%d charges for %d concurrent calls with one key, want 1", n, callers)
		}
	})

	t.Run("SameKeyOtherRequest_Refused", func(t *testing.T) {
		t.Parallel()
		stateful(t)
		in := h.New(t)
		if _, err := in.Gateway.Charge(ctx, chargeReq(visa, "reused")); err != nil {
			t.Fatal(err)
		}
		changed := chargeReq(visa, "reused")
		changed.AmountCents++
		if c, err := in.Gateway.Charge(ctx, changed); !payment.IsPermanent(err) {
			t.Fatalf("a key reused for another amount = %+v, %v; want a *payment.PermanentError", c, err)
		}
		if n := charges(in); n != -1 && n != 1 {
			t.Fatalf("%d charges, want 1: a reused key never charges again", n)
		}
	})

	t.Run("Refund", func(t *testing.T) {
		t.Parallel()
		in := h.New(t)
		c, err := in.Gateway.Charge(ctx, chargeReq(visa, "refund"))
		if err != nil {
			t.Fatal(err)
		}
		part := payment.RefundRequest{OrderID: "order-refund", ProviderPaymentID: c.ProviderPaymentID, AmountCents: 1000,
			IdempotencyKey: "refund-1", Reason: "requested_by_customer"}
		ref, err := in.Gateway.Refund(ctx, part)
		if err != nil || ref.ProviderRefundID == "" || ref.Status == "" {
			t.Fatalf("Refund = %+v, %v; want a refund id and a status", ref, err)
		}
		if h.Fixtures {
			return
		}
		if again, err := in.Gateway.Refund(ctx, part); err != nil || again != ref {
			t.Fatalf("the same refund again = %+v, %v; want the first %+v", again, err, ref)
		}
		// The rest (AmountCents 0: what remains), then nothing is left to refund.
		rest, err := in.Gateway.Refund(ctx, payment.RefundRequest{ProviderPaymentID: c.ProviderPaymentID, IdempotencyKey: "refund-2"})
		if err != nil || rest.ProviderRefundID == "" || rest.ProviderRefundID == ref.ProviderRefundID {
			t.Fatalf("refund of the rest = %+v, %v", rest, err)
		}
		for _, r := range []payment.RefundRequest{
			{ProviderPaymentID: c.ProviderPaymentID, IdempotencyKey: "refund-3"},
			{ProviderPaymentID: c.ProviderPaymentID, AmountCents: 1, IdempotencyKey: "refund-4"},
		} {
			if _, err := in.Gateway.Refund(ctx, r); !payment.IsPermanent(err) {
				t.Errorf("refund of a fully refunded charge (%+v) = %v, want a *payment.PermanentError", r, err)
			}
		}
	})

	t.Run("RefundMoreThanCharged_Refused", func(t *testing.T) {
		t.Parallel()
		stateful(t)
		in := h.New(t)
		c, err := in.Gateway.Charge(ctx, chargeReq(visa, "over"))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := in.Gateway.Refund(ctx, payment.RefundRequest{ProviderPaymentID: c.ProviderPaymentID, AmountCents: amount + 1, IdempotencyKey: "over-1"}); !payment.IsPermanent(err) {
			t.Fatalf("refund of more than was charged: %v, want a *payment.PermanentError", err)
		}
		if _, err := in.Gateway.Refund(ctx, payment.RefundRequest{ProviderPaymentID: c.ProviderPaymentID, AmountCents: amount, IdempotencyKey: "over-2"}); err != nil {
			t.Fatalf("a refused refund took money: the whole amount is no longer refundable: %v", err)
		}
	})

	t.Run("RefundUnknownOrDeclinedPayment_Refused", func(t *testing.T) {
		t.Parallel()
		stateful(t)
		in := h.New(t)
		if _, err := in.Gateway.Refund(ctx, payment.RefundRequest{ProviderPaymentID: "pi_unknown0000", IdempotencyKey: "unknown"}); !payment.IsPermanent(err) {
			t.Errorf("refund of an unknown payment: %v, want a *payment.PermanentError", err)
		}
		if decline == nil {
			return
		}
		d, err := in.Gateway.Charge(ctx, chargeReq(decline.Token, "declined"))
		if err != nil || d.Status != payment.StatusDeclined {
			t.Fatalf("Charge(%s) = %+v, %v", decline.Token, d, err)
		}
		if d.ProviderPaymentID == "" {
			return // nothing the provider could refund names it
		}
		if _, err := in.Gateway.Refund(ctx, payment.RefundRequest{ProviderPaymentID: d.ProviderPaymentID, IdempotencyKey: "declined"}); !payment.IsPermanent(err) {
			t.Errorf("refund of a declined charge: %v, want a *payment.PermanentError", err)
		}
	})

	t.Run("InvalidRequests_RefusedBeforeCharging", func(t *testing.T) {
		t.Parallel()
		in := h.New(t)
		const pan = "4242 4242 4242 4242"
		tooLong := strings.Repeat("k", payment.MaxIdempotencyKeyLen+1)
		for name, r := range map[string]payment.ChargeRequest{
			"zero amount":      {AmountCents: 0, Currency: currency, Token: visa, IdempotencyKey: "k1"},
			"negative amount":  {AmountCents: -1, Currency: currency, Token: visa, IdempotencyKey: "k2"},
			"no currency":      {AmountCents: amount, Token: visa, IdempotencyKey: "k3"},
			"not a currency":   {AmountCents: amount, Currency: "EURO", Token: visa, IdempotencyKey: "k4"},
			"no token":         {AmountCents: amount, Currency: currency, IdempotencyKey: "k5"},
			"a card number":    {AmountCents: amount, Currency: currency, Token: pan, IdempotencyKey: "k6"},
			"no key":           {AmountCents: amount, Currency: currency, Token: visa},
			"a key too long":   {AmountCents: amount, Currency: currency, Token: visa, IdempotencyKey: tooLong},
			"card number, raw": {AmountCents: amount, Currency: currency, Token: strings.ReplaceAll(pan, " ", ""), IdempotencyKey: "k7"},
		} {
			c, err := in.Gateway.Charge(ctx, r)
			if !payment.IsPermanent(err) {
				t.Errorf("%s: Charge = %+v, %v; want a *payment.PermanentError", name, c, err)
				continue
			}
			noSecret(t, err.Error(), r.Token)
		}
		for name, r := range map[string]payment.RefundRequest{
			"no payment id":   {IdempotencyKey: "r1"},
			"negative amount": {ProviderPaymentID: "pi_x", AmountCents: -1, IdempotencyKey: "r2"},
			"no key":          {ProviderPaymentID: "pi_x"},
		} {
			if _, err := in.Gateway.Refund(ctx, r); !payment.IsPermanent(err) {
				t.Errorf("%s: Refund = %v, want a *payment.PermanentError", name, err)
			}
		}
		if n := charges(in); n > 0 {
			t.Fatalf("invalid requests made %d charges", n)
		}
	})

	t.Run("CanceledContext_NotTransientNothingCharged", func(t *testing.T) {
		t.Parallel()
		in := h.New(t)
		cctx, cancel := context.WithCancel(ctx)
		cancel()
		c, err := in.Gateway.Charge(cctx, chargeReq(visa, "canceled"))
		if !errors.Is(err, context.Canceled) || payment.IsTransient(err) {
			t.Fatalf("Charge with a canceled context = %+v, %v; want context.Canceled, not transient", c, err)
		}
		if n := charges(in); n > 0 {
			t.Fatalf("a canceled call made %d charges", n)
		}
	})
}

// checkShape checks what every answer to a charge carries, whatever its outcome.
func checkShape(t *testing.T, c payment.Charge, token string) {
	t.Helper()
	var problems []string
	switch c.Status {
	case payment.StatusSucceeded, payment.StatusRequiresAction:
		if c.ProviderPaymentID == "" {
			problems = append(problems, "no provider payment id")
		}
		if c.DeclineCode != "" {
			problems = append(problems, "a decline code on a charge that was not declined")
		}
	case payment.StatusDeclined:
		if c.DeclineCode == "" {
			problems = append(problems, "a decline without its reason")
		}
	default:
		problems = append(problems, fmt.Sprintf("unknown status %q", c.Status))
	}
	if c.AmountCents != amount || c.Currency != currency {
		problems = append(problems, fmt.Sprintf("amount %d %s, want %d %s", c.AmountCents, c.Currency, amount, currency))
	}
	if len(problems) > 0 {
		t.Fatalf("Charge = %+v: %s", c, strings.Join(problems, "; "))
	}
	noSecret(t, c.Message, token)
}

// noSecret fails t when text carries the token or anything shaped like a card number.
func noSecret(t *testing.T, text, token string) {
	t.Helper()
	if token != "" && strings.Contains(text, token) {
		t.Errorf("%q carries the token %q", text, token)
	}
	if cardnum.Contains(text) {
		t.Errorf("%q carries something shaped like a card number", text)
	}
}
