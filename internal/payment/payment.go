// Package payment is the checkout's port to a payment provider.
//
// A Gateway charges an order's total with a provider token that the client
// obtained from the provider (tok_visa, pm_card_visa, ...; never a card
// number) and refunds charges. Adapters live in subpackages (sandbox, stripe);
// Resilient wraps any Gateway with a circuit breaker and retries.
//
// Outcomes and errors:
//   - A decline is not an error: Charge returns Charge{Status: StatusDeclined,
//     DeclineCode, Message} and a nil error.
//   - An error means the outcome is unknown or the failure is temporary
//     (IsTransient reports true: network errors, timeouts, HTTP 5xx and 429,
//     circuit breaker open), or that the request can never succeed as sent
//     (*PermanentError: an invalid request, a bad key, an unknown payment).
//   - Retrying is safe only with the same ChargeRequest, hence the same
//     IdempotencyKey: the provider then answers with the first result instead
//     of charging again.
//
// Neither a Gateway nor an error it returns ever contains the token.
package payment

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"

	"github.com/checkout-backend/checkout/internal/cardnum"
)

// Status is the outcome of a charge.
type Status string

// Charge outcomes.
const (
	// StatusSucceeded means the money was taken.
	StatusSucceeded Status = "succeeded"
	// StatusRequiresAction means the customer must authenticate (3-D Secure)
	// before the payment can complete.
	StatusRequiresAction Status = "requires_action"
	// StatusDeclined means the provider refused the payment; see
	// Charge.DeclineCode.
	StatusDeclined Status = "declined"
)

// ChargeRequest asks a Gateway to charge an order's total.
type ChargeRequest struct {
	// OrderID is recorded with the payment at the provider.
	OrderID string
	// AmountCents is the amount in the currency's minor unit; it must be > 0.
	AmountCents int64
	// Currency is the upper-case ISO 4217 code, e.g. USD.
	Currency string
	// Token is the provider token the client sent (tok_..., pm_...). It is a
	// secret: never log it.
	Token string
	// IdempotencyKey identifies this charge at the provider; it is required,
	// and every retry of the same charge must reuse it.
	IdempotencyKey string
}

// Charge is the result of a charge attempt.
type Charge struct {
	// ProviderPaymentID is the provider's payment id (e.g. pi_...), when the
	// provider created one.
	ProviderPaymentID string
	// Status is the outcome.
	Status Status
	// DeclineCode says why a charge was declined, e.g. card_declined,
	// insufficient_funds; empty unless Status is StatusDeclined.
	DeclineCode string
	// Message is the provider's human-readable explanation, if any.
	Message string
	// AmountCents is the amount charged (or attempted).
	AmountCents int64
	// Currency is the upper-case ISO 4217 code of AmountCents.
	Currency string
}

// RefundRequest asks a Gateway to refund a charge, fully or partly.
type RefundRequest struct {
	// OrderID is recorded with the refund at the provider.
	OrderID string
	// ProviderPaymentID is the Charge.ProviderPaymentID to refund.
	ProviderPaymentID string
	// AmountCents is the amount to refund; 0 refunds what remains.
	AmountCents int64
	// IdempotencyKey identifies this refund at the provider; it is required.
	IdempotencyKey string
	// Reason is free text; providers that know a fixed set of reasons
	// (duplicate, fraudulent, requested_by_customer) get it as such.
	Reason string
}

// Refund is the result of a refund.
type Refund struct {
	// ProviderRefundID is the provider's refund id (e.g. re_...).
	ProviderRefundID string
	// Status is the provider's refund status, e.g. succeeded, pending.
	Status string
}

// Gateway is a payment provider.
type Gateway interface {
	// Name is the provider's name, e.g. "stripe" or "sandbox".
	Name() string
	// Charge charges r. A decline is a Charge with StatusDeclined and a nil
	// error; see the package documentation for errors.
	Charge(ctx context.Context, r ChargeRequest) (Charge, error)
	// Refund refunds (part of) a charge.
	Refund(ctx context.Context, r RefundRequest) (Refund, error)
}

// ErrTransient is matched (errors.Is) by every error that reports a
// temporary failure or an unknown outcome: retrying the same request with
// the same idempotency key may succeed and never charges twice.
var ErrTransient = errors.New("payment: transient provider failure")

// ErrPending is matched by the error a Gateway returns when the provider
// accepted a charge but has not settled it (e.g. a payment intent still
// "processing"). It is neither transient nor permanent: retrying returns the
// same pending payment; the final status arrives asynchronously (webhook).
// The Charge returned with it carries the ProviderPaymentID.
var ErrPending = errors.New("payment: outcome pending at provider")

