package payment_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"testing"

	"github.com/checkout-backend/checkout/internal/payment"
)

func TestIsTransient(t *testing.T) {
	t.Parallel()
	timeout := &net.OpError{Op: "dial", Net: "tcp", Err: &timeoutErr{}}
	tests := []struct {
		name string
		err  error
		want bool
	}{
		{"nil", nil, false},
		{"sentinel", payment.ErrTransient, true},
		{"TransientError", &payment.TransientError{Provider: "x", Op: "charge", HTTPStatus: 503}, true},
		{"wrapped TransientError", fmt.Errorf("worker: %w", &payment.TransientError{HTTPStatus: 429}), true},
		{"PermanentError", &payment.PermanentError{HTTPStatus: 400}, false},
		{"wrapped PermanentError", fmt.Errorf("worker: %w", &payment.PermanentError{}), false},
		{"pending", fmt.Errorf("x: %w", payment.ErrPending), false},
		{"deadline", context.DeadlineExceeded, true},
		{"canceled", context.Canceled, false},
		{"net timeout", timeout, true},
		{"unexpected EOF", io.ErrUnexpectedEOF, true},
		{"plain", errors.New("boom"), false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if got := payment.IsTransient(tc.err); got != tc.want {
				t.Errorf("IsTransient(%v) = %v, want %v", tc.err, got, tc.want)
			}
		})
	}
	if !payment.IsPermanent(fmt.Errorf("w: %w", &payment.PermanentError{})) || payment.IsPermanent(payment.ErrTransient) {
		t.Error("IsPermanent misclassifies")
	}
}

type timeoutErr struct{}

func (*timeoutErr) Error() string   { return "i/o timeout" }
func (*timeoutErr) Timeout() bool   { return true }
func (*timeoutErr) Temporary() bool { return true }

func TestErrorMessages(t *testing.T) {
	t.Parallel()
	te := &payment.TransientError{Provider: "stripe", Op: "charge", HTTPStatus: 503, Code: "api_error", Msg: "overloaded"}
	if got, want := te.Error(), "payment stripe charge: transient error (http 503) [api_error]: overloaded"; got != want {
		t.Errorf("TransientError = %q, want %q", got, want)
	}
	pe := &payment.PermanentError{Provider: "stripe", Op: "refund", HTTPStatus: 400, Code: "charge_already_refunded"}
	if got, want := pe.Error(), "payment stripe refund: permanent error (http 400) [charge_already_refunded]"; got != want {
		t.Errorf("PermanentError = %q, want %q", got, want)
	}
}

func TestChargeRequestValidate(t *testing.T) {
	t.Parallel()
	ok := payment.ChargeRequest{OrderID: "o1", AmountCents: 1999, Currency: "USD", Token: "tok_visa", IdempotencyKey: "k1"}
	if err := ok.Validate(); err != nil {
		t.Fatalf("valid request: %v", err)
	}
	const pan = "4242 4242 4242 4242"
	tests := []struct {
		name   string
		modify func(*payment.ChargeRequest)
	}{
		{"zero amount", func(r *payment.ChargeRequest) { r.AmountCents = 0 }},
		{"bad currency", func(r *payment.ChargeRequest) { r.Currency = "US" }},
		{"no token", func(r *payment.ChargeRequest) { r.Token = "" }},
		{"card number", func(r *payment.ChargeRequest) { r.Token = pan }},
		{"no key", func(r *payment.ChargeRequest) { r.IdempotencyKey = "" }},
		{"long key", func(r *payment.ChargeRequest) { r.IdempotencyKey = strings.Repeat("k", 256) }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r := ok
			tc.modify(&r)
			err := r.Validate()
			if !payment.IsPermanent(err) {
				t.Fatalf("Validate = %v, want *PermanentError", err)
			}
			if strings.Contains(err.Error(), "4242") {
				t.Errorf("error %q leaks the card number", err)
			}
		})
	}
	if err := (payment.RefundRequest{ProviderPaymentID: "pi_1", IdempotencyKey: "r1"}).Validate(); err != nil {
		t.Errorf("valid refund: %v", err)
	}
	if err := (payment.RefundRequest{IdempotencyKey: "r1"}).Validate(); !payment.IsPermanent(err) {
		t.Errorf("refund without payment id: %v", err)
	}
}
