// Package resilience wraps a payment.Gateway for production: New sends every call
// through a circuit breaker (sony/gobreaker) and retries transient failures with
// backoff and jitter; Traced makes each call a span. The payment port itself stays
// free of them.
package resilience

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/cenkalti/backoff/v5"
	"github.com/sony/gobreaker"

	"github.com/checkout-backend/checkout/internal/payment"
)

// Defaults for Options.
const (
	DefaultFailureThreshold = 5
	DefaultOpenTimeout      = 30 * time.Second
	DefaultInitialInterval  = 200 * time.Millisecond
	DefaultMaxInterval      = 5 * time.Second
	DefaultMaxElapsedTime   = 15 * time.Second
	DefaultMaxTries         = 5
)

// Options configures New. Zero values take the defaults.
type Options struct {
	// BreakerName names the circuit breaker; default "payment-" + g.Name().
	BreakerName string
	// FailureThreshold is the number of consecutive transient failures that
	// opens the breaker; default 5.
	FailureThreshold uint32
	// OpenTimeout is how long the breaker stays open before letting one
	// probe call through (half-open); default 30s.
	OpenTimeout time.Duration
	// InitialInterval is the first backoff ceiling; default 200ms.
	InitialInterval time.Duration
	// MaxInterval caps the backoff ceiling; default 5s.
	MaxInterval time.Duration
	// MaxElapsedTime bounds the total time spent retrying one call; default
	// 15s; negative means no bound other than ctx and MaxTries.
	MaxElapsedTime time.Duration
	// MaxTries bounds the attempts of one call, the first included; default
	// 5; negative means no bound other than ctx and MaxElapsedTime.
	MaxTries int
	// OnStateChange, if set, is called on each breaker transition (e.g. to
	// export a metric). It runs under the breaker's lock: it must not call
	// back into the Gateway.
	OnStateChange func(name string, from, to gobreaker.State)
	// OnRetry, if set, is called before each retry with the error that
	// caused it and the wait before the next attempt.
	OnRetry func(op string, err error, wait time.Duration)
}

// Gateway is a payment.Gateway that sends every call through a circuit breaker and
// retries transient failures with capped exponential backoff and full
// jitter. Each retry resends the identical request, with the same
// idempotency key, so a retried charge is never a second charge. Declines,
// *payment.PermanentError, payment.ErrPending and context cancellation are never retried and
// never count against the breaker.
type Gateway struct {
	g    payment.Gateway
	cb   *gobreaker.CircuitBreaker
	opts Options
}

var _ payment.Gateway = (*Gateway)(nil)

// New wraps g.
func New(g payment.Gateway, opts Options) *Gateway {
	if opts.BreakerName == "" {
		opts.BreakerName = "payment-" + g.Name()
	}
	if opts.FailureThreshold == 0 {
		opts.FailureThreshold = DefaultFailureThreshold
	}
	if opts.OpenTimeout <= 0 {
		opts.OpenTimeout = DefaultOpenTimeout
	}
	if opts.InitialInterval <= 0 {
		opts.InitialInterval = DefaultInitialInterval
	}
	if opts.MaxInterval <= 0 {
		opts.MaxInterval = DefaultMaxInterval
	}
	if opts.MaxElapsedTime == 0 {
		opts.MaxElapsedTime = DefaultMaxElapsedTime
	}
	if opts.MaxTries == 0 {
		opts.MaxTries = DefaultMaxTries
	}
	threshold := opts.FailureThreshold
	cb := gobreaker.NewCircuitBreaker(gobreaker.Settings{
		Name:        opts.BreakerName,
		MaxRequests: 1,
		Timeout:     opts.OpenTimeout,
		ReadyToTrip: func(c gobreaker.Counts) bool {
			return c.ConsecutiveFailures >= threshold
		},
		// Only provider trouble counts: declines (nil error), permanent
		// errors, pending outcomes and caller cancellation do not.
		IsSuccessful:  func(err error) bool { return !payment.IsTransient(err) },
		OnStateChange: opts.OnStateChange,
	})
	return &Gateway{g: g, cb: cb, opts: opts}
}

// Name returns the wrapped gateway's provider name.
func (r *Gateway) Name() string { return r.g.Name() }

// BreakerName returns the circuit breaker's name, e.g. "payment-stripe".
func (r *Gateway) BreakerName() string { return r.cb.Name() }

// State returns the circuit breaker's current state.
func (r *Gateway) State() gobreaker.State { return r.cb.State() }

// Charge charges req, retrying transient failures with the same request.
func (r *Gateway) Charge(ctx context.Context, req payment.ChargeRequest) (payment.Charge, error) {
	return call(ctx, r, "charge", func() (payment.Charge, error) { return r.g.Charge(ctx, req) })
}

// Refund refunds req, retrying transient failures with the same request.
func (r *Gateway) Refund(ctx context.Context, req payment.RefundRequest) (payment.Refund, error) {
	return call(ctx, r, "refund", func() (payment.Refund, error) { return r.g.Refund(ctx, req) })
}

func call[T any](ctx context.Context, r *Gateway, op string, fn func() (T, error)) (T, error) {
	var last error
	attempt := func() (T, error) {
		out, err := r.cb.Execute(func() (any, error) { return fn() })
		res, _ := out.(T)
		if err == nil {
			return res, nil
		}
		if errors.Is(err, gobreaker.ErrOpenState) || errors.Is(err, gobreaker.ErrTooManyRequests) {
			// The breaker refused the call: nothing reached the provider, so the same
			// request may be tried again later (errors.Is still finds the breaker's error).
			err = &payment.TransientError{Provider: r.g.Name(), Op: op, Msg: err.Error(), Err: err}
		}
		last = err
		if !payment.IsTransient(err) {
			return res, backoff.Permanent(err)
		}
		return res, err
	}
	opts := []backoff.RetryOption{
		backoff.WithBackOff(&fullJitter{exp: backoff.ExponentialBackOff{
			InitialInterval: r.opts.InitialInterval,
			Multiplier:      2,
			MaxInterval:     r.opts.MaxInterval,
			// The envelope is deterministic; fullJitter draws below it.
			RandomizationFactor: 0,
		}}),
		backoff.WithMaxElapsedTime(max(r.opts.MaxElapsedTime, 0)),
	}
	if r.opts.MaxTries > 0 {
		opts = append(opts, backoff.WithMaxTries(uint(r.opts.MaxTries)))
	}
	if r.opts.OnRetry != nil {
		opts = append(opts, backoff.WithNotify(func(err error, d time.Duration) { r.opts.OnRetry(op, err, d) }))
	}
	res, err := backoff.Retry(ctx, attempt, opts...)
	if perm, ok := err.(*backoff.PermanentError); ok {
		// Retry returns it wrapped when the last allowed try failed for good.
		err = perm.Err
	}
	if err != nil && last != nil && ctx.Err() != nil && !errors.Is(err, last) {
		// Retry gave up on ctx; keep the provider's last answer too.
		err = fmt.Errorf("%w (last attempt: %w)", err, last)
	}
	return res, err
}

// fullJitter draws each wait uniformly from [0, d], d being the next
// ceiling of the wrapped exponential backoff ("full jitter").
type fullJitter struct{ exp backoff.ExponentialBackOff }

func (j *fullJitter) Reset() { j.exp.Reset() }

func (j *fullJitter) NextBackOff() time.Duration {
	d := j.exp.NextBackOff()
	if d <= 0 {
		return d
	}
	return rand.N(d + 1)
}
