package resilience_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/sony/gobreaker"

	"github.com/checkout-backend/checkout/internal/payment"
	"github.com/checkout-backend/checkout/internal/payment/resilience"
	"github.com/checkout-backend/checkout/internal/payment/sandbox"
	"github.com/checkout-backend/checkout/internal/testutil"
)

// scripted is a Gateway whose n-th Charge (from 0) answers script(n).
type scripted struct {
	mu     sync.Mutex
	reqs   []payment.ChargeRequest
	script func(n int) (payment.Charge, error)
}

func (s *scripted) Name() string { return "scripted" }

func (s *scripted) Charge(_ context.Context, r payment.ChargeRequest) (payment.Charge, error) {
	s.mu.Lock()
	n := len(s.reqs)
	s.reqs = append(s.reqs, r)
	s.mu.Unlock()
	return s.script(n)
}

func (s *scripted) Refund(context.Context, payment.RefundRequest) (payment.Refund, error) {
	return payment.Refund{ProviderRefundID: "re_1", Status: "succeeded"}, nil
}

func (s *scripted) calls() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.reqs)
}

var (
	req       = payment.ChargeRequest{OrderID: "o1", AmountCents: 1000, Currency: "USD", Token: "tok_visa", IdempotencyKey: "order-o1-charge"}
	unavail   = &payment.TransientError{Provider: "scripted", Op: "charge", HTTPStatus: 503}
	succeeded = payment.Charge{ProviderPaymentID: "pi_1", Status: payment.StatusSucceeded, AmountCents: 1000}
)

// fast are options that keep tests quick.
func fast(o resilience.Options) resilience.Options {
	o.InitialInterval = 5 * time.Millisecond
	o.MaxInterval = 20 * time.Millisecond
	if o.MaxElapsedTime == 0 {
		o.MaxElapsedTime = 2 * time.Second
	}
	return o
}

func TestResilientRetriesTransientWithSameRequest(t *testing.T) {
	t.Parallel()
	g := &scripted{script: func(n int) (payment.Charge, error) {
		if n < 2 {
			return payment.Charge{}, unavail
		}
		return succeeded, nil
	}}
	var retries int
	r := resilience.New(g, fast(resilience.Options{OnRetry: func(op string, err error, _ time.Duration) {
		if op != "charge" || !payment.IsTransient(err) {
			t.Errorf("OnRetry(%q, %v)", op, err)
		}
		retries++
	}}))
	c, err := r.Charge(context.Background(), req)
	if err != nil || c != succeeded {
		t.Fatalf("Charge = %+v, %v; want %+v", c, err, succeeded)
	}
	if g.calls() != 3 || retries != 2 {
		t.Fatalf("calls = %d, retries = %d; want 3, 2", g.calls(), retries)
	}
	for i, got := range g.reqs {
		if got != req {
			t.Errorf("attempt %d sent %+v, want the identical request %+v", i, got, req)
		}
	}
	if r.State() != gobreaker.StateClosed {
		t.Errorf("state = %v, want closed", r.State())
	}
}

func TestResilientNeverRetriesDeclineOrPermanent(t *testing.T) {
	t.Parallel()
	declined := payment.Charge{Status: payment.StatusDeclined, DeclineCode: "card_declined", AmountCents: 1000}
	tests := []struct {
		name   string
		charge payment.Charge
		err    error
	}{
		{"decline", declined, nil},
		{"permanent", payment.Charge{}, &payment.PermanentError{Op: "charge", HTTPStatus: 400}},
		{"pending", payment.Charge{ProviderPaymentID: "pi_1"}, payment.ErrPending},
		{"canceled", payment.Charge{}, context.Canceled},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			g := &scripted{script: func(int) (payment.Charge, error) { return tc.charge, tc.err }}
			r := resilience.New(g, fast(resilience.Options{FailureThreshold: 2}))
			for range 5 {
				c, err := r.Charge(context.Background(), req)
				if c != tc.charge || !errors.Is(err, tc.err) || (tc.err == nil) != (err == nil) {
					t.Fatalf("Charge = %+v, %v; want %+v, %v", c, err, tc.charge, tc.err)
				}
				if pe := (*payment.PermanentError)(nil); tc.name == "permanent" && !errors.As(err, &pe) {
					t.Fatalf("error %T is not a *PermanentError", err)
				}
			}
			if g.calls() != 5 {
				t.Errorf("calls = %d, want 5 (one per Charge, no retries)", g.calls())
			}
			if r.State() != gobreaker.StateClosed {
				t.Errorf("state = %v, want closed: %s must not trip the breaker", r.State(), tc.name)
			}
		})
	}
}

func TestResilientBreakerOpensFailsFastAndRecovers(t *testing.T) {
	t.Parallel()
	var (
		mu          sync.Mutex
		transitions []string
		healthy     bool
	)
	g := &scripted{script: func(int) (payment.Charge, error) {
		mu.Lock()
		defer mu.Unlock()
		if healthy {
			return succeeded, nil
		}
		return payment.Charge{}, unavail
	}}
	r := resilience.New(g, fast(resilience.Options{
		FailureThreshold: 3,
		OpenTimeout:      300 * time.Millisecond,
		MaxTries:         1,
		OnStateChange: func(name string, from, to gobreaker.State) {
			mu.Lock()
			defer mu.Unlock()
			transitions = append(transitions, name+":"+from.String()+"->"+to.String())
		},
	}))
	if r.BreakerName() != "payment-scripted" || r.Name() != "scripted" {
		t.Fatalf("BreakerName, Name = %q, %q", r.BreakerName(), r.Name())
	}
	for i := range 3 {
		if _, err := r.Charge(context.Background(), req); !payment.IsTransient(err) {
			t.Fatalf("call %d: err = %v, want transient", i, err)
		}
	}
	if r.State() != gobreaker.StateOpen {
		t.Fatalf("state = %v after 3 failures, want open", r.State())
	}
	_, err := r.Charge(context.Background(), req)
	if !errors.Is(err, gobreaker.ErrOpenState) || !payment.IsTransient(err) {
		t.Fatalf("err = %v, want gobreaker.ErrOpenState (transient)", err)
	}
	if g.calls() != 3 {
		t.Fatalf("open breaker reached the gateway (calls = %d)", g.calls())
	}

	mu.Lock()
	healthy = true
	mu.Unlock()
	testutil.Eventually(t, 5*time.Second, "the breaker half-open after OpenTimeout", func() bool { return r.State() == gobreaker.StateHalfOpen })
	if c, err := r.Charge(context.Background(), req); err != nil || c.Status != payment.StatusSucceeded {
		t.Fatalf("probe: %+v, %v", c, err)
	}
	if r.State() != gobreaker.StateClosed {
		t.Fatalf("state = %v after a successful probe, want closed", r.State())
	}
	mu.Lock()
	defer mu.Unlock()
	want := []string{"payment-scripted:closed->open", "payment-scripted:open->half-open", "payment-scripted:half-open->closed"}
	if len(transitions) != len(want) {
		t.Fatalf("transitions = %v, want %v", transitions, want)
	}
	for i := range want {
		if transitions[i] != want[i] {
			t.Fatalf("transitions = %v, want %v", transitions, want)
		}
	}
}

func TestResilientGivesUpAfterMaxTries(t *testing.T) {
	t.Parallel()
	g := &scripted{script: func(int) (payment.Charge, error) { return payment.Charge{}, unavail }}
	r := resilience.New(g, fast(resilience.Options{MaxTries: 3, FailureThreshold: 100}))
	_, err := r.Charge(context.Background(), req)
	if !errors.Is(err, unavail) || g.calls() != 3 {
		t.Fatalf("err = %v after %d calls; want the last transient error after 3", err, g.calls())
	}
}

func TestResilientStopsOnContext(t *testing.T) {
	t.Parallel()
	g := &scripted{script: func(int) (payment.Charge, error) { return payment.Charge{}, unavail }}
	r := resilience.New(g, resilience.Options{
		InitialInterval: time.Second, MaxInterval: time.Second, MaxTries: -1, MaxElapsedTime: -1, FailureThreshold: 100,
	})
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := r.Charge(ctx, req)
	if !errors.Is(err, context.DeadlineExceeded) || !errors.Is(err, unavail) {
		t.Fatalf("err = %v, want the deadline and the last attempt's error", err)
	}
	if d := time.Since(start); d > 500*time.Millisecond {
		t.Fatalf("took %v, want to stop at the deadline", d)
	}
}

func TestResilientOverSandboxLostResponseChargesOnce(t *testing.T) {
	t.Parallel()
	sb := sandbox.New()
	sb.DropNextResponses(2) // the sandbox charges, but the first two answers are lost
	r := resilience.New(sb, fast(resilience.Options{}))
	c, err := r.Charge(context.Background(), req)
	if err != nil || c.Status != payment.StatusSucceeded {
		t.Fatalf("Charge = %+v, %v", c, err)
	}
	if sb.Calls() != 3 || sb.ChargeCount() != 1 {
		t.Fatalf("calls = %d, charges = %d; want 3 calls and exactly 1 charge", sb.Calls(), sb.ChargeCount())
	}
	if r.BreakerName() != "payment-sandbox" {
		t.Errorf("BreakerName = %q", r.BreakerName())
	}
}

func TestResilientPermanentOnLastTryIsUnwrapped(t *testing.T) {
	t.Parallel()
	perm := &payment.PermanentError{Op: "charge", HTTPStatus: 400}
	g := &scripted{script: func(int) (payment.Charge, error) { return payment.Charge{}, perm }}
	r := resilience.New(g, fast(resilience.Options{MaxTries: 1}))
	if _, err := r.Charge(context.Background(), req); err != perm {
		t.Fatalf("err = %#v, want the gateway's *PermanentError itself", err)
	}
}
