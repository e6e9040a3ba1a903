// Package sandbox is an in-memory payment.Gateway that answers as Stripe does
// in test mode for its documented test tokens (tok_visa, pm_card_visa,
// tok_chargeDeclined, pm_card_threeDSecure2Required, ...). It needs no
// network, is deterministic, and is idempotent like Stripe: a repeated
// idempotency key returns the first result and charges nothing more, which
// tests can observe through ChargeCount and Charges.
package sandbox

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"strconv"
	"strings"
	"sync"

	"github.com/checkout-backend/checkout/internal/payment"
)

// ProviderName is what Name returns.
const ProviderName = "sandbox"

// Messages of the simulated declines.
const (
	MsgDeclined          = "Your card was declined."
	MsgInsufficientFunds = "Your card has insufficient funds."
	MsgUnknownToken      = "unknown sandbox token"
)

type outcome struct {
	status payment.Status
	code   string
	msg    string
}

// outcomes maps a test token's name, without its tok_ or pm_card_ prefix,
// to its result, after Stripe's documented test cards.
var outcomes = func() map[string]outcome {
	ok := outcome{status: payment.StatusSucceeded}
	m := map[string]outcome{
		"threeDSecure2Required": {status: payment.StatusRequiresAction},
	}
	for _, brand := range []string{
		"visa", "visa_debit", "mastercard", "mastercard_debit",
		"mastercard_prepaid", "amex",
	} {
		m[brand] = ok
	}
	for name, d := range map[string][2]string{
		"chargeDeclined":                  {"card_declined", MsgDeclined},
		"chargeDeclinedInsufficientFunds": {"insufficient_funds", MsgInsufficientFunds},
		"chargeDeclinedFraudulent":        {"fraudulent", MsgDeclined},
		"chargeDeclinedLostCard":          {"lost_card", MsgDeclined},
		"chargeDeclinedStolenCard":        {"stolen_card", MsgDeclined},
		"chargeDeclinedExpiredCard":       {"expired_card", "Your card has expired."},
		"chargeDeclinedIncorrectCvc":      {"incorrect_cvc", "Your card's security code is incorrect."},
		"chargeDeclinedProcessingError":   {"processing_error", "An error occurred while processing your card. Try again in a little bit."},
	} {
		m[name] = outcome{status: payment.StatusDeclined, code: d[0], msg: d[1]}
	}
	return m
}()

func lookup(token string) outcome {
	for _, prefix := range []string{"tok_", "pm_card_"} {
		if name, ok := strings.CutPrefix(token, prefix); ok {
			if o, ok := outcomes[name]; ok {
				return o
			}
		}
	}
	return outcome{status: payment.StatusDeclined, code: "card_declined", msg: MsgUnknownToken}
}

type chargeEntry struct {
	fingerprint [32]byte
	charge      payment.Charge
	refunded    int64
}

type refundEntry struct {
	fingerprint [32]byte
	refund      payment.Refund
}

// Gateway is the sandbox payment.Gateway. The zero value is not usable; call
// New. It is safe for concurrent use.
type Gateway struct {
	mu          sync.Mutex
	charges     map[string]*chargeEntry // by idempotency key
	chargeOrder []string
	byID        map[string]*chargeEntry // by provider payment id
	refunds     map[string]*refundEntry // by idempotency key
	refundOrder []string
	failNext    int
	dropNext    int
	calls       int
}

var _ payment.Gateway = (*Gateway)(nil)

// New returns an empty sandbox.
func New() *Gateway {
	return &Gateway{
		charges: map[string]*chargeEntry{},
		byID:    map[string]*chargeEntry{},
		refunds: map[string]*refundEntry{},
	}
}

// Name returns "sandbox".
func (g *Gateway) Name() string { return ProviderName }

// Charge answers as Stripe would for r.Token. The provider payment id is
// derived from r.IdempotencyKey, and a repeated key returns the first result
// (or a *payment.PermanentError if the request differs, as Stripe's
// idempotency_error).
func (g *Gateway) Charge(ctx context.Context, r payment.ChargeRequest) (payment.Charge, error) {
	if err := r.Validate(); err != nil {
		return payment.Charge{}, withProvider(err)
	}
	if err := ctx.Err(); err != nil {
		return payment.Charge{}, err
	}
	fp := fingerprint("charge", r.OrderID, r.Token, strings.ToUpper(r.Currency), itoa(r.AmountCents))

	g.mu.Lock()
	defer g.mu.Unlock()
	g.calls++
	if err := g.injectedBefore("charge"); err != nil {
		return payment.Charge{}, err
	}
	if e, ok := g.charges[r.IdempotencyKey]; ok {
		if e.fingerprint != fp {
			return payment.Charge{}, idempotencyMismatch("charge")
		}
		return e.charge, g.injectedAfter("charge")
	}
	o := lookup(r.Token)
	c := payment.Charge{
		ProviderPaymentID: "pi_sbx_" + derive("charge", r.IdempotencyKey),
		Status:            o.status,
		DeclineCode:       o.code,
		Message:           o.msg,
		AmountCents:       r.AmountCents,
		Currency:          strings.ToUpper(r.Currency),
	}
	e := &chargeEntry{fingerprint: fp, charge: c}
	g.charges[r.IdempotencyKey] = e
	g.chargeOrder = append(g.chargeOrder, r.IdempotencyKey)
	g.byID[c.ProviderPaymentID] = e
	return c, g.injectedAfter("charge")
}