// TransientError is a temporary failure or unknown outcome reported by a
// Gateway. It matches ErrTransient.
type TransientError struct {
	// Provider is the Gateway's name.
	Provider string
	// Op is the operation, e.g. "charge" or "refund".
	Op string
	// HTTPStatus is the provider's HTTP status, 0 if none was received.
	HTTPStatus int
	// Code is the provider's error code, if any.
	Code string
	// Msg describes the failure; it never contains the token.
	Msg string
	// Err is the underlying cause, if it is safe to keep (never one whose
	// text could carry the token).
	Err error
}

// Error describes the failure.
func (e *TransientError) Error() string {
	return describe("transient", e.Provider, e.Op, e.HTTPStatus, e.Code, e.Msg)
}

// Is makes errors.Is(err, ErrTransient) true.
func (e *TransientError) Is(target error) bool { return target == ErrTransient }

// Unwrap returns the underlying cause.
func (e *TransientError) Unwrap() error { return e.Err }

// PermanentError is a failure that retrying cannot fix: the provider rejected
// the request as invalid (HTTP 4xx other than a decline, 409 or 429), or the
// Gateway refused it before sending.
type PermanentError struct {
	// Provider is the Gateway's name.
	Provider string
	// Op is the operation, e.g. "charge" or "refund".
	Op string
	// HTTPStatus is the provider's HTTP status, 0 if the request was not sent.
	HTTPStatus int
	// Code is the provider's error code, e.g. parameter_invalid_integer.
	Code string
	// Msg describes the failure; it never contains the token.
	Msg string
}

// Error describes the failure.
func (e *PermanentError) Error() string {
	return describe("permanent", e.Provider, e.Op, e.HTTPStatus, e.Code, e.Msg)
}

func describe(kind, provider, op string, status int, code, msg string) string {
	s := "payment"
	if provider != "" {
		s += " " + provider
	}
	if op != "" {
		s += " " + op
	}
	s += ": " + kind + " error"
	if status != 0 {
		s += fmt.Sprintf(" (http %d)", status)
	}
	if code != "" {
		s += " [" + code + "]"
	}
	if msg != "" {
		s += ": " + msg
	}
	return s
}

// IsTransient reports whether err is a temporary failure or an unknown
// outcome, so that the same request (same idempotency key) may be retried:
// a TransientError, a network error or timeout, context.DeadlineExceeded,
// or an unexpected EOF (a circuit breaker that refuses a call answers a
// TransientError: resilience.New). A *PermanentError, ErrPending and
// context.Canceled are not transient.
func IsTransient(err error) bool {
	if err == nil {
		return false
	}
	var perm *PermanentError
	switch {
	case errors.As(err, &perm), errors.Is(err, ErrPending), errors.Is(err, context.Canceled):
		return false
	case errors.Is(err, ErrTransient),
		errors.Is(err, context.DeadlineExceeded),
		errors.Is(err, io.ErrUnexpectedEOF),
		errors.Is(err, io.EOF):
		return true
	}
	var netErr net.Error
	return errors.As(err, &netErr)
}

// IsPermanent reports whether err is (or wraps) a *PermanentError.
func IsPermanent(err error) bool {
	var perm *PermanentError
	return errors.As(err, &perm)
}

// MaxIdempotencyKeyLen is the longest idempotency key a Gateway accepts
// (Stripe's limit).
const MaxIdempotencyKeyLen = 255

// Validate checks r before it is sent to a provider. It returns a
// *PermanentError (Op "charge") naming the first problem, or nil. The
// message never contains the token.
func (r ChargeRequest) Validate() error {
	switch {
	case r.AmountCents <= 0:
		return invalid("charge", "amount must be positive")
	case !isCurrency(r.Currency):
		return invalid("charge", "currency must be a 3-letter ISO 4217 code")
	case r.Token == "":
		return invalid("charge", "token is required")
	case cardnum.InToken(r.Token):
		return invalid("charge", "token looks like a card number; send a provider token")
	case r.IdempotencyKey == "":
		return invalid("charge", "idempotency key is required")
	case len(r.IdempotencyKey) > MaxIdempotencyKeyLen:
		return invalid("charge", "idempotency key is too long")
	}
	return nil
}

// Validate checks r before it is sent to a provider. It returns a
// *PermanentError (Op "refund") naming the first problem, or nil.
func (r RefundRequest) Validate() error {
	switch {
	case r.ProviderPaymentID == "":
		return invalid("refund", "provider payment id is required")
	case r.AmountCents < 0:
		return invalid("refund", "amount must not be negative")
	case r.IdempotencyKey == "":
		return invalid("refund", "idempotency key is required")
	case len(r.IdempotencyKey) > MaxIdempotencyKeyLen:
		return invalid("refund", "idempotency key is too long")
	}
	return nil
}

func invalid(op, msg string) *PermanentError {
	return &PermanentError{Op: op, Code: "invalid_request", Msg: msg}
}

func isCurrency(c string) bool {
	if len(c) != 3 {
		return false
	}
	for _, b := range []byte(c) {
		if (b < 'A' || b > 'Z') && (b < 'a' || b > 'z') {
			return false
		}
	}
	return true
}