// Refund refunds a succeeded sandbox charge, fully when r.AmountCents is 0.
// It is idempotent on r.IdempotencyKey like Charge. Refunding an unknown or
// unsucceeded payment, or more than remains, is a *payment.PermanentError.
func (g *Gateway) Refund(ctx context.Context, r payment.RefundRequest) (payment.Refund, error) {
	if err := r.Validate(); err != nil {
		return payment.Refund{}, withProvider(err)
	}
	if err := ctx.Err(); err != nil {
		return payment.Refund{}, err
	}
	fp := fingerprint("refund", r.OrderID, r.ProviderPaymentID, itoa(r.AmountCents), r.Reason)

	g.mu.Lock()
	defer g.mu.Unlock()
	g.calls++
	if err := g.injectedBefore("refund"); err != nil {
		return payment.Refund{}, err
	}
	if e, ok := g.refunds[r.IdempotencyKey]; ok {
		if e.fingerprint != fp {
			return payment.Refund{}, idempotencyMismatch("refund")
		}
		return e.refund, g.injectedAfter("refund")
	}
	c, ok := g.byID[r.ProviderPaymentID]
	if !ok {
		return payment.Refund{}, &payment.PermanentError{Provider: ProviderName, Op: "refund", HTTPStatus: 404, Code: "resource_missing", Msg: "no such payment"}
	}
	if c.charge.Status != payment.StatusSucceeded {
		return payment.Refund{}, &payment.PermanentError{Provider: ProviderName, Op: "refund", HTTPStatus: 400, Code: "charge_not_refundable", Msg: "payment did not succeed"}
	}
	remaining := c.charge.AmountCents - c.refunded
	amount := r.AmountCents
	if amount == 0 {
		amount = remaining
	}
	if remaining == 0 {
		return payment.Refund{}, &payment.PermanentError{Provider: ProviderName, Op: "refund", HTTPStatus: 400, Code: "charge_already_refunded", Msg: "payment already fully refunded"}
	}
	if amount > remaining {
		return payment.Refund{}, &payment.PermanentError{Provider: ProviderName, Op: "refund", HTTPStatus: 400, Code: "amount_too_large", Msg: "refund exceeds the unrefunded amount"}
	}
	c.refunded += amount
	ref := payment.Refund{ProviderRefundID: "re_sbx_" + derive("refund", r.IdempotencyKey), Status: "succeeded"}
	g.refunds[r.IdempotencyKey] = &refundEntry{fingerprint: fp, refund: ref}
	g.refundOrder = append(g.refundOrder, r.IdempotencyKey)
	return ref, g.injectedAfter("refund")
}

// ChargeCount returns the number of distinct charges (distinct idempotency
// keys) the sandbox has processed, declines included.
func (g *Gateway) ChargeCount() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return len(g.chargeOrder)
}

// Charges returns the distinct charges in the order they were first made.
func (g *Gateway) Charges() []payment.Charge {
	g.mu.Lock()
	defer g.mu.Unlock()
	out := make([]payment.Charge, 0, len(g.chargeOrder))
	for _, k := range g.chargeOrder {
		out = append(out, g.charges[k].charge)
	}
	return out
}

// RefundCount returns the number of distinct refunds.
func (g *Gateway) RefundCount() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return len(g.refundOrder)
}

// Refunds returns the distinct refunds in the order they were first made.
func (g *Gateway) Refunds() []payment.Refund {
	g.mu.Lock()
	defer g.mu.Unlock()
	out := make([]payment.Refund, 0, len(g.refundOrder))
	for _, k := range g.refundOrder {
		out = append(out, g.refunds[k].refund)
	}
	return out
}

// Calls returns the number of Charge and Refund calls that passed
// validation, repeats and injected failures included.
func (g *Gateway) Calls() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.calls
}

// FailNext makes the next n calls fail with a transient error before the
// sandbox acts, as when the provider cannot be reached: nothing is charged.
func (g *Gateway) FailNext(n int) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.failNext = n
}

// DropNextResponses makes the next n calls act (charge, refund) and then
// fail with a transient error, as when the connection breaks after the
// provider charged: only a retry with the same idempotency key learns the
// result, without charging again.
func (g *Gateway) DropNextResponses(n int) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.dropNext = n
}

func (g *Gateway) injectedBefore(op string) error {
	if g.failNext <= 0 {
		return nil
	}
	g.failNext--
	return &payment.TransientError{Provider: ProviderName, Op: op, HTTPStatus: 503, Msg: "injected failure: provider unreachable"}
}

func (g *Gateway) injectedAfter(op string) error {
	if g.dropNext <= 0 {
		return nil
	}
	g.dropNext--
	return &payment.TransientError{Provider: ProviderName, Op: op, Msg: "injected failure: response lost"}
}

func idempotencyMismatch(op string) error {
	return &payment.PermanentError{
		Provider: ProviderName, Op: op, HTTPStatus: 400, Code: "idempotency_error",
		Msg: "idempotency key reused with different parameters",
	}
}

func withProvider(err error) error {
	if pe, ok := err.(*payment.PermanentError); ok {
		pe.Provider = ProviderName
	}
	return err
}

// derive returns a stable id suffix for an idempotency key.
func derive(kind, key string) string {
	sum := sha256.Sum256([]byte(kind + "\x00" + key))
	return hex.EncodeToString(sum[:12])
}

func fingerprint(parts ...string) [32]byte {
	return sha256.Sum256([]byte(strings.Join(parts, "\x00")))
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }
